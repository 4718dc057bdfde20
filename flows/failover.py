"""A real failover on a bad day: nothing is sent to VAO until a person approves it in the Prefect UI.

The flow run pauses with a typed form (approver, change ticket, approved). If nobody answers before the
timeout, the run fails and no plan was failed over.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.drill import DrillRequest, _emit, connection_settings, run_drill
from vaodrill.drill import build_targets, utcnow
from vaodrill.errors import DrillError
from vaodrill.spec import load_spec


class FailoverApproval(RunInput):
    """What an approver types before a real failover starts."""

    approver: str = Field(description="Your name")
    change_ticket: str = Field(description="Change or incident ticket, e.g. CHG-1234")
    approved: bool = Field(False, description="Tick to fail over for real")


class FailoverRequest(DrillRequest):
    drill_file: str = Field("deployments/drills/real-failover.yaml", title="Failover spec (mode: failover)")
    approval_timeout_minutes: int = Field(60, ge=1, le=24 * 60, title="Approval timeout (minutes)",
                                          description="Without approval by then, the run fails and nothing is "
                                                      "failed over")


@flow(name="real-failover", flow_run_name="REAL failover · {request.drill_file}", log_prints=False,
      description="Real DR failover of a DAG of VAO plans, after typed human approval; no undo.")
async def real_failover(request: FailoverRequest) -> dict[str, Any]:
    """Show what would fail over, pause for approval, then run the spec in failover mode."""
    logger = get_run_logger()
    spec = load_spec(request.drill_file)
    if spec.mode != "failover":
        raise DrillError(f"{request.drill_file} is a {spec.mode} spec; a real failover needs mode: failover")
    settings = await connection_settings(request.vao_block)
    async with settings.client() as client:  # reads only: show exactly what will happen
        targets = build_targets(spec, await client.list_plans(), now=request.now or utcnow(),
                                server_timezone=settings.server_timezone)
    lines = "\n".join(f"| {t.name} | `{t.restore_point}` ({t.rule}) | {', '.join(t.after) or '—'} |"
                      for t in targets.values())
    description = (f"## REAL failover of `{spec.name}` on {settings.url}\n\nThese plans will fail over and stay "
                   f"failed over (no undo):\n\n| plan | restore point (server time) | after |\n|---|---|---|\n"
                   f"{lines}\n\nTick **approved** and give your name and the change ticket to proceed.")
    logger.warning("Waiting up to %d min for approval of a REAL failover", request.approval_timeout_minutes)
    approval = await apause_flow_run(
        wait_for_input=FailoverApproval.with_initial_data(description=description, approved=False),
        timeout=request.approval_timeout_minutes * 60, key=f"approve-{spec.name}")
    if not approval.approved:
        raise DrillError(f"failover of {spec.name} rejected by {approval.approver} ({approval.change_ticket})")
    logger.warning("Approved by %s under %s", approval.approver, approval.change_ticket)
    _emit("vaodrill.failover.approved", spec, settings,
          payload={"approver": approval.approver, "change_ticket": approval.change_ticket})
    report = await run_drill(spec, settings, run_id=request.run_id or str(flow_run.id), now=request.now,
                             report_dir=request.report_dir)
    if report.verdict != "passed":
        raise DrillError(f"failover {spec.name} failed: {report.reason}")
    return report.model_dump(mode="json")
