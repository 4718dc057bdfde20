"""End-to-end drills: the dr_drill flow under a real Prefect API against the simulator over loopback HTTP.

The engine's own paths (halts, timeouts, failures, failover mode, max_parallel, faults) are tested without
Prefect in test_engine.py and test_faults.py; these tests cover what the Prefect adapter adds.

Every test reads the simulator's request log: one Run per started plan, one Undo per failed-over plan, no POST
to a plan that fails its precondition, status reads that do not grow with the number of plans.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest
from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, State, TaskRun

from tests.conftest import Sim
from tests.test_engine import write_spec
from vaodrill.engine import progress
from vaodrill.engine.steps import DrillSession
from vaodrill.report.model import DrillReport, PlanResult, load_report
from vaodrill.spec.loader import load_spec
from vaodrill_prefect.tasks.vao import QuietFinish

pytestmark = pytest.mark.usefixtures("prefect_api")


async def run_drill_flow(
    sim: Sim,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: Path,
    flow: Flow[..., Any] | None = None,
    **request: Any,
) -> tuple[State[Any], DrillReport]:
    """Run dr_drill in this process; return its final state and the report it wrote."""
    from vaodrill_prefect.flows.drill import DrillRequest, dr_drill

    monkeypatch.setenv("VAO_URL", sim.url)
    monkeypatch.setenv("VAO_USERNAME", "demo")
    monkeypatch.setenv("VAO_PASSWORD", "demo")
    reports = tmp_path / "reports"
    run = (flow or dr_drill)(
        request=DrillRequest(drill_file=str(spec), report_dir=str(reports), **request), return_state=True
    )
    state = await cast(Awaitable[State[Any]], run)  # an async flow: its call is awaited for its final state
    files = sorted(reports.glob("*/*/report.json"))  # one per attempt; names sort by start time
    assert files, "no report written"
    return state, load_report(files[-1])


def flow_run_of(state: State[Any]) -> UUID:
    """The flow run a flow's final state belongs to (always set on one)."""
    assert state.state_details.flow_run_id is not None
    return state.state_details.flow_run_id


def by_name(report: DrillReport) -> dict[str, PlanResult]:
    return {p.plan: p for p in report.plans}


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_demo_dag_passes_in_dependency_order(sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, report = await run_drill_flow(sim, tmp_path, monkeypatch, write_spec(tmp_path))
    assert state.is_completed(), state.message
    assert state.message == "PASSED: 6 of 6 plans failed over and undone, RTO target met by 6 of 6"
    assert report.verdict == "passed", report.reason
    plans = by_name(report)
    assert set(plans) == {"Core Network", "Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting"}
    assert all(p.status == "passed" and p.undo == "verified" for p in plans.values())

    records = sim.plans()
    ids = {name: records[name]["id"].lower() for name in plans}
    # exactly one Run and one Undo per plan, none to Legacy ERP
    assert sim.posts("Run") == {ids[n]: 1 for n in plans}
    assert sim.posts("Undo") == {ids[n]: 1 for n in plans}
    # every plan is Enabled again
    assert all(records[n]["planState"] == "Enabled" for n in plans)
    # every plan started only after its dependencies completed (simulator's own timings)
    stages = {n: next(s for s in records[n]["stages"] if s["kind"] == "Failover") for n in plans}
    for step in plans.values():
        for dep in step.after:
            assert parse(stages[step.plan]["started_at"]) >= parse(stages[dep]["ended_at"]), (step.plan, dep)
    # achieved RTO is the Run POST to the completion seen: never shorter than the stage the simulator recorded, seen
    # by a plan-list read that came after the stage ended, and within a few reads of it (the simulator's request log,
    # not the clock: a loaded machine slows the reads and the waiters alike)
    lists = [parse(e["at"]) for e in sim.requests(method="GET", path="/v2/FailoverPlans") if e["status"] == 200]
    for name, result in plans.items():
        ended = parse(stages[name]["ended_at"])
        actual = (ended - parse(stages[name]["started_at"])).total_seconds()
        seen = result.failover_completed_at
        assert seen is not None and seen >= ended, (name, ended, seen)
        # the simulator logs a read when it arrives and answers it later: the last read that arrived before the end
        # may be the one whose answer showed it, on a loaded machine
        since = max((moment for moment in lists if moment <= ended), default=ended)
        assert 1 <= sum(1 for moment in lists if since <= moment <= seen) <= 6, name
        assert result.rto_seconds is not None and result.rto_seconds >= actual - 0.05, (name, actual, result)
        assert result.rto_met is True
    # the restore point sent is the one the report shows, and the simulator resolved it
    assert plans["SQL Tier"].restore_point == stages["SQL Tier"]["restore_point_requested"]
    # status reads: per-plan GETs are bounded by the session's rule; polling is one list per interval for all plans
    gets = sim.requests(method="GET", path="/v2/FailoverPlans/*")
    per_plan = {ids[n]: sum(1 for g in gets if g["path"].lower().endswith(ids[n])) for n in plans}
    assert all(count in DrillSession.PLAN_READS_ON_A_CLEAN_PASS for count in per_plan.values()), per_plan
    elapsed = (report.finished_at - report.started_at).total_seconds()
    all_lists = len(sim.requests(method="GET", path="/v2/FailoverPlans"))
    assert all_lists <= elapsed / 0.05 + 10, (all_lists, elapsed)
    # the progress artifact, created beside the drill (its first Run does not wait for it), ends at 100 %
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_of(state)]),
                type=ArtifactFilterType(any_=["progress"]),
            )
        )
    assert [a.data for a in artifacts] == [100.0]


async def test_a_served_drill_reads_its_file_once_and_is_named_after_it(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment's run gets only the file's path: the run's name and its body share one reading of it."""
    from vaodrill_prefect.flows import drill as drill_flow

    reads: list[str] = []

    def counted(path: str | Path) -> Any:
        reads.append(str(path))
        return load_spec(path)

    monkeypatch.setattr(drill_flow, "load_spec", counted)
    spec = write_spec(tmp_path, plans="- plan: Core Network\n", name="read-once")
    state, report = await run_drill_flow(sim, tmp_path, monkeypatch, spec)
    assert state.is_completed(), state.message
    assert reads == [str(spec)]
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_of(state))
    assert run.name.startswith("read-once · "), run.name
    assert report.drill == "read-once"


async def test_disabled_plan_gets_no_post_and_its_dependents_are_skipped(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(
        tmp_path,
        """
  - plan: Core Network
  - plan: Active Directory
    after: [Core Network]
  - plan: SQL Tier
    after: [Active Directory]
  - plan: App Tier
    after: [SQL Tier]
  - plan: Reporting
    after: [SQL Tier]
  - plan: Legacy ERP
    after: [SQL Tier]
  - plan: Web Tier
    after: [Legacy ERP]
""",
    )
    state, report = await run_drill_flow(sim, tmp_path, monkeypatch, spec)
    assert state.is_failed()
    assert report.verdict == "failed"
    plans = by_name(report)
    assert plans["Legacy ERP"].status == "failed"
    assert "Disabled" in (plans["Legacy ERP"].reason or "") and "precondition" in (plans["Legacy ERP"].reason or "")
    assert plans["Web Tier"].status == "skipped" and "Legacy ERP" in (plans["Web Tier"].reason or "")
    assert all(
        plans[n].status == "passed" for n in ("Core Network", "Active Directory", "SQL Tier", "App Tier", "Reporting")
    )
    erp = sim.plan_id("Legacy ERP").lower()
    assert not any(erp in e["path"].lower() for e in sim.requests(method="POST"))
    assert plans["Web Tier"].id not in {k for k in sim.posts("Run")}
    assert all(count == 1 for count in sim.posts("Run").values())
    assert sim.posts("Run").keys() == sim.posts("Undo").keys()


async def test_unknown_plan_fails_before_any_failover(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaodrill_prefect.flows.drill import DrillRequest, dr_drill

    monkeypatch.setenv("VAO_URL", sim.url)
    monkeypatch.setenv("VAO_USERNAME", "demo")
    monkeypatch.setenv("VAO_PASSWORD", "demo")
    spec = write_spec(tmp_path, "  - plan: Core Network\n  - plan: Mainframe\n    after: [Core Network]\n")
    state = await dr_drill(
        request=DrillRequest(drill_file=str(spec), report_dir=str(tmp_path / "r")), return_state=True
    )
    assert state.is_failed() and "Mainframe" in (state.message or "")
    assert sim.requests(method="POST", path="/v2/FailoverPlans/*") == []
    assert not (tmp_path / "r" / "journal").exists()  # nothing was done, so nothing to recover


async def test_a_rerun_with_the_same_run_id_never_sends_a_second_run(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed drill is a normal outcome (a Failed state with its cause, not an exception to retry); running it
    again under the same run id resumes from the journal: no plan gets a second Run."""
    spec = write_spec(tmp_path, "  - plan: Core Network\n  - plan: Legacy ERP\n")
    state, first = await run_drill_flow(sim, tmp_path, monkeypatch, spec)
    assert state.is_failed() and (state.message or "").startswith("FAILED: Legacy ERP failed (precondition")
    run_id = first.run_id
    state, again = await run_drill_flow(sim, tmp_path, monkeypatch, spec, run_id=run_id)
    assert state.is_failed() and by_name(again)["Core Network"].status == "passed"
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Run")) == 1  # Core Network once; ERP never
    assert len(sim.posts("Undo")) == 1
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_of(state))
    assert {"drill:test-drill", "verdict:failed"} <= set(run.tags)
    assert run.name.startswith("test-drill · ")


async def test_cancellation_mid_drill_still_cleans_up(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaodrill.engine.runs import Phase, Transition

    sim.patch("Active Directory", never_finish=True)
    failing_over = asyncio.Event()

    def listener(update: object) -> None:
        if (
            isinstance(update, Transition)
            and update.run.name == "Active Directory"
            and update.new is Phase.FAILING_OVER
        ):
            failing_over.set()

    unsubscribe = progress.subscribe(listener)
    drill = asyncio.ensure_future(run_drill_flow(sim, tmp_path, monkeypatch, write_spec(tmp_path)))
    try:
        await asyncio.wait_for(failing_over.wait(), timeout=60)
        drill.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drill
    finally:
        unsubscribe()
    records = sim.plans()
    assert records["Core Network"]["planState"] == "Enabled"
    assert records["Active Directory"]["planState"] == "Enabled"
    assert sim.posts("Run").keys() == sim.posts("Undo").keys()
    assert len(sim.posts("Run")) == 2
    reports = list((tmp_path / "reports").glob("*/*/report.json"))
    assert len(reports) == 1
    report = load_report(reports[0])
    assert report.verdict == "failed" and report.stopped == "cancelled" and "cancelled" in (report.reason or "")
    assert by_name(report)["Active Directory"].status == "interrupted"


async def test_single_plan_flow_runs_one_plan_end_to_end(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaodrill_prefect.flows.drill import failover_plan

    monkeypatch.setenv("VAO_URL", sim.url)
    monkeypatch.setenv("VAO_USERNAME", "demo")
    monkeypatch.setenv("VAO_PASSWORD", "demo")
    result = await failover_plan(plan="Reporting", restore_point="latest", report_dir=str(tmp_path))
    assert result["verdict"] == "passed" and result["plans"][0]["undo"] == "verified"
    reporting = sim.plan_id("Reporting").lower()
    assert sim.posts("Run") == {reporting: 1} and sim.posts("Undo") == {reporting: 1}


def generated_dag(plans: int, seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """A seeded DAG as the benchmark draws them: 6 layers, each plan after 1-2 plans of the layer before."""
    rng = random.Random(seed)
    layers: list[list[str]] = [[] for _ in range(6)]
    for i in range(plans):
        layers[i if i < len(layers) else rng.randrange(len(layers))].append(f"plan-{i:02d}")
    after: dict[str, list[str]] = {}
    for previous, layer in zip([[], *layers], layers, strict=False):
        for name in layer:
            after[name] = sorted(rng.sample(previous, min(len(previous), rng.randint(1, 2))))
    return [name for layer in layers for name in layer], after


async def drill_graph(flow_run_id: UUID, nodes: int) -> dict[str, dict[str, Any]]:
    """The drill run's graph as the UI draws it (``graph-v2``), by label, once the server has recorded ``nodes``
    task runs in a final state (it records them from the events the drill sends in the background)."""
    import time

    import httpx
    from prefect.settings import PREFECT_API_URL

    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(base_url=PREFECT_API_URL.value()) as api:
        while True:
            graph = (await api.get(f"/flow_runs/{flow_run_id}/graph-v2")).raise_for_status().json()
            found = {node["label"]: node for _, node in graph["nodes"]}
            final = [n for n in found.values() if n["state_type"] in ("COMPLETED", "FAILED", "CANCELLED")]
            if len(final) >= nodes:
                return found
            assert time.monotonic() < deadline, f"{len(final)} of {nodes} nodes recorded: {sorted(found)}"
            await asyncio.sleep(0.2)


async def task_runs_of(client: PrefectClient, flow_run_id: UUID) -> list[TaskRun]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


async def test_run_graph_of_a_50_plan_drill_is_its_dag_with_a_reason_on_every_plan(
    sim_factory: Callable[..., Sim], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Prefect UI's run graph (the graph-v2 API it draws) of a 50-plan drill with a refused plan: one node per
    plan, ``failover · <plan>``, linked along the DAG, also for the plans skipped after the refused one; an undo
    node after each plan failed over; each plan's task run states why it ended as it did."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId
    from prefect.logging.handlers import APILogHandler

    order, after = generated_dag(50, seed=17)

    def downstream(plan: str) -> set[str]:
        found: set[str] = set()
        for name in order:  # in dependency order
            if any(dep == plan or dep in found for dep in after[name]):
                found.add(name)
        return found

    # the refused plan has dependencies (which pass) and dependents, and theirs, which are skipped
    refused = max((name for name in order if after[name]), key=lambda name: len(downstream(name)))
    scenario = {
        "name": "graph-50",
        "timezone": "UTC",
        "defaults": {"steps": 2},
        "plans": [
            {
                "name": name,
                "failover_duration": 30 + 7 * (i % 10),
                "undo_duration": 10,
                **({"state": "Disabled"} if name == refused else {}),
            }
            for i, name in enumerate(order)
        ],
    }
    sim = sim_factory(scenario, time_scale=600)
    spec = write_spec(
        tmp_path,
        "\n".join(
            f"  - plan: {name}" + (f"\n    after: [{', '.join(after[name])}]" if after[name] else "") for name in order
        ),
    )
    skipped = downstream(refused)
    passed = set(order) - skipped - {refused}
    assert len(skipped) >= 3 and any(refused not in after[name] for name in skipped)  # transitive skips too

    state, report = await run_drill_flow(sim, tmp_path, monkeypatch, spec)
    assert state.is_failed() and {p.plan for p in report.plans if p.status == "passed"} == passed
    nodes = await drill_graph(flow_run_of(state), nodes=len(order) + len(passed))
    plans = {
        label.removeprefix("failover · "): node for label, node in nodes.items() if label.startswith("failover · ")
    }
    undos = {label.removeprefix("undo · "): node for label, node in nodes.items() if label.startswith("undo · ")}
    assert sorted(plans) == sorted(order) and set(undos) == passed, sorted(nodes)
    assert len(nodes) == len(plans) + len(undos), sorted(nodes)  # no other node: the steps are inside the plan's
    label_of = {node["id"]: name for name, node in plans.items()}
    for name in order:  # the DAG's edges, and nothing else (Prefect's SQLite query may list an edge twice)
        assert {label_of[edge["id"]] for edge in plans[name]["parents"]} == set(after[name]), name
    for name in passed:
        assert {edge["id"] for edge in undos[name]["parents"]} == {plans[name]["id"]}, name
    states = {name: node["state_type"] for name, node in plans.items()}
    assert states == {
        name: "COMPLETED" if name in passed else "FAILED" if name == refused else "CANCELLED" for name in order
    }, states

    async with get_client() as client:
        runs = await task_runs_of(client, flow_run_of(state))
        by_plan = {run.name.removeprefix("failover · "): run for run in runs if run.name.startswith("failover · ")}
        ended = {name: run.state for name, run in by_plan.items() if run.state is not None}
        message = {name: state.message or "" for name, state in ended.items()}
        assert ended[refused].name == "Refused"
        assert "precondition" in message[refused] and "Disabled" in message[refused]
        for name in skipped:  # skipped because of a named dependency that did not pass
            blocking = [dep for dep in after[name] if dep == refused or dep in skipped]
            assert ended[name].name == "Skipped" and any(f"'{dep}'" in message[name] for dep in blocking), (
                name,
                message[name],
            )
        for name in passed:
            assert message[name].startswith("failed over in "), message[name]
        await APILogHandler.aflush()
        logs = await client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[by_plan[order[0]].id])))
    lines = " | ".join(log.message for log in logs)
    for step in ("checking", "starting", "failing over", "failed over"):  # each step in the plan's task run's log
        assert f"{order[0]}: {step}" in lines, lines
    assert "Finished in state" not in lines, lines  # its state says so; the drill's filter is gone with it
    assert not [f for f in logging.getLogger("prefect.task_runs").filters if isinstance(f, QuietFinish)]
    assert (state.message or "").startswith(f"FAILED: {refused} failed (precondition: plan '{refused}' is Disabled"), (
        state.message
    )
    named = sorted(skipped, key=order.index)[:3]
    assert (state.message or "").endswith(
        f"; skipped: {', '.join(named)} and {len(skipped) - 3} more; {len(passed)} of 50 plans passed"
    ), state.message


def test_quiet_finish_drops_only_the_drill_s_own_completed_task_records() -> None:
    quiet = QuietFinish("run-1")

    def passes(level: int, message: str, run: str = "run-1", task: str = "failover") -> bool:
        record = logging.LogRecord("prefect.task_runs", level, __file__, 1, message, None, None)
        record.__dict__.update(flow_run_id=run, task_name=task)
        return quiet.filter(record)

    assert not passes(logging.INFO, "Finished in state Completed()")
    assert not passes(logging.INFO, "Finished in state Completed()", task="undo")
    assert passes(logging.INFO, "Finished in state Completed()", run="run-2")  # another flow run's task
    assert passes(logging.INFO, "Finished in state Completed()", task="extract")  # another task of the drill's run
    assert passes(logging.ERROR, "Finished in state Failed('refused')")  # a failure is read on the page
    assert passes(logging.INFO, "Plan 1: checking")


async def killed_drill(sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FlowRun:
    """A real drill process SIGKILLed while Active Directory fails over (Core Network failed over before it):
    its Prefect run record; this process gets the VAO_* settings the serving process would have."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    sim.patch("Active Directory", never_finish=True)
    spec = write_spec(tmp_path)
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "VAO_URL": sim.url,
        "VAO_USERNAME": "demo",
        "VAO_PASSWORD": "demo",
    }
    code = (
        "import asyncio, sys; from vaodrill_prefect.flows.drill import DrillRequest, dr_drill; "
        "asyncio.run(dr_drill(request=DrillRequest(drill_file=sys.argv[1], report_dir=sys.argv[2])))"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(spec), str(tmp_path / "reports")],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ad = sim.plan_id("Active Directory").lower()
    deadline = time.monotonic() + 90
    try:
        while ad not in sim.posts("Run"):
            assert child.poll() is None and time.monotonic() < deadline, "the drill never started Active Directory"
            await asyncio.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert sim.posts("Undo") == {}  # killed before any cleanup
    async with get_client() as client:
        runs = await client.read_flow_runs()
    for key in ("VAO_URL", "VAO_USERNAME", "VAO_PASSWORD"):
        monkeypatch.setenv(key, env[key])
    return next(r for r in runs if (r.parameters.get("request") or {}).get("drill_file") == str(spec))


def assert_recovered(sim: Sim) -> None:
    records = sim.plans()
    assert records["Core Network"]["planState"] == "Enabled" and records["Active Directory"]["planState"] == "Enabled"
    core, ad = sim.plan_id("Core Network").lower(), sim.plan_id("Active Directory").lower()
    assert sim.posts("Undo") == {core: 1, ad: 1}
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Halt")) == 1  # AD was still running


async def test_cancellation_hook_undoes_what_a_killed_run_started(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped by a signal (as Prefect does on cancel) never reaches its own cleanup: the hook undoes it."""
    from vaodrill_prefect.flows.drill import dr_drill, undo_after_cancellation

    killed = await killed_drill(sim, tmp_path, monkeypatch)
    assert killed.state is not None
    await undo_after_cancellation(dr_drill, killed, killed.state)
    assert_recovered(sim)


async def test_a_crashed_recovery_run_is_followed_to_its_drill_run(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crashed-run automation also starts a recovery for a recovery run that crashed: that recovery recovers
    the drill run the crashed one was about (read from Prefect's records), and nothing twice."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from vaodrill_prefect.flows.drill import recover_drill

    killed = await killed_drill(sim, tmp_path, monkeypatch)
    async with get_client() as client:
        lost = await client.create_flow_run(
            recover_drill, parameters={"flow_run_id": str(killed.id)}, state=Crashed(message="worker lost")
        )
    state = await recover_drill(flow_run_id=str(lost.id), return_state=True)
    assert state.is_completed(), state.message
    assert_recovered(sim)
    again = await recover_drill(flow_run_id=str(lost.id), return_state=True)  # the journal is closed now
    assert again.is_completed() and len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Undo")) == 2


async def test_the_password_never_leaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not in reports, artifacts, run logs, events or the request log, even when the drill fails."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from vaodrill.simulator import create_app
    from vaodrill.simulator.server import BackgroundServer

    secret = "Sup3r-S3cret-Pw"
    with BackgroundServer(create_app("demo", time_scale=600, password=secret)) as server:
        sim = Sim(server.url, None)
        monkeypatch.setenv("VAO_URL", sim.url)
        spec = write_spec(tmp_path, "  - plan: Core Network\n  - plan: Legacy ERP\n")
        from vaodrill_prefect.flows.drill import DrillRequest, dr_drill

        monkeypatch.setenv("VAO_USERNAME", "demo")
        monkeypatch.setenv("VAO_PASSWORD", secret)
        state = await dr_drill(
            request=DrillRequest(drill_file=str(spec), report_dir=str(tmp_path / "r")), return_state=True
        )
        assert state.is_failed()
        request_log = json_text(sim.requests())
        sim.control.close()
    flow_run_id = flow_run_of(state)
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        query = {
            "filter": {
                "event": {"prefix": ["vaodrill."]},
                "related": {"resources_in_roles": [[f"prefect.flow-run.{flow_run_id}", "flow-run"]]},
            },
            "limit": 50,
        }
        for _ in range(100):  # events are persisted asynchronously: poll until the drill's last one is there
            events = await client.request("POST", "/events/filter", json=query)
            if "vaodrill.drill.completed" in events.text:
                break
            await asyncio.sleep(0.1)
    assert len(logs) > 5 and len(artifacts) >= 2 and "vaodrill.failover.started" in events.text
    haystack = "\n".join(
        [
            *(p.read_text() for p in (tmp_path / "r").rglob("*") if p.is_file()),
            *(log.message for log in logs),
            *(json_text(a.data) + str(a.description) for a in artifacts),
            events.text,
            request_log,
        ]
    )
    assert "Core Network" in haystack  # the haystack is real
    assert secret not in haystack


def json_text(value: object) -> str:
    import json

    return json.dumps(value, default=str)


async def test_write_limit_gates_every_run_and_undo(sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With VAODRILL_WRITE_LIMIT set, POSTs need a slot of that global concurrency limit; a missing limit stops
    the drill before any Run (strict) instead of running unthrottled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    monkeypatch.setenv("VAODRILL_WRITE_LIMIT", "vao-writes-test")
    spec = write_spec(tmp_path, "  - plan: Core Network\n")
    state, report = await run_drill_flow(sim, tmp_path / "missing", monkeypatch, spec)
    assert state.is_failed() and report.plans[0].status == "failed"
    assert sim.posts("Run") == {}

    async with get_client() as client:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="vao-writes-test", limit=1))
    state, report = await run_drill_flow(sim, tmp_path / "present", monkeypatch, spec)
    assert state.is_completed(), report.reason
    assert len(sim.posts("Run")) == 1 and len(sim.posts("Undo")) == 1


async def test_a_runs_stored_block_reference_is_loaded_again(tmp_path: Path) -> None:
    """A run's parameters hold a chosen block as a ``$ref`` (by id from the form's picker, by slug from a
    deployment); the recovery reads them back into a request with the block loaded, and refuses an unknown one."""
    from pydantic import SecretStr, ValidationError

    from vaodrill_prefect.flows.drill import DrillRequest
    from vaodrill_prefect.tasks.blocks import VaoServer, block_ref

    block = VaoServer(url="https://vao.example:9899", username="CORP\\svc", password=SecretStr("pw"))
    block_id = await block.asave("test-stored-ref", overwrite=True)
    by_slug = DrillRequest.model_validate({"vao_block": block_ref("test-stored-ref")})
    by_id = DrillRequest.model_validate({"vao_block": {"$ref": {"block_document_id": str(block_id)}}})
    assert by_slug.vao_block is not None and by_slug.vao_block.url == "https://vao.example:9899"
    assert by_id.vao_block is not None and by_id.vao_block.password.get_secret_value() == "pw"
    with pytest.raises(ValidationError, match="Unable to find block document named nowhere"):
        DrillRequest.model_validate({"vao_block": block_ref("nowhere")})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DrillRequest.model_validate({"vao_server": block_ref("test-stored-ref")})  # a misspelt field


async def test_a_stopped_drill_ends_every_plan_s_task_run(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop mid-drill (what the CLI's signal handler does): the plan failing over is interrupted and undone, the
    next one never starts, the run ends Failed, and no plan's task run is left running."""
    import time

    from prefect.client.orchestration import get_client

    from vaodrill.engine import signals

    sim.patch("Core Network", failover_duration=3600)
    spec = write_spec(tmp_path, "  - plan: Core Network\n  - plan: Active Directory\n    after: [Core Network]\n")
    core = sim.plan_id("Core Network").lower()

    async def stop_once_core_runs() -> None:
        deadline = time.monotonic() + 60
        while core not in sim.posts("Run") or not signals.running:
            assert time.monotonic() < deadline, "Core Network's Run never went out"
            await asyncio.sleep(0.05)
        for drill in list(signals.running):
            drill.stop("stopped by the test", kind="signal")

    stopper = asyncio.ensure_future(stop_once_core_runs())
    state, report = await run_drill_flow(sim, tmp_path, monkeypatch, spec)
    await stopper
    assert state.is_failed() and report.stopped == "signal"
    plans = by_name(report)
    assert plans["Core Network"].status == "interrupted" and plans["Core Network"].undo == "verified"
    assert plans["Active Directory"].status == "skipped"
    assert sim.posts("Run") == {core: 1} and sim.posts("Undo") == {core: 1}
    nodes = await drill_graph(flow_run_of(state), nodes=3)  # both plans and Core Network's undo
    async with get_client() as client:
        runs = await task_runs_of(client, flow_run_of(state))
    states = {run.name: run.state.name if run.state else None for run in runs}
    assert states == {
        "failover · Core Network": "Interrupted",
        "failover · Active Directory": "Skipped",
        "undo · Core Network": "Completed",
    }, states
    assert set(nodes) == set(states)
