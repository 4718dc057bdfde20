"""The approval gate of the ``real-failover`` deployment, on the real server through ``vaodrill serve``.

The spec is deployments/drills/real-failover.yaml (five plans, mode: failover) polling every second. Each case
talks to its own simulator through a ``VaoServer`` block saved on the server (parameter ``vao_block``).

* approved: the run pauses before any write to VAO; resumed with a typed ``FailoverApproval`` it fails over
  each plan exactly once and undoes nothing.
* not approved: the one-minute approval timeout expires; the run fails and nothing was ever written.

What enforces the timeout in Prefect 3.9.1: both sides. ``apause_flow_run`` waits client-side (``anyio``
``move_on_after(timeout)``, polling every 10 s) and then raises ``FlowPauseTimeout``; the engine proposes
``Failed``, which the server's ``HandleResumingPausedFlows`` rule replaces by its own ``Failed`` ("The flow was
failed and never resumed." - sic). The server's ``pause_expirations`` service (on by default, every 5 s) also
forces ``Failed`` ("The flow was paused and never resumed.") once ``pause_timeout`` has passed, even if the
flow's process is gone. Whichever comes first ends the run; both are about one minute after the pause.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import aresume_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings

from .conftest import (
    FAILOVER_DEPLOYMENT,
    Served,
    Simulator,
    StartedRun,
    await_until,
    fast_failover_spec,
    is_final,
    read_events,
    run_summary,
    wait_for_run,
)

pytestmark = pytest.mark.e2e

SPEC_PLANS = tuple(
    step["plan"]
    for step in yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "deployments/drills/real-failover.yaml").read_text()
    )["plans"]
)
TIMEOUT_SECONDS = 60  # approval_timeout_minutes=1, the smallest the request model allows
ACTIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]


def plan_writes(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.requests(method="POST") if r["path"].lower().startswith("/v2/failoverplans")]


def non_token_posts(sim: Simulator) -> list[dict[str, Any]]:
    """POSTs other than logging in (POST /v2/Token, needed to read the plans shown on the approval form)."""
    return [r for r in sim.requests(method="POST") if not r["path"].lower().endswith("/token")]


def untouched(sim: Simulator) -> bool:
    """Every plan of the spec still Enabled (ready to fail over), not in use, never asked to run."""
    plans = sim.plans()
    return all(
        plans[name]["planState"] == "Enabled" and not plans[name]["planInUse"] and plans[name]["run_requests"] == 0
        for name in SPEC_PLANS
    )


async def wait_for_no_active_failover(client: Any) -> None:
    """The deployment allows one run at a time (CANCEL_NEW): wait until no other real-failover run is active."""
    deployment = await client.read_deployment_by_name(FAILOVER_DEPLOYMENT)

    async def idle() -> bool:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))),
        )
        return not runs

    await await_until(
        idle, timeout=TIMEOUT_SECONDS + 90, interval=1, what="no active run of the real-failover deployment"
    )


async def test_approved_failover_runs_each_plan_once(
    served: Served, approval_sim: Simulator, vao_blocks: dict[str, Any], tmp_path: Path
) -> None:
    server = served.server
    approval_sim.reset()
    async with server.client() as client:
        await wait_for_no_active_failover(client)
        flow_run_id = server.run_deployment(
            FAILOVER_DEPLOYMENT,
            {
                "request": {
                    "drill_file": str(fast_failover_spec(tmp_path)),
                    "vao_block": vao_blocks["approval"],
                    "report_dir": str(tmp_path / "reports"),
                    "approval_timeout_minutes": 5,
                }
            },
        )

        paused = await wait_for_run(
            client,
            flow_run_id,
            lambda r: r.state.type == StateType.PAUSED,
            timeout=60,
            what="the approval pause",
            extra=served.diagnose,
        )
        assert paused.state.state_details.pause_key == "approve-app-stack-real-failover"
        assert paused.state.state_details.run_input_keyset, "the pause does not wait for a typed approval form"

        # While paused: the plans were read (to show them on the form), nothing was written.
        assert approval_sim.requests(method="GET", path="/v2/FailoverPlans*"), "the plans were never read"
        assert non_token_posts(approval_sim) == []
        assert untouched(approval_sim), approval_sim.plans()
        still = await client.read_flow_run(flow_run_id)
        assert still.state.type == StateType.PAUSED, "the run left the pause before the checks above ended"

        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            await aresume_flow_run(
                flow_run_id, run_input={"approver": "alice", "change_ticket": "CHG-1", "approved": True}
            )
        resumed_at = time.monotonic()
        done = await wait_for_run(
            client, flow_run_id, is_final, timeout=120, what="the approved failover's end", extra=served.diagnose
        )
        assert done.state.is_completed(), await run_summary(client, flow_run_id)
        print(f"\napproved failover completed {time.monotonic() - resumed_at:.1f}s after resume")

        plan_ids = {name: record["id"].lower() for name, record in approval_sim.plans().items()}
        assert approval_sim.plan_posts("Run") == {plan_ids[name]: 1 for name in SPEC_PLANS}
        assert approval_sim.plan_posts("Undo") == {}
        assert len(plan_writes(approval_sim)) == len(SPEC_PLANS), plan_writes(approval_sim)

        async def approval_event() -> list[Any]:
            return await read_events(client, flow_run_id, ["vaodrill.failover.approved"])

        (approved,) = await await_until(approval_event, timeout=30, what="the vaodrill.failover.approved event")
        assert approved.payload == {"approver": "alice", "change_ticket": "CHG-1"}

    (report_file,) = (tmp_path / "reports").rglob("report.json")
    report = json.loads(report_file.read_text())
    assert (report["mode"], report["verdict"]) == ("failover", "passed"), report
    assert [(p["plan"], p["status"], p["undo"]) for p in report["plans"]] == [
        (name, "passed", "skipped") for name in SPEC_PLANS
    ], report["plans"]


async def test_unapproved_failover_times_out_with_nothing_sent(
    served: Served, timeout_run: StartedRun, timeout_sim: Simulator
) -> None:
    server = served.server
    async with server.client() as client:
        # started at the beginning of the session (conftest): at most a minute and a bit is left
        done = await wait_for_run(
            client,
            timeout_run.flow_run_id,
            is_final,
            timeout=TIMEOUT_SECONDS + 90,
            what="the approval timeout",
            extra=served.diagnose,
        )
        summary = await run_summary(client, timeout_run.flow_run_id)
        assert done.state.type == StateType.FAILED, summary
        # "The flow was paused and never resumed." (server service) or, when the flow's own FlowPauseTimeout
        # gets there first, the server's rejection of that Failed: "The flow was failed and never resumed."
        assert "never resumed" in (done.state.message or ""), summary

        history = sorted(await client.read_flow_run_states(timeout_run.flow_run_id), key=lambda s: s.timestamp)
        types = [s.type for s in history]
        assert StateType.PAUSED in types and types[-1] == StateType.FAILED, types
        assert StateType.COMPLETED not in types
        paused = next(s for s in history if s.type == StateType.PAUSED)
        waited = (history[-1].timestamp - paused.timestamp).total_seconds()
        # failed because the minute passed, not earlier; and not long after (server service or client timer)
        assert TIMEOUT_SECONDS - 1 <= waited <= TIMEOUT_SECONDS + 30, (waited, summary)
        print(f"\nunapproved failover: paused {waited:.1f}s, then {history[-1].name}: {history[-1].message}")

    assert timeout_sim.requests(method="GET", path="/v2/FailoverPlans*"), "the plans were never read"
    assert non_token_posts(timeout_sim) == [], "something was written to VAO without approval"
    assert untouched(timeout_sim), timeout_sim.plans()


async def test_second_failover_is_refused_and_a_rejection_sends_nothing(
    served: Served, approval_sim: Simulator, vao_blocks: dict[str, Any], tmp_path: Path
) -> None:
    """One real failover at a time, also while the first is paused for approval; a rejection fails over nothing."""
    server = served.server
    approval_sim.reset()
    params = {
        "request": {
            "drill_file": str(fast_failover_spec(tmp_path)),
            "vao_block": vao_blocks["approval"],
            "report_dir": str(tmp_path / "reports"),
            "approval_timeout_minutes": 5,
        }
    }
    async with server.client() as client:
        await wait_for_no_active_failover(client)
        first = server.run_deployment(FAILOVER_DEPLOYMENT, params)
        await wait_for_run(
            client,
            first,
            lambda r: r.state.type == StateType.PAUSED,
            timeout=60,
            what="the first failover's approval pause",
            extra=served.diagnose,
        )

        second = server.run_deployment(FAILOVER_DEPLOYMENT, params)
        refused = await wait_for_run(
            client, second, is_final, timeout=60, what="the second failover's end", extra=served.diagnose
        )
        assert refused.state.type == StateType.FAILED, await run_summary(client, second)
        assert "another real failover is in progress" in (refused.state.message or "")

        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            await aresume_flow_run(first, run_input={"approver": "bob", "change_ticket": "CHG-2", "approved": False})
        rejected = await wait_for_run(
            client, first, is_final, timeout=60, what="the rejected failover's end", extra=served.diagnose
        )
        assert rejected.state.type == StateType.FAILED and "rejected by bob" in (rejected.state.message or "")
        # a refusal is one line, the state's message, in the run's logs too: no traceback (the run's logs reach
        # the API in batches after its state, so they are waited for)
        for run in (refused, rejected):

            async def logged(run: Any = run) -> list[str] | None:
                logs = [
                    log.message
                    for log in await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
                ]
                return logs if run.state.message in logs else None

            logs = await await_until(logged, timeout=30, what=f"the log line {run.state.message!r}")
            assert "\n" not in run.state.message, run.state.message
            assert not any("Traceback" in m or "Encountered exception" in m for m in logs), logs
    assert non_token_posts(approval_sim) == []
    assert untouched(approval_sim), approval_sim.plans()
