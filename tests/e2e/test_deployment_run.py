"""The demo drill through a served deployment: real server, ``vaodrill serve``, ``prefect deployment run``.

The run executes in a child process of the runner and reaches the simulator through the block ``vaodrill serve``
saved from the ``VAO_*`` environment it was given (the child's environment has no ``VAO_*``). Checked through
Prefect's API: final state, artifacts, events; through the simulator's request log: exactly one Run and one Undo
per plan.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from .conftest import (
    SERVED_BLOCK,
    FinishedRun,
    PrefectServer,
    Served,
    Simulator,
    await_until,
    read_events,
    run_summary,
)

pytestmark = pytest.mark.e2e

DEMO_PLANS = ("Core Network", "Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting")
DRILL = "demo-app-stack"


async def test_drill_deployment_completes(
    drill_run: FinishedRun, prefect_server: PrefectServer, served: Served
) -> None:
    async with prefect_server.client() as client:
        run = drill_run.flow_run
        assert run.state.is_completed(), await run_summary(client, drill_run.flow_run_id)
        deployment = await client.read_deployment(run.deployment_id)
        assert deployment.name == "manual-drill"
        assert run.name.startswith(f"{DRILL} · "), run.name  # flow_run_name=_drill_run_name: the drill name
        print(f"\ndrill flow run {run.name!r} completed {drill_run.seconds:.1f}s after the trigger")


async def test_drill_artifacts(drill_run: FinishedRun, prefect_server: PrefectServer) -> None:
    async with prefect_server.client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[drill_run.flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts if a.key}
    assert {f"drill-{DRILL}-report", f"drill-{DRILL}-plans"} <= set(by_key), sorted(by_key)

    report = by_key[f"drill-{DRILL}-report"]
    assert report.type == "markdown"
    for plan in DEMO_PLANS:
        assert plan in report.data, f"{plan} missing from the report artifact:\n{report.data}"

    table = by_key[f"drill-{DRILL}-plans"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert sorted(row["plan"] for row in rows) == sorted(DEMO_PLANS), rows
    assert {row["status"] for row in rows} == {"✅ passed"}, rows


async def test_drill_events(drill_run: FinishedRun, prefect_server: PrefectServer) -> None:
    names = [
        "vaodrill.failover.started",
        "vaodrill.failover.completed",
        "vaodrill.failover.failed",
        "vaodrill.undo.completed",
        "vaodrill.undo.failed",
        "vaodrill.drill.completed",
    ]
    async with prefect_server.client() as client:

        async def all_recorded() -> list[Any] | None:
            # events are persisted asynchronously by the server's event persister
            events = await read_events(client, drill_run.flow_run_id, names)
            done = [e for e in events if e.event == "vaodrill.drill.completed"]
            undone = [e for e in events if e.event == "vaodrill.undo.completed"]
            return events if done and len(undone) >= len(DEMO_PLANS) else None

        events = await await_until(all_recorded, timeout=30, what="the drill's events on the server")

    def of(name: str) -> list[Any]:
        return [e for e in events if e.event == name]

    (completed,) = of("vaodrill.drill.completed")
    assert completed.resource.id == f"vaodrill.drill.{DRILL}"
    assert completed.resource.get("vaodrill.verdict") == "passed", dict(completed.resource)  # for automations
    assert completed.payload["verdict"] == "passed", completed.payload
    assert completed.payload["left_failed_over"] == []

    started = of("vaodrill.failover.started")
    assert sorted(e.resource["prefect.resource.name"] for e in started) == sorted(DEMO_PLANS)
    assert all(e.resource.id.startswith("vao.plan.") for e in started)
    assert all(e.resource.get("vaodrill.drill") == DRILL for e in started)
    assert all(e.payload["confirmed"] for e in started), [e.payload for e in started]
    completed_plans = of("vaodrill.failover.completed")
    assert all(e.payload["rto_met"] is True and e.resource["vaodrill.rto_met"] == "true" for e in completed_plans)
    assert len(of("vaodrill.failover.completed")) == len(DEMO_PLANS)
    assert len(of("vaodrill.undo.completed")) == len(DEMO_PLANS)
    assert of("vaodrill.undo.failed") == []
    assert of("vaodrill.failover.failed") == []


def test_drill_requests_on_the_simulator(drill_run: FinishedRun, drill_sim: Simulator) -> None:
    plan_ids = {name: record["id"].lower() for name, record in drill_sim.plans().items()}
    expected = {plan_ids[name]: 1 for name in DEMO_PLANS}
    assert drill_sim.plan_posts("Run") == expected
    assert drill_sim.plan_posts("Undo") == expected
    # nothing else was written: no Halt/Continue/Reset/Enable..., and nothing to the disabled Legacy ERP plan
    writes = [r for r in drill_sim.requests(method="POST") if r["path"].startswith("/v2/FailoverPlans/")]
    assert len(writes) == 2 * len(DEMO_PLANS), writes
    assert all(r["status"] < 300 for r in writes), writes


def test_drill_report_files(drill_run: FinishedRun) -> None:
    reports = list(drill_run.report_dir.rglob("report.json"))
    assert len(reports) == 1, f"expected one report.json under {drill_run.report_dir}: {reports}"
    report = json.loads(reports[0].read_text())
    assert report["drill"] == DRILL
    assert report["verdict"] == "passed"
    assert report["run_id"] == str(drill_run.flow_run_id)


async def test_a_missing_drill_file_fails_the_run_at_once(
    served: Served, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """A drill file that does not exist on the machine that runs the drill: the run fails at its start, with the
    path in its state message, and nothing is sent to VAO."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from .conftest import await_until, is_final, wait_for_run

    missing = "deployments/drills/no-such-drill.yaml"
    flow_run_id = served.server.run_deployment(
        "dr-drill/manual-drill", {"request": {"drill_file": missing, "report_dir": str(tmp_path)}}
    )
    async with prefect_server.client() as client:
        run = await wait_for_run(
            client, flow_run_id, is_final, timeout=120, what="the run's end", extra=served.diagnose
        )

        async def logged() -> list[Any] | None:  # a run's logs reach the API in batches, after its state
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            return logs if run.state.message in [log.message for log in logs] else None

        logs = await await_until(logged, timeout=30, what="the refusal's log line")
    assert run.state.is_failed(), run.state
    assert f"no such drill file: {missing}" in (run.state.message or ""), run.state.message
    assert run.name == f"no-such-drill · {run.name.split(' · ')[1]}", run.name  # named after the file
    seconds = (run.end_time - run.start_time).total_seconds()
    print(f"\nmissing drill file: Running -> Failed in {seconds:.2f} s; logs: {[log.message[:80] for log in logs]}")
    assert seconds < 10, seconds  # a generous ceiling; the figure is printed
    assert not [log.message for log in logs if "Traceback" in log.message], "a refused request is one line"


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, grandchildren...), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


async def test_the_processes_serve_starts_have_no_vao_variables(
    served: Served, drill_sim: Simulator, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """``vaodrill serve`` was started with the simulator's ``VAO_*`` (password included) in its environment; the
    flow-run process it starts, read from /proc while it fails a plan over, has no ``VAO_*`` at all."""
    from .conftest import is_final, wait_for_run, wait_until

    drill_sim.reset()
    core = drill_sim.plans()["Core Network"]["id"]
    drill_sim.http.patch(f"/_sim/plans/{core}", json={"failover_duration": 3600}).raise_for_status()
    flow_run_id = served.server.run_deployment(
        "dr-drill/manual-drill",
        {
            "request": {
                "drill_file": "deployments/drills/demo.yaml",
                "report_dir": str(tmp_path),
                "vao_block": SERVED_BLOCK,
            }
        },
    )
    async with prefect_server.client() as client:
        try:
            wait_until(
                lambda: drill_sim.plan_posts("Run"), timeout=120, what="the drill's first Run", diagnose=served.diagnose
            )
            environs = {}
            for pid in descendants(served.process.pid):
                try:
                    environs[pid] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
            assert environs, "no child process of vaodrill serve"
            leaked = {pid: [v.split(b"=")[0] for v in env if v.startswith(b"VAO_")] for pid, env in environs.items()}
            assert not any(leaked.values()), leaked
            assert any(b"PREFECT__FLOW_RUN_ID=" + str(flow_run_id).encode() in env for env in environs.values())
        finally:
            await client.set_flow_run_state(flow_run_id, _cancelling(), force=True)
            await wait_for_run(
                client, flow_run_id, is_final, timeout=180, what="the cancelled run's end", extra=served.diagnose
            )
            drill_sim.reset()


def _cancelling() -> Any:
    from prefect.states import Cancelling

    return Cancelling(message="test over")
