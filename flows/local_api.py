"""A temporary Prefect API for a drill run from the CLI, when no ``PREFECT_API_URL`` is set.

Prefect's own ephemeral server shares the CLI's process group, so a Ctrl-C to the terminal kills it under a
drill that still has plans to undo. This one runs in its own session (a signal to the CLI's group does not reach
it), dies with the CLI even on SIGKILL (Linux parent-death signal), and gets an environment without VAO
credentials.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx

#: Environment variables a child process never inherits from the CLI.
SECRET_PREFIXES = ("VAO_",)
#: The temporary API's URL while one serves this process's flows: nobody can look at its UI, so the drill skips
#: what exists only to be looked at (a child flow run per plan).
temporary_url: str | None = None
STARTUP_TIMEOUT = 60.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything VAO (passwords, client secrets), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
    env.update(extra or {})
    return env


class LocalPrefectApi:
    """``with LocalPrefectApi() as url:`` a Prefect API on loopback for the duration of the block."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = child_env({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                         "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_LOGGING_LEVEL": "ERROR"})
        env.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"the temporary Prefect API exited with code {self.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"the temporary Prefect API did not start within {STARTUP_TIMEOUT:.0f}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def prefect_api(meanwhile: Callable[[], object] | None = None) -> Iterator[str | None]:
    """The Prefect API to use: the configured one, else a temporary one started here (and stopped after).

    ``meanwhile`` runs while the temporary API starts (e.g. the first read of the VAO server, so a wrong password
    or URL is reported without waiting for Prefect).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        if meanwhile is not None:
            meanwhile()
        yield None
        return
    api = LocalPrefectApi()
    api.start()
    try:
        if meanwhile is not None:
            meanwhile()
        api.wait_ready()
        global temporary_url
        with temporary_settings(updates={PREFECT_API_URL: api.url}):
            temporary_url = api.url
            try:
                yield api.url
            finally:
                temporary_url = None
                _drain_prefect_workers()
    finally:
        api.stop()


def _drain_prefect_workers(timeout: float = 5.0) -> None:
    """Send the last run logs and events while the temporary API still answers."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)
