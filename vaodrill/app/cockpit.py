"""``vaodrill cockpit``: the Prefect UI with the demo drill in it, from one command, and nothing left behind.

It starts ``prefect server start`` (SQLite, its own home in ``.cockpit/`` under the working directory, a free
loopback port, the UI told that port) and ``vaodrill serve`` against it (which registers the block types and
serves the deployments against the embedded simulator), triggers the
demo drill as a ``manual-drill`` flow run, prints that run's page and serves until Ctrl-C or SIGTERM. Then it
stops both process groups (SIGTERM, SIGKILL after a grace period), so no server, runner or flow-run process
outlives it. A second cockpit in the same directory finds the first by its lock file and points at it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

#: The deployment the cockpit runs the demo drill through (its default drill file is the demo on a simulator).
DEMO_DEPLOYMENT = "dr-drill/manual-drill"
#: Seconds to wait for the server's health and for the served deployments (a first start migrates the database).
START_TIMEOUT = 180.0
#: Seconds a process group gets between SIGTERM and SIGKILL.
GRACE = 15.0
_OWN_PREFIXES = ("PREFECT_", "VAO_", "VAODRILL_")


class CockpitError(Exception):
    """A cockpit that cannot start: one line for the user (exit 2)."""


@dataclass
class Child:
    """A child process in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left of it after :data:`GRACE` seconds."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(GRACE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def _start(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Child:
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Child(name, popen, log_path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without Prefect's, VAO's or vaodrill's variables, plus ``extra``: the children talk to
    the cockpit's own server and simulator, never to a profile or a VAO server configured elsewhere."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}, **extra}


def _wait(check: Callable[[], bool], child: Child, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if not child.alive():
            raise CockpitError(
                f"{child.name} exited with {child.popen.returncode} before {what} "
                f"(log: {child.log_path}): {child.tail(1)}"
            )
        if time.monotonic() > deadline:
            raise CockpitError(f"no {what} within {START_TIMEOUT:.0f}s (log: {child.log_path})")
        time.sleep(0.25)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _lock(home: Path) -> Iterator[IO[str]]:
    """The cockpit's lock file, held while it runs; another cockpit's URL when it is taken."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "cockpit.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            try:
                other = json.loads(lock.read() or "{}")
            except ValueError:
                other = {}
            where = f" at {other['ui']} (pid {other.get('pid')})" if "ui" in other else ""
            raise CockpitError(
                f"a cockpit is already running in {home.parent}{where}; stop it with Ctrl-C in its terminal"
            ) from None
        try:
            yield lock
        finally:
            lock.truncate(0)


def _trigger_demo(api_url: str) -> str:
    """The demo drill as a run of the served ``manual-drill`` deployment; its flow run id. Prefect's own client
    (it retries the 503 a busy SQLite answers while ``serve`` is still writing its deployments)."""
    import asyncio

    from prefect.client.orchestration import PrefectClient

    async def trigger() -> str:
        async with PrefectClient(api_url) as client:
            deployment = await client.read_deployment_by_name(DEMO_DEPLOYMENT)
            return str((await client.create_flow_run_from_deployment(deployment.id)).id)

    try:
        return asyncio.run(trigger())
    except Exception as exc:  # whatever the client raises, the user gets one line
        raise CockpitError(f"could not start the demo drill on {api_url}: {exc}") from None


def run(home: Path, *, say: Callable[[str], None], bin_dir: Path | None = None) -> None:
    """Start the cockpit in ``home`` and serve until SIGINT or SIGTERM; every child is stopped on the way out."""
    bin_dir = bin_dir or Path(sys.executable).parent
    home = home.resolve()
    with _lock(home) as lock:
        port = _free_port()
        ui, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
        lock.write(json.dumps({"pid": os.getpid(), "ui": ui}))
        lock.flush()
        server_home, logs = home / "prefect", home / "logs"
        server_home.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        children: list[Child] = []
        stop = _stop_on_signals()
        try:
            say(f"starting Prefect server at {ui} (home {server_home})")
            server = _start(
                "prefect server",
                [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                _clean_env(
                    PREFECT_HOME=str(server_home),
                    PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    PREFECT_SERVER_DATABASE_CONNECTION_URL=(f"sqlite+aiosqlite:///{server_home / 'prefect.db'}"),
                    PREFECT_SERVER_UI_API_URL=api,
                ),
                logs / "server.log",
            )
            children.append(server)
            _wait(lambda: _answers(f"{api}/health"), server, "Prefect API")
            client_env = _clean_env(PREFECT_API_URL=api, PREFECT_HOME=str(server_home / "client"))
            say("serving the deployments against the embedded simulator")
            serve = _start("vaodrill serve", [str(bin_dir / "vaodrill"), "serve"], client_env, logs / "serve.log")
            children.append(serve)
            _wait(lambda: _answers(f"{api}/deployments/name/{DEMO_DEPLOYMENT}"), serve, "served deployments")
            run_id = _trigger_demo(api)
            say(f"demo drill: {ui}/runs/flow-run/{run_id}")
            say(f"Prefect UI: {ui}  (Ctrl-C stops the cockpit)")
            while not stop() and all(child.alive() for child in children):
                time.sleep(0.2)
            if not stop():
                dead = next(child for child in children if not child.alive())
                raise CockpitError(
                    f"{dead.name} exited with {dead.popen.returncode} (log: {dead.log_path}): {dead.tail(1)}"
                )
        finally:
            for child in reversed(children):
                child.stop()
            say("cockpit stopped")


def _stop_on_signals() -> Callable[[], bool]:
    """SIGINT and SIGTERM ask the cockpit to stop (it then stops its children itself)."""
    asked: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        asked.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    return lambda: bool(asked)


__all__ = ["CockpitError", "run"]
