"""Serving the simulator over real sockets: in a background thread (tests, demos) or in the foreground (CLI).

:class:`BackgroundServer` follows httpx's own test server and moto's ``ThreadedMotoServer``: uvicorn on a daemon
thread, readiness taken from uvicorn's ``started`` flag, clean shutdown on exit. The listening socket is bound
before the thread starts, so ``port=0`` yields a free port that is known immediately.
"""

from __future__ import annotations

import logging
import shlex
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from fastapi import FastAPI
from rich.console import Console
from rich.panel import Panel

from .app import Api, create_app
from .traffic import ConnectionDropped


class _QuietDrops(logging.Filter):
    """Hide uvicorn's "Exception in ASGI application" traceback for drops the simulator did on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


_QUIET_DROPS = _QuietDrops()


def _quiet_logging() -> None:
    logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)  # addFilter is idempotent for one object


#: Seconds an idle connection stays open, as a real server keeps it (IIS 120 s, Kestrel 130 s), well beyond the
#: 5 s a client keeps it in its pool (httpx). Uvicorn's own 5 s closed connections just as a client reused them:
#: a Run sent on one was lost unread, and a drill reported a plan whose failover never showed.
KEEP_ALIVE_SECONDS = 120


def _config(
    app: Any, *, ssl_certfile: str | Path | None, ssl_keyfile: str | Path | None, **kwargs: Any
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        log_config=None,  # leave the host application's logging configuration alone
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        **kwargs,
    )


class BackgroundServer:
    """Run an ASGI app with uvicorn on a daemon thread; a context manager exposing ``.url``.

    ::

        with BackgroundServer(create_app("demo")) as server:
            httpx.get(f"{server.url}/v2/FailoverPlans", ...)
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | Path | None = None,
        ssl_keyfile: str | Path | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        self.app = app
        self.host = host
        self.port = port
        self.scheme = "https" if ssl_certfile else "http"
        self.startup_timeout = startup_timeout
        self._ssl = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (the API is under ``/v2``, the control plane under ``/_sim``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> Self:
        """Bind, start uvicorn on a thread and return once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("this BackgroundServer is already running")
        _quiet_logging()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must be IPPROTO_TCP (not the default 0): asyncio only sets TCP_NODELAY on accepted sockets of
        # that proto, and without it every response waits ~40 ms for Nagle + delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._server = uvicorn.Server(_config(self.app, **self._ssl))
        self._thread = threading.Thread(target=self._run, name=f"vao-simulator:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._cleanup()
                raise RuntimeError(f"the simulator server did not start: {self._error!r}") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the simulator server did not start within {self.startup_timeout}s")
            self._thread.join(0.002)  # wait on the thread itself: wakes at once if it dies
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # surfaced by start(); a thread cannot raise into its starter
            self._error = exc

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for the thread, release the socket. Safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


_API_NAMES = {"v2": "VAO REST API v2", "vro": "VRO REST API (v7.2, v7.21, v13)"}
_API_PATHS = {"v2": "/v2", "vro": "/api/v13"}


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 9899,
    scenario: str | Path = "demo",
    time_scale: float = 1.0,
    username: str = "demo",
    password: str = "demo",
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    progression: Literal["time", "tick"] = "time",
    api: Literal["v2", "vro", "both"] = "both",
) -> None:
    """Run the simulator in the foreground until interrupted (``vaodrill simulator``); ``api``: serve VAO's v2,
    VRO's API, or both on the one port.

    Prints where it listens, the credentials and a curl example first, so a person can try it at once.
    Raises :class:`~vaodrill.simulator.ScenarioError` for a bad scenario before anything listens.
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("certfile and keyfile go together")
    apis: tuple[Api, ...] = ("v2", "vro") if api == "both" else (api,)
    app = create_app(
        scenario, time_scale=time_scale, username=username, password=password, progression=progression, apis=apis
    )
    _announce(
        app,
        host=host,
        port=port,
        tls=certfile is not None,
        username=username,
        password=password,
        progression=progression,
        time_scale=time_scale,
        apis=apis,
    )
    _quiet_logging()
    uvicorn.Server(_config(app, host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile)).run()


def _announce(
    app: FastAPI,
    *,
    host: str,
    port: int,
    tls: bool,
    username: str,
    password: str,
    progression: str,
    time_scale: float,
    apis: tuple[Api, ...],
) -> None:
    """Where it listens, the scenario, the credentials, then two curl commands to try at once."""
    scheme = "https" if tls else "http"
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base = f"{scheme}://{shown_host}:{port}"
    insecure = " -k" if tls else ""
    sim = app.state.sim
    console = Console()
    console.print(
        Panel.fit(
            "".join(
                f"[bold]{_API_NAMES[a]} simulator[/bold] listening on [cyan]{base}{_API_PATHS[a]}[/cyan]\n"
                for a in apis
            )
            + f"scenario [green]{sim.scenario.name}[/green] ({len(sim.summary()['plans'])} plans), "
            f"progression {progression}, time scale {time_scale:g}x, server time zone {sim.scenario.timezone}\n"
            f"credentials: username [yellow]{username}[/yellow]  password [yellow]{password}[/yellow]\n"
            + "".join(
                f"child client: client_id [yellow]{c.client_id}[/yellow]  client_secret "
                f"[yellow]{c.client_secret.get_secret_value()}[/yellow]\n"
                for c in sim.scenario.clients
            )
            + f"control plane: {base}/_sim  (docs: {base}/_sim/docs)",
            title="vaodrill simulator",
        )
    )
    # Outside the panel and never wrapped, so the commands survive copy and paste.
    console.print("[dim]# log in, then list plans[/dim]")
    token, plans = ("/v2/Token", "/v2/FailoverPlans") if "v2" in apis else ("/api/token", "/api/v13/Plans")
    for command in (
        f"curl{insecure} -s -X POST {base}{token} -d grant_type=password "
        f"--data-urlencode {shlex.quote('username=' + username)} "
        f"--data-urlencode {shlex.quote('password=' + password)}",
        f"curl{insecure} -s {base}{plans} -H 'Authorization: Bearer <access_token>'",
    ):
        console.print(command, soft_wrap=True, highlight=False, markup=False)
