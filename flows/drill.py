"""Prefect flows: ``dr_drill`` runs a drill spec's DAG of failover plans; ``failover_plan`` runs one plan.

The flow is the conductor only: it resolves the spec against the server, walks the DAG with the tasks of
``tasks.vao``, always cleans up what it failed over (also on failure or cancellation), then publishes the
report as files, Prefect artifacts and events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pendulum
from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.events import emit_event
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks.blocks import VaoServer
from tasks.vao import check_precondition, clean_up, start_failover, wait_for_failover, write_gate
from vaodrill import progress
from vaodrill.connection import ConnectionSettings
from vaodrill.dag import reverse_order, run_dag
from vaodrill.drill import (
    Cleanup,
    DrillSession,
    PlanTarget,
    Started,
    build_targets,
    plan_result,
    status_of,
    utcnow,
    verdict,
)
from vaodrill.errors import DrillError
from vaodrill.report import DrillReport, PlanResult, render_markdown, table_rows, write_reports
from vaodrill.spec import DrillSpec, PlanStep, load_spec


class DrillRequest(BaseModel):
    """What to drill, against which VAO, and where the report goes (rendered as a form in the Prefect UI)."""

    drill_file: str = Field("deployments/drills/demo.yaml", title="Drill file",
                            description="Path of the drill spec (YAML), relative to the working directory")
    vao_block: str | None = Field(None, title="VAO server block",
                                  description="Name of a 'VAO Server' block; empty: the VAO_* environment variables")
    report_dir: str = Field("reports", title="Report directory")
    run_id: str | None = Field(None, title="Run id",
                               description="Idempotency key; a rerun with the same id never sends a Run twice. "
                                           "Default: this flow run's id")
    now: datetime | None = Field(None, title="Restore-point reference time",
                                 description="Read restore-point rules as of this instant (default: now)")


def _drill_run_name() -> str:
    request = flow_run.parameters.get("request") or {}
    drill_file = request.get("drill_file") if isinstance(request, dict) else getattr(request, "drill_file", None)
    name = Path(str(drill_file or "drill")).stem
    return f"{name} · {pendulum.now('UTC').format('YYYY-MM-DD HH:mm')}Z"


async def connection_settings(block_name: str | None) -> ConnectionSettings:
    """The VAO connection: a VaoServer block when named, else the VAO_* environment variables."""
    if block_name:
        return (await VaoServer.aload(block_name)).settings()
    settings = ConnectionSettings.from_env()
    if settings is None:
        raise DrillError("no VAO server configured: name a 'VAO Server' block or set VAO_URL, VAO_USERNAME, "
                         "VAO_PASSWORD")
    return settings


def _emit(event: str, spec: DrillSpec, settings: ConnectionSettings, *, target: PlanTarget | None = None,
          payload: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> None:
    """A Prefect event naming the drill, the plan and the VAO server (never credentials)."""
    server = {"prefect.resource.id": f"vao.server.{settings.url}", "prefect.resource.role": "vao-server",
              "prefect.resource.name": settings.url}
    drill = {"prefect.resource.id": f"vaodrill.drill.{spec.name}", "prefect.resource.role": "drill",
             "prefect.resource.name": spec.name}
    if target is None:
        resource, related = drill, [server]
    else:
        resource = {"prefect.resource.id": f"vao.plan.{target.id}", "prefect.resource.name": target.name,
                    "vaodrill.drill": spec.name}
        related = [drill, server]
    resource = {**{k: v for k, v in resource.items() if k != "prefect.resource.role"}, **(labels or {})}
    emit_event(event, resource=resource,
               related=related, payload=payload or {})


async def run_drill(spec: DrillSpec, settings: ConnectionSettings, *, run_id: str, now: datetime | None,
                    report_dir: str | None) -> DrillReport:
    """Walk the DAG, always clean up in drill mode, and return the report (also written and published)."""
    logger = get_run_logger()
    started_at = utcnow()
    reference = pendulum.instance(now) if now else pendulum.now("UTC")
    order = [step.plan for step in spec.topological_order()]
    after = {step.plan: tuple(step.after) for step in spec.plans}
    results: dict[str, PlanResult] = {}
    attempted: dict[str, Started | None] = {}
    done: dict[str, Any] = {}
    targets: dict[str, PlanTarget] = {}

    progress_artifact: Any = None
    finished_plans = 0

    def show(target: PlanTarget, stage: str, detail: str | None = None) -> None:
        """One plan transition: to the run log (and so the Prefect UI) and to local progress listeners."""
        started = attempted.get(target.key)
        logger.info("%s: %s%s", target.name, stage, f" ({detail})" if detail else "")
        progress.publish(progress.PlanProgress(spec.name, target.name, stage, utcnow(), target.rto_target_seconds,
                                               started.started_at if started else None, detail))

    async def plan_finished() -> None:
        nonlocal finished_plans
        finished_plans += 1
        if progress_artifact is not None:
            await aupdate_progress_artifact(progress_artifact, 100.0 * finished_plans / len(order))

    async def run_plan(key: str, upstream: dict[str, Any]) -> Any:
        target = targets[key]
        try:
            show(target, "precondition")
            plan = await check_precondition(session, target, run_id, wait_for=list(upstream.values()))
            attempted[key] = None  # from here on the Run may reach VAO: the plan is cleaned up whatever happens
            show(target, "starting", f"restore point {target.restore_point}")
            started = await start_failover(session, target, run_id, wait_for=[plan])
            attempted[key] = started
            _emit("vaodrill.failover.started", spec, settings, target=target,
                  payload={"restore_point": target.restore_point, "run_id": run_id, "posted": started.posted})
            show(target, "failing over")
            finished = await wait_for_failover(session, target, run_id, started)
        except Exception as exc:
            _emit("vaodrill.failover.failed", spec, settings, target=target,
                  payload={"run_id": run_id, "status": status_of(exc), "reason": str(exc)})
            raise
        finally:
            await plan_finished()
        done[key] = finished
        show(target, "failed over", finished.details + (
            f"; after {finished.continues} Continue" if finished.continues else ""))
        _emit("vaodrill.failover.completed", spec, settings, target=target,
              payload={"run_id": run_id, "details": finished.details})
        return finished

    async with DrillSession(settings.client(), spec.poll_interval.total_seconds(), write_gate()) as session:
        outcomes: dict[str, Any] = {}
        interrupted: str | None = None
        try:
            plans = await session.client.list_plans()
            targets = build_targets(spec, plans, now=reference, server_timezone=settings.server_timezone)
            logger.info("Drill %s (%s mode, run %s): %d plans on %s", spec.name, spec.mode, run_id, len(order),
                        settings.url)
            for key in order:
                t = targets[key]
                logger.info("  %s -> restore point %s (%s)%s", t.name, t.restore_point, t.rule,
                            "".join(f"; {note}" for note in t.notes))
            progress_artifact = await acreate_progress_artifact(
                0.0, description=f"Plans of drill {spec.name} that reached a verdict")
            outcomes = await run_dag(order, after, run_plan, max_parallel=spec.max_parallel)
        except asyncio.CancelledError:
            interrupted = "drill cancelled"
            logger.error("Drill cancelled: cleaning up every plan it failed over")
            raise
        except Exception as exc:  # the DAG never raises: this is before any failover (server, unknown plans)
            interrupted = f"aborted before any failover: {exc}"
            logger.error("Drill %s", interrupted)
            raise
        finally:
            undo = {}
            _cleaning_up.add(run_id)  # the cancellation hook leaves this run to us
            try:
                if spec.mode == "drill" and attempted:
                    undo = await _undo_in_waves(
                        spec, settings, targets, [k for k in order if k in attempted], run_id, logger,
                        lambda t: clean_up(session, t, run_id, True, wait_for=[
                            x for x in (done.get(t.key), attempted.get(t.key)) if x is not None]))
            finally:
                _cleaning_up.discard(run_id)
            for key in order:
                results[key] = _result(key, targets.get(key), after[key], outcomes.get(key), attempted, done,
                                       undo, spec.mode, interrupted)
                if key in targets:
                    show(targets[key], results[key].status, results[key].reason)
            plan_results = [results[key] for key in order]
            final, reason = verdict(plan_results, spec.mode)
            if interrupted and reason is None:
                final, reason = "failed", interrupted
            elif interrupted:
                reason = f"{interrupted}; {reason}"
            report = DrillReport(drill=spec.name, description=spec.description, run_id=run_id, mode=spec.mode,
                                 verdict=final, reason=reason, started_at=started_at, finished_at=utcnow(),
                                 vao_server=settings.url, flow_run_url=flow_run.ui_url, plans=plan_results)
            await _publish(report, spec, settings, report_dir)
    return report


Undo = tuple[str, str | None, datetime | None]  # status, reason, completed at


async def _undo_in_waves(spec: DrillSpec, settings: ConnectionSettings, targets: dict[str, PlanTarget],
                         keys: list[str], run_id: str, logger: Any,
                         undo_one: Callable[[PlanTarget], Awaitable[Cleanup]]) -> dict[str, Undo]:
    """The one cleanup loop: undo ``keys`` dependents first (a wave at a time), loudly; never raises."""
    undo: dict[str, Undo] = {}
    after = {k: [d for d in targets[k].after if d in keys] for k in keys}

    async def one(key: str) -> None:
        target = targets[key]
        progress.publish(progress.PlanProgress(spec.name, target.name, "undoing", utcnow()))
        try:
            result = await undo_one(target)
        except Exception as exc:
            undo[key] = ("failed", str(exc), None)
            logger.critical("CLEANUP NOT VERIFIED for %s: %s", target.name, exc)
            _emit("vaodrill.undo.failed", spec, settings, target=target, payload={"run_id": run_id,
                                                                                  "reason": str(exc)})
        else:
            undo[key] = (result.status, None, result.completed_at)
            logger.info("%s: undo %s", target.name, result.status)
            _emit("vaodrill.undo.completed", spec, settings, target=target,
                  payload={"run_id": run_id, "status": result.status})

    for wave in reverse_order(keys, after):
        await asyncio.gather(*(one(key) for key in wave))
    return undo


def _result(key: str, target: PlanTarget | None, after: tuple[str, ...], outcome: Any,
            attempted: dict[str, Started | None], done: dict[str, Any], undo: dict[str, Undo], mode: str,
            interrupted: str | None) -> PlanResult:
    """One plan's line in the report, from what the DAG and the cleanup recorded."""
    started = attempted.get(key)
    if key in undo:
        undo_status, undo_reason, undo_at = undo[key]
    elif key in attempted and mode == "failover":
        undo_status, undo_reason, undo_at = "skipped", "failover mode: left failed over on purpose", None
    else:
        undo_status, undo_reason, undo_at = "not_needed", None, None
    common = {"started": started, "done": done.get(key), "undo": undo_status, "undo_reason": undo_reason,
              "undo_at": undo_at}
    if outcome is None:
        return plan_result(target, key, after, status="failed" if target is None else "skipped",
                           reason=interrupted or "not run", **common)
    if outcome.skipped:
        return plan_result(target, key, after, status="skipped", reason=outcome.skipped, **common)
    if outcome.error is not None:
        return plan_result(target, key, after, status=status_of(outcome.error), reason=str(outcome.error),
                           **common)
    return plan_result(target, key, after, status="passed", **common)


async def _publish(report: DrillReport, spec: DrillSpec, settings: ConnectionSettings,
                   report_dir: str | None) -> None:
    """Report files, the Markdown and table artifacts on the flow run, and the drill's closing event."""
    logger = get_run_logger()
    key = f"drill-{spec.name}"
    await acreate_markdown_artifact(render_markdown(report), key=f"{key}-report",
                                    description=f"DR drill {spec.name}: {report.verdict}")
    await acreate_table_artifact(table_rows(report), key=f"{key}-plans", description=f"Plans of drill {spec.name}")
    progress.publish(report)
    files = None
    if report_dir:
        files = write_reports(report, Path(report_dir))
        logger.info("Reports written to %s", files.directory)
    _emit("vaodrill.drill.completed", spec, settings, labels={"vaodrill.verdict": report.verdict},
          payload={"run_id": report.run_id, "verdict": report.verdict, "reason": report.reason,
                   "left_failed_over": [p.plan for p in report.left_failed_over],
                   "report": str(files.json) if files else None})
    if report.left_failed_over:
        logger.critical("PLANS LEFT FAILED OVER: %s. Check VAO now.",
                        ", ".join(p.plan for p in report.left_failed_over))


#: Drill runs whose own cleanup is under way in this process (the cancellation hook then stands aside).
_cleaning_up: set[str] = set()


async def undo_after_cancellation(flow: Any, cancelled_run: Any, state: Any) -> None:
    """``on_cancellation`` hook: undo what a cancelled drill run may have failed over.

    A run cancelled from the Prefect UI is stopped by a signal; its own cleanup may never run. Prefect's record of
    the run's ``start-failover`` task runs says which plans it may have started; each is undone (halted first if
    still running) and verified, and the outcome is logged and emitted loudly.
    """
    logger = flow_run_logger(cancelled_run, flow)
    request = DrillRequest.model_validate(cancelled_run.parameters.get("request") or {})
    run_id = request.run_id or str(cancelled_run.id)
    if run_id in _cleaning_up:
        return
    async with get_client() as client:
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[cancelled_run.id])))
    started = {run.name.split(" · ", 1)[1] for run in task_runs if (run.name or "").startswith("failover · ")}
    if not started:
        logger.warning("Drill cancelled before any failover: nothing to undo")
        return
    spec = load_spec(request.drill_file)
    settings = await connection_settings(request.vao_block)
    names = ", ".join(sorted(started))
    if spec.mode != "drill":
        logger.critical("Real failover cancelled after starting: %s (left failed over, no undo)", names)
        return
    logger.critical("Drill cancelled with plans possibly failed over: %s. Undoing them now.", names)
    _emit("vaodrill.drill.cancelled", spec, settings, payload={"run_id": run_id, "plans": sorted(started)})
    async with DrillSession(settings.client(), spec.poll_interval.total_seconds(), write_gate()) as session:
        targets = build_targets(spec, await session.client.list_plans(), now=utcnow(),
                                server_timezone=settings.server_timezone)
        keys = [step.plan for step in spec.topological_order() if targets[step.plan].name in started]
        await _undo_in_waves(spec, settings, targets, keys, run_id, logger,
                             lambda t: session.clean_up(t, started=True))


@flow(name="dr-drill", flow_run_name=_drill_run_name, log_prints=False, retries=0, retry_delay_seconds=30,
      on_cancellation=[undo_after_cancellation],
      description="Fail over a DAG of VAO plans, measure RTO against target, clean up and report.")
async def dr_drill(request: DrillRequest) -> dict[str, Any]:
    """Run the drill spec in ``request.drill_file``; fails the flow run unless the verdict is passed."""
    spec = load_spec(request.drill_file)
    settings = await connection_settings(request.vao_block)
    report = await run_drill(spec, settings, run_id=request.run_id or str(flow_run.id), now=request.now,
                             report_dir=request.report_dir)
    if report.verdict != "passed":
        raise DrillError(f"drill {spec.name} failed: {report.reason}")
    return report.model_dump(mode="json")


@flow(name="failover-plan", flow_run_name="{mode} · {plan}", log_prints=False,
      description="One VAO plan end to end: precondition, Run, wait, measured RTO, and Undo in drill mode.")
async def failover_plan(plan: str, mode: Literal["drill", "failover"] = "drill", restore_point: str = "latest",
                        vao_block: str | None = None, report_dir: str | None = "reports",
                        run_id: str | None = None) -> dict[str, Any]:
    """A manual single-plan run: the same engine as a drill of one plan."""
    spec = DrillSpec(name="single-plan", mode=mode, restore_point=restore_point,
                     description=f"Single-plan {mode} of {plan}", plans=[PlanStep(plan=plan)])
    settings = await connection_settings(vao_block)
    report = await run_drill(spec, settings, run_id=run_id or str(flow_run.id), now=None, report_dir=report_dir)
    if report.verdict != "passed":
        raise DrillError(f"{mode} of {plan} failed: {report.reason}")
    return report.model_dump(mode="json")
