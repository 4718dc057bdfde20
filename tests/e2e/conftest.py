"""End-to-end fixtures with real parts only.

* ``prefect_server``: ``prefect server start`` (API, UI and all background services) as a subprocess on a free
  loopback port, with a temporary ``PREFECT_HOME`` and SQLite database.
* ``drill_sim`` / ``approval_sim`` / ``timeout_sim``: VAO simulators (uvicorn threads of this process, loopback).
* ``served``: ``vaodrill serve`` alone (no ``prefect block register``, Prefect's settings as they come) as a
  subprocess from the repository root: it registers the block type, creates the project's deployments on that
  server and runs their flow runs in its own child processes. Its ``VAO_*`` environment points at
  ``drill_sim``; the approval tests name ``VaoServer`` blocks (saved on the server) for their own simulators.
* ``drill_run``: the ``manual-drill`` deployment triggered once with the real CLI, waited for through the API;
  shared by the deployment test and the browser test.
* ``timeout_run``: a ``real-failover`` run nobody approves. Its pause timeout cannot be shorter than one minute,
  so it is started at the beginning of the e2e session (when a selected test uses it) and left to expire while
  the other tests run.

Isolation: nothing here changes this process's ``os.environ`` or Prefect settings. Every subprocess gets an
explicit environment: a copy of ``os.environ`` without any ``PREFECT_*``, ``VAO_*`` or ``VAODRILL_*`` variable
(e.g. the test harness of the other test modules), plus what it needs. The test process talks to the server
through clients constructed with its URL. Processes run in their own process group and are stopped with
SIGTERM, then SIGKILL, whatever happened in the tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import pytest

from tests.conftest import CONTROL_TIMEOUT

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = BIN / "prefect"
VAODRILL = BIN / "vaodrill"

DRILL_DEPLOYMENT = "dr-drill/manual-drill"
FAILOVER_DEPLOYMENT = "real-failover/real-failover"
SERVED_DEPLOYMENTS = ("dr-drill/app-stack-monthly", DRILL_DEPLOYMENT, FAILOVER_DEPLOYMENT)

_OWN_PREFIXES = ("PREFECT_", "VAO_", "VAODRILL_")
_E2E_DIR = Path(__file__).resolve().parent
# Cheap tests first; the approval tests last, so the one-minute pause timeout of ``timeout_run`` (started first)
# expires while the others run.
_MODULE_ORDER = {"test_deployment_run": 0, "test_browser": 1, "test_approval": 2}

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test with a real Prefect server, subprocesses and a browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reorder the e2e tests among themselves (their slots in the session stay where they are)."""
    slots = [i for i, item in enumerate(items) if _E2E_DIR in Path(str(item.fspath)).resolve().parents]
    ordered = sorted((items[i] for i in slots), key=lambda item: _MODULE_ORDER.get(Path(str(item.fspath)).stem, 9))
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


# -- processes ------------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect/VAO/vaodrill variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="200", NO_COLOR="1")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A subprocess in its own process group, output in a log file; ``stop()`` is safe to call twice."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return f"--- last {lines} lines of {self.name} ({self.log_path}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the process, SIGKILL after ``grace``; then SIGKILL whatever is left of its group."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.popen.wait(10)
        self._kill_group()  # children it left behind (e.g. flow-run processes of a runner)
        self._log.close()

    def _kill_group(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    diagnose: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` and diagnostics at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{diagnose()}", pytrace=False)
        time.sleep(interval)


async def await_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    diagnose: Callable[[], Awaitable[str]] | None = None,
) -> T:
    """Async twin of :func:`wait_until`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            details = await diagnose() if diagnose else ""
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{details}", pytrace=False)
        await asyncio.sleep(interval)


# -- the Prefect server -----------------------------------------------------------------------------------------


@dataclass
class PrefectServer:
    url: str
    process: Process
    client_home: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a Prefect client process (CLI, runner) talking to this server."""
        return clean_env(PREFECT_API_URL=self.api_url, PREFECT_HOME=str(self.client_home), **extra)

    def client(self) -> Any:
        """A ``PrefectClient`` for this server (use as ``async with``); independent of this process's settings."""
        from prefect.client.orchestration import PrefectClient

        return PrefectClient(self.api_url)

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run the real ``prefect`` CLI against this server, from the repository root."""
        return subprocess.run(
            [str(PREFECT), *args],
            env=self.env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> UUID:
        """``prefect deployment run NAME --params JSON``; the new flow run's id, read from the CLI's output."""
        done = self.cli("deployment", "run", name, "--params", json.dumps(parameters))
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"prefect deployment run {name} exited {done.returncode}:\n{output}"
        found = re.search(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", output)
        assert found, f"no flow run id in the output of prefect deployment run:\n{output}"
        return UUID(found.group(1))

    def healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.api_url}/health", timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json() is True


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` with the UI, on a temporary home and SQLite file; stopped at the end."""
    if not PREFECT.exists():
        pytest.fail(f"the prefect CLI is not next to this Python ({PREFECT}); install the project in its venv")
    root = tmp_path_factory.mktemp("e2e-prefect")
    server_home, client_home = root / "server-home", root / "client-home"
    server_home.mkdir()
    client_home.mkdir()
    server: PrefectServer | None = None
    for attempt in range(3):  # a free port can be taken by someone else between probe and bind
        port = free_port()
        env = clean_env(
            PREFECT_HOME=str(server_home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{server_home / 'prefect.db'}",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="true",
            # as docs/prefect.md says: the UI's API address is PREFECT_API_URL, not --port (else port 4200)
            PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        )
        process = Process(
            "prefect server",
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--ui"],
            env=env,
            cwd=root,
            log_path=root / f"server-{attempt}.log",
        )
        candidate = PrefectServer(f"http://127.0.0.1:{port}", process, client_home)

        def up(c: PrefectServer = candidate) -> bool:
            return c.healthy() or not c.process.alive()

        try:
            wait_until(up, timeout=180, what="GET /api/health of prefect server start", diagnose=process.tail)
        except BaseException:
            process.stop()
            raise
        if candidate.process.alive():
            server = candidate
            break
        process.stop()
        if "address already in use" not in process.tail().lower():
            pytest.fail(f"prefect server start exited with {process.popen.returncode}\n{process.tail()}", pytrace=False)
    if server is None:
        pytest.fail("prefect server start could not bind a free port three times", pytrace=False)
    try:
        yield server
    finally:
        server.process.stop()


# -- VAO simulators ------------------------------------------------------------------------------------------------


class Simulator:
    """A demo-scenario VAO simulator on loopback and a client for its ``/_sim`` control plane."""

    username = "demo"
    password = "demo"

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=CONTROL_TIMEOUT)

    def vao_env(self) -> dict[str, str]:
        return {
            "VAO_URL": self.url,
            "VAO_USERNAME": self.username,
            "VAO_PASSWORD": self.password,
            "VAO_TIMEZONE": "UTC",
        }

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"method": method, "path": path}.items() if v}
        response = self.http.get("/_sim/requests", params=params)
        response.raise_for_status()
        requests: list[dict[str, Any]] = response.json()
        return requests

    def reset(self) -> None:
        """Fresh state: the scenario as loaded, an empty request log."""
        self.http.post("/_sim/reset", json={}).raise_for_status()
        self.http.delete("/_sim/requests").raise_for_status()

    def plans(self) -> dict[str, dict[str, Any]]:
        """Internal plan records by name."""
        response = self.http.get("/_sim/plans")
        response.raise_for_status()
        data = response.json()
        return {record["name"]: record for record in (data if isinstance(data, list) else data.values())}

    def plan_posts(self, op: str) -> dict[str, int]:
        """How many ``POST /v2/FailoverPlans/{id}/{op}`` each plan id received."""
        counts: dict[str, int] = {}
        for entry in self.requests(method="POST", path=f"/v2/FailoverPlans/*/{op}"):
            plan_id = entry["path"].split("/")[3].lower()
            counts[plan_id] = counts.get(plan_id, 0) + 1
        return counts

    def close(self) -> None:
        self.http.close()


@contextmanager
def _simulator(time_scale: float) -> Iterator[Simulator]:
    from vaodrill.simulator import create_app
    from vaodrill.simulator.server import BackgroundServer

    with BackgroundServer(create_app("demo", time_scale=time_scale)) as background:
        sim = Simulator(background.url)
        try:
            yield sim
        finally:
            sim.close()


@pytest.fixture(scope="session")
def drill_sim() -> Iterator[Simulator]:
    """The simulator the served deployments reach through ``VAO_*`` (60x: a 3-minute failover takes 3 s)."""
    with _simulator(60) as sim:
        yield sim


@pytest.fixture(scope="session")
def approval_sim() -> Iterator[Simulator]:
    """The simulator of the approved real failover (block ``e2e-approval``)."""
    with _simulator(120) as sim:
        yield sim


@pytest.fixture(scope="session")
def timeout_sim() -> Iterator[Simulator]:
    """The simulator of the real failover nobody approves (block ``e2e-timeout``)."""
    with _simulator(120) as sim:
        yield sim


# -- vaodrill serve ------------------------------------------------------------------------------------------------


#: The block ``vaodrill serve`` saved from the VAO_* it was started with: a run whose request replaces the
#: deployment's names it (its processes have no VAO_* to fall back on).
SERVED_BLOCK = {"$ref": {"block_document_slug": "vao-server/vaodrill-serve"}}


@dataclass
class Served:
    process: Process
    server: PrefectServer
    #: The 'VAO Server' block type was on the server when the deployments appeared: ``serve`` registered it.
    block_type_registered: bool = False

    def diagnose(self) -> str:
        return self.process.tail(80)


@pytest.fixture(scope="session")
def served(
    prefect_server: PrefectServer, drill_sim: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``vaodrill serve`` (all deployments of flows/deployments.py) from the repo root, until the session ends."""
    if not VAODRILL.exists():
        pytest.fail(f"the vaodrill CLI is not next to this Python ({VAODRILL}); pip install -e .", pytrace=False)
    logs = tmp_path_factory.mktemp("e2e-serve")
    env = prefect_server.env(**drill_sim.vao_env())  # serve's own poll interval (1 s), no block registered before
    process = Process("vaodrill serve", [str(VAODRILL), "serve"], env=env, cwd=REPO_ROOT, log_path=logs / "serve.log")
    served = Served(process, prefect_server)
    try:

        def all_deployed() -> bool:
            if not process.alive():
                pytest.fail(f"vaodrill serve exited with {process.popen.returncode}\n{process.tail()}", pytrace=False)
            return all(
                httpx.get(f"{prefect_server.api_url}/deployments/name/{name}", timeout=5).status_code == 200
                for name in SERVED_DEPLOYMENTS
            )

        wait_until(
            all_deployed,
            timeout=120,
            interval=0.5,
            what=f"deployments {', '.join(SERVED_DEPLOYMENTS)}",
            diagnose=process.tail,
        )
        served.block_type_registered = (
            httpx.get(f"{prefect_server.api_url}/block_types/slug/vao-server", timeout=5).status_code == 200
        )
        yield served
    finally:
        process.stop()


@pytest.fixture(scope="session")
async def vao_blocks(prefect_server: PrefectServer, approval_sim: Simulator, timeout_sim: Simulator) -> dict[str, Any]:
    """``VaoServer`` blocks saved on the server, one per approval simulator: {purpose: the block's ``$ref``, the
    value of a run's ``vao_block`` parameter}."""
    from pydantic import SecretStr

    from vaodrill_prefect.tasks.blocks import VaoServer, block_ref

    names = {"approval": "e2e-approval", "timeout": "e2e-timeout"}
    async with prefect_server.client() as client:
        for purpose, sim in (("approval", approval_sim), ("timeout", timeout_sim)):
            block = VaoServer(url=sim.url, username=sim.username, password=SecretStr(sim.password))
            await block.asave(names[purpose], overwrite=True, client=client)
    return {purpose: block_ref(name) for purpose, name in names.items()}


# -- flow runs -----------------------------------------------------------------------------------------------------


async def run_summary(client: Any, flow_run_id: UUID, log_lines: int = 40) -> str:
    """State and last log lines of a flow run, for assertion messages."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    run = await client.read_flow_run(flow_run_id)
    logs = await client.read_logs(
        LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), sort=LogSort.TIMESTAMP_DESC, limit=log_lines
    )
    lines = "\n".join(f"  {log.timestamp:%H:%M:%S} {log.level:>2} {log.message}" for log in reversed(logs))
    state = run.state
    summary = (
        f"flow run {run.name!r} ({flow_run_id}): {state.type.value if state else None} "
        f"{state.name if state else ''} {state.message if state else ''}\nlast logs:\n{lines}"
    )
    if "Concurrency lease renewal failed" in lines:
        summary += (
            "\nNOTE: the deployment's concurrency lease was revoked under the running flow. Prefect 3.9.1 "
            "releases a deployment concurrency slot (and revokes its lease) when a run goes Running -> "
            "Paused, while the flow engine keeps renewing that lease and cancels the run when renewal "
            "fails: a deployment with concurrency_limit whose flow pauses crashes (at once if the first "
            "renewal comes after the pause, else after ~225 s)."
        )
    return summary


async def wait_for_run(
    client: Any,
    flow_run_id: UUID,
    until: Callable[[Any], bool],
    *,
    timeout: float,
    what: str,
    extra: Callable[[], str] = lambda: "",
) -> Any:
    """Poll ``read_flow_run`` until ``until(flow_run)``; a terminal state that does not match fails at once."""

    async def check() -> Any:
        run = await client.read_flow_run(flow_run_id)
        if until(run):
            return run
        if run.state is not None and run.state.is_final():
            pytest.fail(
                f"flow run ended before {what}:\n{await run_summary(client, flow_run_id)}\n{extra()}", pytrace=False
            )
        return None

    async def diagnose() -> str:
        return f"{await run_summary(client, flow_run_id)}\n{extra()}"

    return await await_until(check, timeout=timeout, what=what, diagnose=diagnose)


def is_final(run: Any) -> bool:
    return run.state is not None and run.state.is_final()


async def read_events(client: Any, flow_run_id: UUID, names: list[str]) -> list[Any]:
    """The events of these names related to the flow run (all pages)."""
    import datetime as dt

    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventRelatedFilter

    now = dt.datetime.now(dt.UTC)
    page = await client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter.model_validate(  # Prefect's DateTime, from plain datetimes
                {"since": now - dt.timedelta(hours=1), "until": now + dt.timedelta(minutes=5)}
            ),
            event=EventNameFilter(name=names),
            related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        ),
        limit=50,
    )
    events = list(page.events)
    while page.next_page is not None:
        page = await client.read_events_page(page.next_page)
        events.extend(page.events)
    return events


@dataclass
class FinishedRun:
    flow_run_id: UUID
    flow_run: Any
    seconds: float
    report_dir: Path


@pytest.fixture(scope="session")
async def drill_run(
    served: Served, drill_sim: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FinishedRun]:
    """The demo drill through the ``manual-drill`` deployment, triggered by the CLI, waited for to the end."""
    report_dir = tmp_path_factory.mktemp("e2e-drill-reports")
    drill_sim.reset()
    started = time.monotonic()
    flow_run_id = served.server.run_deployment(
        DRILL_DEPLOYMENT,
        {
            "request": {
                "drill_file": "deployments/drills/demo.yaml",
                "report_dir": str(report_dir),
                "vao_block": SERVED_BLOCK,
            }
        },
    )
    async with served.server.client() as client:
        run = await wait_for_run(
            client, flow_run_id, is_final, timeout=150, what="the drill's terminal state", extra=served.diagnose
        )
    yield FinishedRun(flow_run_id, run, time.monotonic() - started, report_dir)


@dataclass
class StartedRun:
    flow_run_id: UUID
    triggered_at: float


@pytest.fixture(scope="session")
def timeout_run(
    served: Served, timeout_sim: Simulator, vao_blocks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> StartedRun:
    """A ``real-failover`` run with the shortest approval timeout (1 min) that nobody will approve."""
    report_dir = tmp_path_factory.mktemp("e2e-timeout-reports")
    timeout_sim.reset()
    flow_run_id = served.server.run_deployment(
        FAILOVER_DEPLOYMENT,
        {
            "request": {
                "drill_file": str(fast_failover_spec(tmp_path_factory.mktemp("e2e-timeout-spec"))),
                "vao_block": vao_blocks["timeout"],
                "report_dir": str(report_dir),
                "approval_timeout_minutes": 1,
            }
        },
    )
    return StartedRun(flow_run_id, time.monotonic())


@pytest.fixture(scope="session", autouse=True)
def _start_timeout_run_first(request: pytest.FixtureRequest) -> None:
    """Start ``timeout_run`` before any e2e test when a selected test uses it: its minute passes meanwhile."""
    if any("timeout_run" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("timeout_run")


def fast_failover_spec(directory: Path) -> Path:
    """deployments/drills/real-failover.yaml (mode: failover), polling every second instead of every 10 s."""
    import yaml

    spec = yaml.safe_load((REPO_ROOT / "deployments/drills/real-failover.yaml").read_text())
    assert spec["mode"] == "failover"
    spec["poll_interval"] = "1s"
    path = directory / "real-failover-fast.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# -- a failed drill (browser tests) ---------------------------------------------------------------------------------

#: The demo drill plus the Disabled 'Legacy ERP' plan: Legacy ERP is refused, Reporting (after it) is skipped.
FAILED_DRILL_FILE = "deployments/drills/with-legacy-erp.yaml"


@pytest.fixture(scope="session")
async def failed_run(drill_run: FinishedRun, served: Served, tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A drill that fails, through the ``manual-drill`` deployment, waited for to the end.

    After ``drill_run`` (the deployment runs one drill at a time, and both use ``drill_sim``); it writes nothing
    to the Disabled plan and leaves the simulator as it found it (every plan that failed over is undone).
    """
    report_dir = tmp_path_factory.mktemp("e2e-failed-reports")
    started = time.monotonic()
    flow_run_id = served.server.run_deployment(
        DRILL_DEPLOYMENT,
        {"request": {"drill_file": FAILED_DRILL_FILE, "report_dir": str(report_dir), "vao_block": SERVED_BLOCK}},
    )
    async with served.server.client() as client:
        run = await wait_for_run(
            client, flow_run_id, is_final, timeout=150, what="the failed drill's terminal state", extra=served.diagnose
        )
    return FinishedRun(flow_run_id, run, time.monotonic() - started, report_dir)


@pytest.fixture(scope="session")
async def form_block(prefect_server: PrefectServer, drill_sim: Simulator) -> str:
    """A ``VaoServer`` block saved on the server, for the run form's block picker to offer."""
    from pydantic import SecretStr

    from vaodrill_prefect.tasks.blocks import VaoServer

    name = "e2e-form-vao"
    async with prefect_server.client() as client:
        block = VaoServer(url=drill_sim.url, username=drill_sim.username, password=SecretStr(drill_sim.password))
        await block.asave(name, overwrite=True, client=client)
    return name
