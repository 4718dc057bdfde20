"""A real failover on a bad day: nothing is sent to VAO until a person approves it in the Prefect UI.

The flow run pauses with a typed form (approver, change ticket, approved). If nobody answers before the
timeout, the run fails and no plan was failed over.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Failed
from pydantic import Field

from vaodrill.engine.targets import build_targets, utcnow
from vaodrill.errors import DrillError
from vaodrill.spec.loader import SpecError, load_spec
from vaodrill_prefect.flows.drill import DrillRequest, _drill_run_name, connection_settings, finish, run_drill
from vaodrill_prefect.flows.publish import _emit


class FailoverApproval(RunInput):
    """What an approver types before a real failover starts."""

    approver: str = Field(description="Your name")
    change_ticket: str = Field(description="Change or incident ticket, e.g. CHG-1234")
    approved: bool = Field(False, description="Tick to fail over for real")


class FailoverRequest(DrillRequest):
    drill_file: str = Field(
        "deployments/drills/real-failover.yaml", min_length=1, title="Failover spec (mode: failover)"
    )
    approval_timeout_minutes: float = Field(
        60,
        gt=0,
        le=24 * 60,
        title="Approval timeout (minutes)",
        description="Without approval by then, the run fails and nothing is failed over",
    )


def _failover_run_name() -> str:
    return "REAL failover · " + _drill_run_name()


async def _other_active_failovers() -> list[str]:
    """Other real-failover runs running or paused.

    A deployment concurrency limit cannot guard this flow: Prefect 3.9 gives the slot back when a run pauses
    (and the paused run then crashes when its slot lease cannot be renewed), so the check is made here, before
    pausing and again after approval.
    """
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["real-failover"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PAUSED]))
            ),
        )
    return [run.name for run in runs if str(run.id) != str(flow_run.id)]


async def _refuse_if_another_active() -> None:
    if others := await _other_active_failovers():
        raise DrillError(f"another real failover is in progress ({', '.join(others)}): not starting a second one")


@flow(
    name="real-failover",
    flow_run_name=_failover_run_name,
    log_prints=False,
    description="Real DR failover of a DAG of VAO plans, after typed human approval; no undo.",
)
async def real_failover(request: FailoverRequest) -> Any:
    """Show what would fail over, pause for approval, then run the spec in failover mode.

    A refusal (bad spec, another failover in progress, approval rejected) ends the run Failed with one line, the
    reason, in its state and its log: nothing went wrong in the code, a person has to read why.
    """
    try:
        return await _real_failover(request)
    except (DrillError, SpecError) as exc:
        message = " ".join(str(exc).split())
        get_run_logger().error("%s", message)
        return Failed(message=message)


async def _real_failover(request: FailoverRequest) -> Any:
    logger = get_run_logger()
    spec = load_spec(request.drill_file)
    if spec.mode != "failover":
        raise DrillError(f"{request.drill_file} is a {spec.mode} spec; a real failover needs mode: failover")
    await _refuse_if_another_active()
    settings = connection_settings(request.vao_block)
    reference = request.now or utcnow()  # the dates approved are the dates sent
    async with settings.client() as client:  # reads only: show exactly what will happen
        targets = build_targets(
            spec, await client.list_plans(), now=reference, server_timezone=settings.server_timezone
        )
    lines = "\n".join(
        f"| {t.name} | `{t.restore_point}` ({t.rule}) | {', '.join(t.after) or '—'} |" for t in targets.values()
    )
    description = (
        f"## REAL failover of `{spec.name}` on {settings.url}\n\nThese plans will fail over and stay "
        f"failed over (no undo):\n\n| plan | restore point (server time) | after |\n|---|---|---|\n"
        f"{lines}\n\nTick **approved** and give your name and the change ticket to proceed."
    )
    logger.warning("Waiting up to %g min for approval of a REAL failover", request.approval_timeout_minutes)
    approval = await apause_flow_run(
        wait_for_input=FailoverApproval.with_initial_data(description=description, approved=False),
        timeout=round(request.approval_timeout_minutes * 60),
        poll_interval=2,
        key=f"approve-{spec.name}",
    )
    if not approval.approved:
        raise DrillError(f"failover of {spec.name} rejected by {approval.approver} ({approval.change_ticket})")
    await _refuse_if_another_active()
    logger.warning("Approved by %s under %s", approval.approver, approval.change_ticket)
    _emit(
        "vaodrill.failover.approved",
        spec.name,
        settings,
        payload={"approver": approval.approver, "change_ticket": approval.change_ticket},
    )
    report = await run_drill(
        spec,
        settings,
        run_id=request.run_id or str(flow_run.id),
        now=reference,
        report_dir=request.report_dir,
        journal_dir=request.journal(),
        approval={
            "approver": approval.approver,
            "change_ticket": approval.change_ticket,
            "how": "approval form of the paused flow run",
        },
    )
    return await finish(report)
