"""What a drill shows in Prefect: its transitions as run-log lines and events, its outcome in whole words, its
report, timeline and history as artifacts. Nothing here decides anything about a plan."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.runtime import flow_run

from vaodrill.engine.runs import ENDINGS, Observer, Phase, PlanRun, Transition, plan_result
from vaodrill.errors import one_line
from vaodrill.report.markdown import render_markdown
from vaodrill.report.model import DrillReport
from vaodrill.report.text import table_rows
from vaodrill.report.timeline import render_svg
from vaodrill.spec.model import DrillSpec
from vaodrill.spec.policies import HistoryPolicy
from vaodrill.vao.connection import ConnectionSettings

if TYPE_CHECKING:
    from vaodrill.report.history import PlanHistory

log = logging.getLogger("vaodrill.flows")


#: How many plans' causes a drill's state message spells out; the rest are counted (the report has them all).
CAUSES_SHOWN = 3


def outcome_message(report: DrillReport) -> str:
    """The outcome, its cause and the counts, in whole words (the UI shows the state message as it is):
    ``FAILED: Legacy ERP failed (precondition: plan 'Legacy ERP' is Disabled ...); skipped: Reporting; 5 of 7 plans
    passed`` or ``PASSED: 7 of 7 plans failed over and undone, RTO target met by 7 of 7``."""
    total = len(report.plans)
    passed = sum(p.status == "passed" for p in report.plans)
    counted = f"{passed} of {total} plans passed"
    if report.verdict == "passed":
        done = "failed over and undone" if report.mode == "drill" else "failed over (a real failover: not undone)"
        rto = [p for p in report.plans if p.rto_met is not None]
        missed = [p.plan for p in rto if not p.rto_met]
        return (
            f"PASSED: {passed} of {total} plans {done}"
            + (f", RTO target met by {len(rto) - len(missed)} of {len(rto)}" if rto else "")
            + (f" (missed: {_listed(missed)})" if missed else "")
        )
    words = {"timed_out": "timed out"}
    causes = [
        f"{p.plan} {words.get(p.status, p.status)}" + (f" ({one_line(p.reason, None)})" if p.reason else "")
        for p in report.plans
        if p.status not in ("passed", "skipped")
    ]
    parts = causes[:CAUSES_SHOWN] + (
        [f"{len(causes) - CAUSES_SHOWN} more plans did not pass"] if len(causes) > CAUSES_SHOWN else []
    )
    if skipped := [p.plan for p in report.plans if p.status == "skipped"]:
        parts.append(f"skipped: {_listed(skipped)}")
    left = [f"{p.plan} ({one_line(p.undo_reason, None)})" if p.undo_reason else p.plan for p in report.left_failed_over]
    if left:
        parts.insert(0, f"LEFT FAILED OVER: {_listed(left)}, recover with `vaodrill recover {report.run_id}`")
    elif not causes and report.reason:  # no plan to blame: the drill's own reason
        parts.insert(0, one_line(report.reason, None))
    stopped = f"stopped ({report.stopped}): " if report.stopped else ""
    return f"FAILED: {stopped}{'; '.join([*parts, counted])}"


def _listed(names: list[str]) -> str:
    """The first few of ``names`` and how many more, in whole words."""
    more = len(names) - CAUSES_SHOWN
    return ", ".join(names[:CAUSES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def artifact_key(text: str) -> str:
    """A Prefect artifact key (lower-case letters, digits and dashes) from a drill's name."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower())


def _emit(
    event: str,
    drill: str,
    settings: ConnectionSettings,
    *,
    plan: tuple[str, str] | None = None,
    payload: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    drill_run: str | None = None,
) -> None:
    """A Prefect event naming the drill, the plan (id, name) and the VAO server (never credentials); related to
    the drill's flow run too (Prefect adds the plan's task run, in which it is emitted)."""
    server = {
        "prefect.resource.id": f"vao.server.{settings.url}",
        "prefect.resource.role": "vao-server",
        "prefect.resource.name": settings.url,
    }
    drill_resource = {
        "prefect.resource.id": f"vaodrill.drill.{drill}",
        "prefect.resource.role": "drill",
        "prefect.resource.name": drill,
    }
    if plan is None:
        resource, related = {k: v for k, v in drill_resource.items() if k != "prefect.resource.role"}, [server]
    else:
        resource = {
            "prefect.resource.id": f"vao.plan.{plan[0]}",
            "prefect.resource.name": plan[1],
            "vaodrill.drill": drill,
        }
        related = [drill_resource, server]
    if drill_run:
        related.append({"prefect.resource.id": f"prefect.flow-run.{drill_run}", "prefect.resource.role": "flow-run"})
    emit_event(event, resource={**resource, **(labels or {})}, related=related, payload=payload or {})


#: The event each transition publishes (none for the others).
EVENTS = {
    Phase.FAILING_OVER: "vaodrill.failover.started",
    Phase.FAILED_OVER: "vaodrill.failover.completed",
    Phase.VERIFYING: "vaodrill.checks.started",
    Phase.CLEAN: "vaodrill.undo.completed",
    Phase.LEFT_FAILED_OVER: "vaodrill.undo.failed",
    **{
        p: "vaodrill.failover.failed"
        for p in (Phase.HALTED, Phase.TIMED_OUT, Phase.FAILED, Phase.INTERRUPTED, Phase.REFUSED)
    },
}


#: Transitions with no run-log line: the start of an undo (its task run shows it running; its end is logged).
UNLOGGED = frozenset({Phase.UNDOING})

#: Plans per run-log record of the drill's restore points.
PLANS_PER_RECORD = 200


class PrefectObserver(Observer):
    """The engine's transitions as run-log lines and events; its report as artifacts and a closing event.

    Nothing here is awaited on the drill's critical path: the progress artifact is created and updated in the
    background.
    """

    def __init__(self, settings: ConnectionSettings, logger: Any, plans: int) -> None:
        self.settings = settings
        self.logger = logger
        self.plans = plans
        self.drill_run = flow_run.id  # the run this observer reports for (its task runs' events relate to it)
        self.finished = 0
        self.artifact: Any = None
        self._update: asyncio.Task[None] | None = None

    def open(self, drill: str) -> None:
        """Create the progress artifact in the background: the drill's first Run never waits for the Prefect API
        (one round trip, longer while the API is slow or answers 503 and the client backs off)."""
        self._update = asyncio.ensure_future(self._create(f"Plans of drill {drill} that ended"))

    async def _create(self, description: str) -> None:
        with contextlib.suppress(Exception):  # a progress bar is never worth an error
            self.artifact = await acreate_progress_artifact(0.0, description=description)
        if self.finished:  # plans that ended meanwhile
            await self._progress()

    def on_start(self, drill: str, run_id: str, mode: str, server: str, runs: list[PlanRun]) -> None:
        # the plans' restore points as a few records, not one per plan: each record costs the drill's loop CPU
        lines = [
            f"  {r.target.name} -> restore point {r.target.restore_point} ({r.target.rule})"
            + "".join(f"; {note}" for note in r.target.notes)
            for r in runs
        ]
        head = f"Drill {drill} ({mode} mode, run {run_id}): {len(runs)} plans on {server}"
        for first in range(0, max(len(lines), 1), PLANS_PER_RECORD):
            self.logger.info("%s", "\n".join([head, *lines[first : first + PLANS_PER_RECORD]]))

    def on_transition(self, t: Transition) -> None:
        run = t.run
        if t.new not in UNLOGGED:
            detail = (
                run.reason
                or run.details
                or (f"restore point {run.target.restore_point}" if t.new is Phase.STARTING else None)
            )
            level = (
                "critical"
                if t.new is Phase.LEFT_FAILED_OVER
                else ("warning" if t.new in ENDINGS - {Phase.FAILED_OVER} or t.new is Phase.REFUSED else "info")
            )
            # inside a plan's task run, its run logger: the plan's page lists its steps (the drill's lists them all)
            logger = get_run_logger() if TaskRunContext.get() is not None else self.logger
            getattr(logger, level)("%s: %s%s", run.name, t.new.value, f" ({detail})" if detail else "")
        if event := EVENTS.get(t.new):
            payload: dict[str, Any] = {"run_id": t.run_id, "phase": t.new.value, "reason": run.reason}
            if t.new is Phase.FAILING_OVER:
                payload.update(restore_point=run.target.restore_point, confirmed=run.confirmed)
            labels: dict[str, str] = {}
            if t.new is Phase.FAILED_OVER:
                result = plan_result(run, "drill")  # the report's RTO, to VAO's complete and to verified
                met = result.rto_met
                payload.update(
                    details=run.details,
                    rto_seconds=result.rto_seconds,
                    rto_target_seconds=result.rto_target_seconds,
                    rto_met=met,
                    rto_verified_seconds=result.rto_verified_seconds,
                    verified_at=result.verified_at.isoformat() if result.verified_at else None,
                )
                if met is not None:
                    labels["vaodrill.rto_met"] = "true" if met else "false"
            if run.checks:
                payload["checks"] = [
                    {
                        k: c.get(k)
                        for k in ("name", "kind", "critical", "status", "attempts", "seconds_after_complete", "message")
                    }
                    for c in run.checks
                ]
            if t.new in (Phase.CLEAN, Phase.LEFT_FAILED_OVER):
                payload.update(status=run.undo, reason=run.undo_reason)
            _emit(
                event,
                t.drill,
                self.settings,
                plan=(run.target.id, run.name),
                payload=payload,
                labels=labels,
                drill_run=self.drill_run,
            )
        if t.new in ENDINGS | {Phase.SKIPPED, Phase.REFUSED} and self._update is not None:  # opened
            self.finished += 1
            if self._update.done():
                self._update = asyncio.ensure_future(self._progress())

    async def _progress(self) -> None:
        """The progress artifact, one PATCH at a time (500 plans ending together are one or two PATCHes, not 500
        requests queued before the drill's own)."""
        if self.artifact is None:  # not created (the API refused it)
            return
        sent = -1
        while sent != self.finished:
            sent = self.finished
            with contextlib.suppress(Exception):  # a progress bar is never worth an error
                await aupdate_progress_artifact(self.artifact, 100.0 * min(sent, self.plans) / max(self.plans, 1))

    def on_notice(self, drill: str, message: str | None) -> None:
        if message:
            self.logger.warning("%s", message)

    async def on_report(self, report: DrillReport) -> None:
        key = artifact_key(f"drill-{report.drill}")
        await acreate_markdown_artifact(
            render_markdown(report) + _timeline_markdown(report),
            key=f"{key}-report",
            description=f"DR drill {report.drill}: {report.verdict}",
        )
        await acreate_table_artifact(
            table_rows(report), key=f"{key}-plans", description=f"Plans of drill {report.drill}"
        )
        left = [p.plan for p in report.left_failed_over]
        _emit(
            "vaodrill.drill.completed",
            report.drill,
            self.settings,
            drill_run=self.drill_run,
            labels={"vaodrill.verdict": report.verdict, "vaodrill.left_failed_over": "true" if left else "false"},
            payload={
                "run_id": report.run_id,
                "verdict": report.verdict,
                "reason": report.reason,
                "message": outcome_message(report),
                "stopped": report.stopped,
                "left_failed_over": left,
                "rto_missed": [p.plan for p in report.plans if p.rto_met is False],
            },
        )
        if report.left_failed_over:
            self.logger.critical(
                "PLANS LEFT FAILED OVER: %s. Run `vaodrill recover %s` or check VAO now.",
                ", ".join(p.plan for p in report.left_failed_over),
                report.run_id,
            )
        if self._update is not None:
            await self._update


def _timeline_markdown(report: DrillReport) -> str:
    """The timeline picture inline (a data URI): the report directory is not reachable from the Prefect UI."""
    try:
        svg = render_svg(report)
    except Exception:  # a picture is never worth losing the report artifact
        log.exception("timeline not drawn")
        return ""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"\n\n## Timeline\n\n![drill timeline](data:image/svg+xml;base64,{data})\n"


async def publish_history(
    report: DrillReport, spec: DrillSpec, report_dir: str | None, settings: ConnectionSettings
) -> None:
    """At a drill's end, from the report files: ``vaodrill.plan.overdue`` and ``vaodrill.rto.regressed`` for each
    of its plans the spec's ``history`` policy flags, and the drill's trend table as an artifact. Best effort: a
    failure here is logged and never changes the drill's outcome."""
    from vaodrill.report.history import load_history
    from vaodrill.report.history_view import trend_rows

    if not report_dir:
        return
    ids = {p.plan: p.id or p.plan for p in report.plans}
    policy = spec.history
    try:
        history = await asyncio.to_thread(
            load_history,
            Path(report_dir),
            drills=[report.drill],
            policies={report.drill: policy},
            expected={report.drill: list(ids)},
        )
        for p in (p for p in history.plans if p.plan in ids):
            _emit_flags(report, p, ids[p.plan], history.now, policy, settings)
        await acreate_table_artifact(
            trend_rows(history),
            key=f"{artifact_key(f'drill-{report.drill}')}-trend",
            description=f"Drill {report.drill} over time: runs, passes, RTO trend, flags",
        )
    except Exception:
        log.exception("the drill's history could not be published")


def _emit_flags(
    report: DrillReport,
    p: PlanHistory,
    plan_id: str,
    now: datetime,
    policy: HistoryPolicy,
    settings: ConnectionSettings,
) -> None:
    """``vaodrill.plan.overdue`` and ``vaodrill.rto.regressed`` for one plan, each when its policy flags it."""
    figures = {
        "run_id": report.run_id,
        "runs": p.runs,
        "passes": p.passes,
        "last_good_at": p.last_good_at.isoformat() if p.last_good_at else None,
        "last_good_rto_seconds": p.last_good_rto,
        "rto_target_seconds": p.rto_target,
        "failure_streak": p.failure_streak,
    }
    flags = [
        (
            "vaodrill.plan.overdue",
            p.overdue,
            {"days_since_good": p.days_since_good(now), "max_age_days": policy.max_age.total_seconds() / 86400},
        ),
        (
            "vaodrill.rto.regressed",
            p.regressed,
            {"baseline_rto_seconds": p.baseline_rto, "rto_regression_percent": policy.rto_regression},
        ),
    ]
    for event, reason, more in flags:
        if reason:
            _emit(
                event,
                report.drill,
                settings,
                plan=(plan_id, p.plan),
                drill_run=flow_run.id,
                payload={**figures, **more, "reason": reason},
            )
