"""Shared fixtures: a simulator over real loopback HTTP, and a Prefect test API for flow tests."""

from __future__ import annotations

import os
import sys

# Before Prefect starts its test server: no telemetry, none of the background services flow tests don't need.
for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
}.items():
    os.environ.setdefault(_key, _value)

from collections.abc import AsyncIterator, Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

from tests.test_simulator_support import Api, FakeClock, app_for  # noqa: E402


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n``: the e2e tests as one unit of work on one worker (they share one Prefect server and rely on
    their order), every other test module as its own unit (its module fixtures set up once), e2e first."""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]  # xdist ships no types

    class E2eTogether(LoadScopeScheduling):  # type: ignore[misc]  # untyped base
        def _split_scope(self, nodeid: str) -> str:
            return "tests/e2e" if nodeid.startswith("tests/e2e/") else nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # collection order: the e2e unit, the longest, goes first
    return E2eTogether(config, log)


@pytest.fixture(scope="session")
def cli_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty PREFECT_HOME for CLI runs with no Prefect API configured (no profile of this machine leaks in)."""
    return tmp_path_factory.mktemp("cli-prefect-home")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a Hypothesis test, stop Prefect's background event workers left by earlier tests in this process:
    their websocket's keepalive pings draw from the global ``random`` in another thread, which Hypothesis reports
    as a strategy using it (they start again on the next event). Hypothesis marks its ``@given`` tests ``hypothesis``;
    a test that runs a ``@given`` function of its own carries the mark by hand."""
    if item.get_closest_marker("hypothesis") and "prefect" in sys.modules:
        from prefect._internal.concurrency.services import QueueService

        QueueService.drain_all(timeout=10)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real Prefect API (the test harness: a subprocess server on SQLite) for the whole session."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-storage")
    with (
        prefect_test_harness(server_startup_timeout=240),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_LOCAL_STORAGE_PATH: storage}),
    ):
        yield


VRO_OPS = {"Run": "Failover"}

#: Seconds a test's own request to a simulator's control plane may take: a ceiling, not an expectation. Beside two
#: CPU hogs, a fresh-clone run once waited more than 10 s for a simulator thread to answer one.
CONTROL_TIMEOUT = 60.0


class Sim:
    """A running simulator and a control-plane client for it."""

    def __init__(self, url: str, app: Any, api: str = "v2") -> None:
        self.url = url
        self.app = app
        #: The API a drill speaks to it (the same server serves both): ``v2`` or ``vro`` (at ``/api/v13``).
        self.api = api
        self.api_url = f"{url}/api/v13" if api == "vro" else url
        self.scenario: str | None = app.state.sim.scenario.name if app is not None else None
        self.control = httpx.Client(base_url=url, timeout=CONTROL_TIMEOUT)

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"method": method, "path": path}.items() if v}
        response = self.control.get("/_sim/requests", params=params)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    def plans(self) -> dict[str, dict[str, Any]]:
        """Internal records by plan name."""
        response = self.control.get("/_sim/plans")
        response.raise_for_status()
        data = response.json()
        records = data if isinstance(data, list) else list(data.values())
        return {r["name"]: r for r in records}

    def plan_id(self, name: str) -> str:
        return str(self.plans()[name]["id"])

    def patch(self, name: str, **changes: object) -> None:
        self.control.patch(f"/_sim/plans/{self.plan_id(name)}", json=changes).raise_for_status()

    def path(self, op: str = "") -> str:
        """The request-log path of a plan operation in this sim's API (``Run`` is VRO's ``Failover``), or of the
        plan list."""
        if self.api == "vro":
            return f"/api/v13/Plans/*/{VRO_OPS.get(op, op)}" if op else "/api/v13/Plans"
        return f"/v2/FailoverPlans/*/{op}" if op else "/v2/FailoverPlans"

    def posts(self, op: str) -> dict[str, int]:
        """Count of POST .../{op} per plan id."""
        counts: dict[str, int] = {}
        for entry in self.requests(method="POST", path=self.path(op)):
            plan_id = entry["path"].split("/")[4 if self.api == "vro" else 3].lower()
            counts[plan_id] = counts.get(plan_id, 0) + 1
        return counts


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Sim]]:
    """Start simulators over loopback HTTP: ``sim_factory("veeam-docs", time_scale=600)``; all stopped after.

    ``scenario`` is anything ``create_app`` takes (a built-in name, a path, a mapping); other keyword arguments
    go to ``create_app`` too.
    """
    from vaodrill.simulator import create_app
    from vaodrill.simulator.server import BackgroundServer

    started: list[tuple[BackgroundServer, Sim]] = []

    def make(scenario: Any = "demo", time_scale: float = 600, api: str = "v2", **kwargs: Any) -> Sim:
        app = create_app(scenario, time_scale=time_scale, **kwargs)
        server = BackgroundServer(app).start()
        started.append((server, Sim(server.url, app, api)))
        return started[-1][1]

    yield make
    for server, sim in started:
        sim.control.close()
        server.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., Sim]) -> Sim:
    """A fresh demo simulator at 600x on loopback (a 5-minute failover takes half a second)."""
    return sim_factory("demo", time_scale=600)


@pytest.fixture(params=["demo", "veeam-docs"])
def any_sim(request: pytest.FixtureRequest, sim_factory: Callable[..., Sim]) -> Sim:
    """The demo plans at 600x, once as the contract spells them (``demo``) and once as Veeam documents them
    (``veeam-docs``: Verified/NotVerified idle plans, undo left complete, /Run/Continue, 400/500 refusals...).
    ``"demo@vro"``: the same simulator, driven through its VRO API (``/api/v13``)."""
    scenario, _, api = str(request.param).partition("@")
    return sim_factory(scenario, time_scale=600, api=api or "v2")


# -- in-process simulators with an injected clock (the simulator's own tests) -------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_api(clock: FakeClock) -> AsyncIterator[Callable[..., Api]]:
    """In-process simulators sharing one injected clock, closed after the test."""
    made: list[Api] = []

    def make(scenario: Any = "demo", **kwargs: Any) -> Api:
        api = Api(app_for(scenario, clock=clock, **kwargs), username=kwargs.get("username", "demo"))
        made.append(api)
        return api

    yield make
    for api in made:
        await api.aclose()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
