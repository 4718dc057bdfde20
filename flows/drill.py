"""Prefect flows: ``dr_drill`` runs a drill spec; ``failover_plan`` one plan; ``recover_drill`` an unclosed run.

The flows only adapt the engine (``vaodrill.engine.drill.Drill``) to Prefect: each plan and each undo runs as a task
run of ``tasks.vao`` inside the drill's flow run, and :class:`PrefectObserver` turns the engine's transitions and
report into run logs, events and artifacts. Every decision about a plan is the engine's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import pendulum
from prefect import Flow, State, flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.objects import FlowRun
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from vaodrill.engine import progress, signals
from vaodrill.engine.drill import ENDINGS, Drill, Observer, Phase, PlanRun, Transition, recover
from vaodrill.errors import DrillError, UnknownPlans, VaoAuthError, VaoConnectionError, VaoUsageError, one_line
from vaodrill.journal import _RUN_ID, Journal, JournalError, JournalState, default_journal_dir
from vaodrill.report.model import DrillReport, render_markdown, table_rows
from vaodrill.report.timeline import render_svg
from vaodrill.spec.model import DrillSpec, SpecError, load_spec
from vaodrill.vao.connection import ConnectionSettings
from vaodrill_prefect.tasks.blocks import VaoServer
from vaodrill_prefect.tasks.vao import TaskSteps, write_gate


def _shipped_drills() -> str:
    drills = Path(__file__).resolve().parent.parent / "deployments" / "drills"
    return ", ".join(f"deployments/drills/{p.name}" for p in sorted(drills.glob("*.yaml"))) or "none"


log = logging.getLogger("vaodrill.flows")

#: A drill the server refuses before any plan starts (login, connection, unknown plans): one line, not a traceback.
REFUSALS = (UnknownPlans, VaoAuthError, VaoConnectionError, VaoUsageError)


def _no_default(schema: dict[str, Any]) -> None:
    """An empty optional field without ``default`` in its JSON schema: Prefect's form writes every default into
    its values, ``null`` included, and Prefect's validator lets null through only where there is no default."""
    schema.pop("default", None)


class DrillRequest(BaseModel):
    """What to drill, against which VAO server, and where the report and the journal go."""

    # A misspelt field must not silently drop, e.g., the VAO server. An empty field is left out of the run form's
    # values (SkipJsonSchema, no schema default), so the form shows one input per field, not a type switch, and
    # validates untouched; a value the drill would refuse later is refused by the form with the field's rule.
    model_config = ConfigDict(extra="forbid")

    drill_file: Annotated[str, StringConstraints(min_length=1)] | SkipJsonSchema[None] = Field(
                                                   None, json_schema_extra=_no_default,
                                                   title="Drill file",
                                                   description="Path of the drill spec (YAML) on the machine that "
                                                               "runs the drill, relative to its working directory; "
                                                               f"shipped: {_shipped_drills()}")
    vao_block: VaoServer | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default, title="VAO server",
                                                        description="A saved 'VAO Server' block; leave empty to use "
                                                                    "the VAO_* settings of the machine that runs "
                                                                    "the drill")
    report_dir: str = Field("reports", min_length=1, title="Report directory",
                            description="Reports go here, and the drill's journal under journal/ (unless "
                                        "a journal directory is given)")
    journal_dir: Annotated[str, StringConstraints(min_length=1)] | SkipJsonSchema[None] = Field(
                                                    None, json_schema_extra=_no_default,
                                                    title="Journal directory",
                                                    description="Where the drill's journal goes (shared storage "
                                                                "when drills run on several hosts); default: "
                                                                "VAODRILL_JOURNAL_DIR of the machine that runs the "
                                                                "drill, else <report directory>/journal")
    run_id: Annotated[str, StringConstraints(pattern=_RUN_ID.pattern)] | SkipJsonSchema[None] = Field(
                                               None, json_schema_extra=_no_default, title="Resume run",
                                               description="Leave empty for a new drill. The id of an earlier run "
                                                           "(letters, digits, '.', '_' or '-') resumes it from its "
                                                           "journal; no plan ever gets a second Run")
    now: datetime | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default,
                                                 title="Restore-point reference time",
                                                 description="Read restore-point rules as of this instant "
                                                             "(default: now)")
    #: Who approved a real failover started from the command line (not in the run form: the UI's approval is the
    #: real-failover flow's own pause); written into the drill's journal and evidence pack.
    approval: SkipJsonSchema[dict[str, str] | None] = None
    #: The drill spec the CLI already read (in-process runs only: never sent to the API, never in the form).
    spec: SkipJsonSchema[DrillSpec | None] = Field(None, exclude=True)

    def journal(self) -> Path:
        """The directory of the drill's journal: the one given, else the machine's default for the report dir."""
        return Path(self.journal_dir) if self.journal_dir else default_journal_dir(self.report_dir)

    def load_spec(self) -> DrillSpec:
        """The drill spec: the one the CLI read, else the drill file's (read here, once per run)."""
        if self.spec is not None:
            return self.spec
        if not self.drill_file:
            raise DrillError("no drill file chosen: give the path of a drill spec in the run form (drill_file)")
        return load_spec(self.drill_file)

    @field_validator("vao_block", mode="before")
    @classmethod
    def _load_block(cls, value: Any) -> Any:
        """The ``$ref`` of a chosen block, as a run's stored parameters hold it (read again by the recovery); the
        settings a CLI drill stored, without their secrets (the API keeps them masked: the reader's own block or
        VAO_* variables give them, field by field)."""
        if isinstance(value, dict) and "$ref" in value:  # loaded as Prefect loads a run's parameters
            return Block.load_from_ref(value["$ref"], _sync=True)  # type: ignore[call-arg]
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if not (k in SECRETS and isinstance(v, str) and _masked(v))}
        return value


#: The secret fields of a VAO connection.
SECRETS = ("password", "client_secret")


def _masked(text: str) -> bool:
    """A secret as Prefect stores a parameter's: stars only."""
    return bool(text) and not text.strip("*")


def _drill_run_name() -> str:
    """``<drill name> · YYYY-MM-DD HH:MM:SSZ``: runs of different drills, and two runs a minute apart, differ."""
    request = flow_run.parameters.get("request") or {}
    if isinstance(request, DrillRequest) and request.spec is not None:  # a CLI drill: its spec is read
        return f"{request.spec.name} · {pendulum.now('UTC').format('YYYY-MM-DD HH:mm:ss')}Z"
    drill_file = request.get("drill_file") if isinstance(request, dict) else getattr(request, "drill_file", None)
    try:
        name = load_spec(str(drill_file)).name
    except Exception:  # the run itself reports a bad spec; its name needs none
        name = Path(str(drill_file or "drill")).stem
    return f"{name} · {pendulum.now('UTC').format('YYYY-MM-DD HH:mm:ss')}Z"


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
        return (f"PASSED: {passed} of {total} plans {done}" + (f", RTO target met by {len(rto) - len(missed)} "
                f"of {len(rto)}" if rto else "") + (f" (missed: {_listed(missed)})" if missed else ""))
    words = {"timed_out": "timed out"}
    causes = [f"{p.plan} {words.get(p.status, p.status)}" + (f" ({_oneline(p.reason)})" if p.reason else "")
              for p in report.plans if p.status not in ("passed", "skipped")]
    parts = causes[:CAUSES_SHOWN] + ([f"{len(causes) - CAUSES_SHOWN} more plans did not pass"]
                                     if len(causes) > CAUSES_SHOWN else [])
    if skipped := [p.plan for p in report.plans if p.status == "skipped"]:
        parts.append(f"skipped: {_listed(skipped)}")
    left = [f"{p.plan} ({_oneline(p.undo_reason)})" if p.undo_reason else p.plan for p in report.left_failed_over]
    if left:
        parts.insert(0, f"LEFT FAILED OVER: {_listed(left)}, recover with `vaodrill recover {report.run_id}`")
    elif not causes and report.reason:  # no plan to blame: the drill's own reason
        parts.insert(0, _oneline(report.reason))
    stopped = f"stopped ({report.stopped}): " if report.stopped else ""
    return f"FAILED: {stopped}{'; '.join([*parts, counted])}"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _listed(names: list[str]) -> str:
    """The first few of ``names`` and how many more, in whole words."""
    more = len(names) - CAUSES_SHOWN
    return ", ".join(names[:CAUSES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def connection_settings(block: ConnectionSettings | None) -> ConnectionSettings:
    """The VAO connection of a run: its request's block (a saved one, or the settings a CLI drill handed in) over
    the ``VAO_*`` variables of the machine that runs it, field by field (:meth:`ConnectionSettings.resolve`)."""
    try:
        settings = ConnectionSettings.resolve(block=block, env=os.environ)
    except VaoUsageError as exc:
        raise DrillError(str(exc)) from None
    if settings is None:
        raise DrillError("no VAO server configured: name a 'VAO Server' block or set VAO_URL, VAO_USERNAME, "
                         "VAO_PASSWORD")
    return settings


def artifact_key(text: str) -> str:
    """A Prefect artifact key (lower-case letters, digits and dashes) from a drill's name."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower())


def _emit(event: str, drill: str, settings: ConnectionSettings, *, plan: tuple[str, str] | None = None,
          payload: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
          drill_run: str | None = None) -> None:
    """A Prefect event naming the drill, the plan (id, name) and the VAO server (never credentials); related to
    the drill's flow run too (Prefect adds the plan's task run, in which it is emitted)."""
    server = {"prefect.resource.id": f"vao.server.{settings.url}", "prefect.resource.role": "vao-server",
              "prefect.resource.name": settings.url}
    drill_resource = {"prefect.resource.id": f"vaodrill.drill.{drill}", "prefect.resource.role": "drill",
                      "prefect.resource.name": drill}
    if plan is None:
        resource, related = {k: v for k, v in drill_resource.items() if k != "prefect.resource.role"}, [server]
    else:
        resource = {"prefect.resource.id": f"vao.plan.{plan[0]}", "prefect.resource.name": plan[1],
                    "vaodrill.drill": drill}
        related = [drill_resource, server]
    if drill_run:
        related.append({"prefect.resource.id": f"prefect.flow-run.{drill_run}", "prefect.resource.role": "flow-run"})
    emit_event(event, resource={**resource, **(labels or {})}, related=related, payload=payload or {})


#: The event each transition publishes (none for the others).
EVENTS = {Phase.FAILING_OVER: "vaodrill.failover.started", Phase.FAILED_OVER: "vaodrill.failover.completed",
          Phase.CLEAN: "vaodrill.undo.completed", Phase.LEFT_FAILED_OVER: "vaodrill.undo.failed",
          **{p: "vaodrill.failover.failed" for p in (Phase.HALTED, Phase.TIMED_OUT, Phase.FAILED,
                                                       Phase.INTERRUPTED, Phase.REFUSED)}}


class PrefectObserver(Observer):
    """The engine's transitions as run-log lines and events; its report as artifacts and a closing event.

    Nothing here is awaited on the drill's critical path: the progress artifact is updated in the background.
    """

    def __init__(self, settings: ConnectionSettings, logger: Any, plans: int) -> None:
        self.settings = settings
        self.logger = logger
        self.plans = plans
        self.drill_run = flow_run.id  # the run this observer reports for (its task runs' events relate to it)
        self.finished = 0
        self.artifact: Any = None
        self._update: asyncio.Task[None] | None = None

    async def open(self, drill: str) -> None:
        self.artifact = await acreate_progress_artifact(0.0, description=f"Plans of drill {drill} that ended")

    def on_start(self, drill: str, run_id: str, mode: str, server: str, runs: list[PlanRun]) -> None:
        self.logger.info("Drill %s (%s mode, run %s): %d plans on %s", drill, mode, run_id, len(runs), server)
        for run in runs:
            target = run.target
            self.logger.info("  %s -> restore point %s (%s)%s", target.name, target.restore_point, target.rule,
                             "".join(f"; {note}" for note in target.notes))

    def on_transition(self, t: Transition) -> None:
        run = t.run
        detail = run.reason or run.details or (f"restore point {run.target.restore_point}"
                                               if t.new is Phase.STARTING else None)
        level = "critical" if t.new is Phase.LEFT_FAILED_OVER else (
            "warning" if t.new in ENDINGS - {Phase.FAILED_OVER} or t.new is Phase.REFUSED else "info")
        # inside a plan's task run, its run logger: the plan's page lists its steps (the drill's lists them all)
        logger = get_run_logger() if TaskRunContext.get() is not None else self.logger
        getattr(logger, level)("%s: %s%s", run.name, t.new.value, f" ({detail})" if detail else "")
        if event := EVENTS.get(t.new):
            payload: dict[str, Any] = {"run_id": t.run_id, "phase": t.new.value, "reason": run.reason}
            if t.new is Phase.FAILING_OVER:
                payload.update(restore_point=run.target.restore_point, confirmed=run.confirmed)
            labels: dict[str, str] = {}
            if t.new is Phase.FAILED_OVER:
                rto = (run.completed_at - run.started_at).total_seconds() if run.completed_at and run.started_at \
                    else None
                target = run.target.rto_target_seconds
                met = None if rto is None or target is None else rto <= target
                payload.update(details=run.details, rto_seconds=rto, rto_target_seconds=target, rto_met=met)
                if met is not None:
                    labels["vaodrill.rto_met"] = "true" if met else "false"
            if t.new in (Phase.CLEAN, Phase.LEFT_FAILED_OVER):
                payload.update(status=run.undo, reason=run.undo_reason)
            _emit(event, t.drill, self.settings, plan=(run.target.id, run.name), payload=payload, labels=labels,
                  drill_run=self.drill_run)
        if t.new in ENDINGS | {Phase.SKIPPED, Phase.REFUSED} and self.artifact is not None:
            self.finished += 1
            if self._update is None or self._update.done():
                self._update = asyncio.ensure_future(self._progress())

    async def _progress(self) -> None:
        """The progress artifact, one PATCH at a time (500 plans ending together are one or two PATCHes, not 500
        requests queued before the drill's own)."""
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
        await acreate_markdown_artifact(render_markdown(report) + _timeline_markdown(report), key=f"{key}-report",
                                        description=f"DR drill {report.drill}: {report.verdict}")
        await acreate_table_artifact(table_rows(report), key=f"{key}-plans",
                                     description=f"Plans of drill {report.drill}")
        left = [p.plan for p in report.left_failed_over]
        _emit("vaodrill.drill.completed", report.drill, self.settings, drill_run=self.drill_run,
              labels={"vaodrill.verdict": report.verdict, "vaodrill.left_failed_over": "true" if left else "false"},
              payload={"run_id": report.run_id, "verdict": report.verdict, "reason": report.reason,
                       "message": outcome_message(report), "stopped": report.stopped, "left_failed_over": left,
                       "rto_missed": [p.plan for p in report.plans if p.rto_met is False]})
        if report.left_failed_over:
            self.logger.critical("PLANS LEFT FAILED OVER: %s. Run `vaodrill recover %s` or check VAO now.",
                                 ", ".join(p.plan for p in report.left_failed_over), report.run_id)
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


async def run_drill(spec: DrillSpec, settings: ConnectionSettings, *, run_id: str, now: datetime | None,
                    report_dir: str | None, journal_dir: str | Path | None = None, spec_file: str | None = None,
                    approval: dict[str, str] | None = None) -> DrillReport:
    """The engine, with its steps as tasks and its transitions published to Prefect and to this process."""
    observer = PrefectObserver(settings, get_run_logger(), len(spec.plans))
    reference = pendulum.from_timestamp(now.timestamp(), tz="UTC") if now else None
    drill = Drill(spec, settings, run_id=run_id, report_dir=report_dir, journal_dir=journal_dir, now=reference,
                  observers=[observer, progress.bus], write_gate=write_gate(settings.url),
                  steps=TaskSteps,
                  flow_run_url=flow_run.ui_url, spec_file=spec_file, approval=approval)
    signals.running.add(drill)
    try:
        await observer.open(spec.name)
        return await drill.run()
    finally:
        signals.running.discard(drill)


async def undo_after_cancellation(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """``on_cancellation`` hook: recover what a cancelled drill run may have failed over, from its journal.

    A run cancelled from the Prefect UI is stopped by a signal; its own cleanup may never have run. The journal
    the run wrote before every POST says which plans it may have failed over; ``recover`` halts, undoes and
    verifies each, and closes the journal when all are clean.
    """
    logger = flow_run_logger(flow_run, flow)
    if signals.owned():  # a CLI drill: the CLI's own stop undoes what it failed over, with its secrets
        logger.warning("Drill cancelled: the command line that runs it undoes what it failed over")
        return
    request = DrillRequest.model_validate(flow_run.parameters.get("request") or {})
    run_id = request.run_id or str(flow_run.id)
    journal = Journal(request.journal(), run_id)
    if not journal.exists():
        logger.warning("Drill cancelled before any failover: nothing to undo")
        return
    state_of = journal.read()
    if not state_of.is_open:
        logger.info("Drill run %s closed its journal: nothing left to undo", run_id)
        return
    settings = connection_settings(request.vao_block)
    await _recover(state_of, settings, logger, flow_run.id)


async def _recover(journal: JournalState, settings: ConnectionSettings, logger: Any, run: UUID) -> None:
    """What the cancellation hook and the recovery flow share: say it loudly, recover, fail unless clean.

    ``run``: the flow run the recovery's artifact belongs to (a hook runs outside any run context)."""
    names = [journal.plan_info(k).get("name", k) for k in journal.may_be_failed_over()]
    if not names:
        logger.info("Run %s: no plan was failed over", journal.run_id)
        return
    if journal.mode != "drill":
        logger.critical("Real failover %s stopped after starting: %s (left failed over, no undo)",
                        journal.run_id, ", ".join(names))
        return
    logger.critical("Recovering drill run %s: plans possibly failed over: %s", journal.run_id, ", ".join(names))
    _emit("vaodrill.drill.cancelled", journal.drill, settings, payload={"run_id": journal.run_id, "plans": names})
    observer = PrefectObserver(settings, logger, len(names))
    recovery = await recover(journal, settings, observers=[observer, progress.bus],
                             write_gate=write_gate(settings.url))
    for p in recovery.plans:
        (logger.info if p.outcome == "clean" else logger.critical)("%s: %s", p.name, p.outcome)
    rows = "\n".join(f"| {p.name} | {p.state} | {p.action} | {p.outcome} |" for p in recovery.plans)
    key = artifact_key(f"recovery-{journal.drill}")
    async with get_client() as client:
        await client.create_artifact(ArtifactCreate(
            type="markdown", key=key, flow_run_id=run,
            data=f"## Recovery of drill run `{journal.run_id}` ({journal.drill})\n\n"
                 f"{'Every plan is clean again.' if recovery.clean else '**PLANS LEFT FAILED OVER: check VAO now.**'}"
                 f"\n\n| plan | state found | action | outcome |\n|---|---|---|---|\n{rows}\n",
            description=f"Recovery of {journal.drill}: {'clean' if recovery.clean else 'NOT clean'}"))
    if not recovery.clean:
        raise DrillError(f"recovery of run {journal.run_id} left plans failed over: "
                         f"{', '.join(p.name for p in recovery.plans if p.outcome != 'clean')}")


@flow(name="dr-drill", flow_run_name=_drill_run_name, log_prints=False, retries=0,
      on_cancellation=[undo_after_cancellation],
      description="Fail over a DAG of VAO plans, measure RTO against target, clean up and report.")
async def dr_drill(request: DrillRequest) -> Any:
    """Run the drill spec in ``request.drill_file``; the run ends Failed, with the cause, unless it passed.

    A request that cannot run (no or a bad drill file, no VAO server) ends Failed with that one line in its state
    and its log, not a traceback: nothing went wrong in the code, a person has to read why.
    """
    signals.reclaim()  # a CLI drill's SIGINT/SIGTERM stop it cleanly (undo, report); Prefect's bridge is for workers
    try:
        spec = request.load_spec()
        settings = connection_settings(request.vao_block)
        report = await run_drill(spec, settings, run_id=request.run_id or str(flow_run.id), now=request.now,
                                 report_dir=request.report_dir, journal_dir=request.journal(),
                                 spec_file=str(Path(request.drill_file).resolve()) if request.drill_file else None,
                                 approval=request.approval)
    except (DrillError, SpecError, *REFUSALS) as exc:
        message = one_line(str(exc))
        get_run_logger().error("%s", message)
        return Failed(message=message, data=exc)
    await publish_history(report, spec, request.report_dir, settings)
    return await finish(report)



#: Seconds the run's tags may take at its end (Prefect's client retries a lost API for about a minute).
TAGS_TIMEOUT = 5.0


async def finish(report: DrillReport) -> Any:
    """The flow run's end: tags for the drill and verdict, and its state with the outcome as the message (Failed,
    not a traceback, for a failed drill)."""
    logger = get_run_logger()
    message = outcome_message(report)
    # tags are a convenience: never fail a finished drill over them, nor wait on a Prefect API that went away
    with contextlib.suppress(Exception):
        async with asyncio.timeout(TAGS_TIMEOUT), get_client() as client:
            run = await client.read_flow_run(UUID(str(flow_run.id)))
            tags = sorted({*run.tags, f"drill:{report.drill}", f"verdict:{report.verdict}"})
            await client.update_flow_run(run.id, tags=tags)
    if report.verdict == "passed":
        logger.info("%s", message)
        return Completed(message=message, data=report.model_dump(mode="json"))
    logger.error("%s", message)
    return Failed(message=message, data=report.model_dump(mode="json"))


@flow(name="failover-plan", flow_run_name="{mode} · {plan}", log_prints=False,
      description="One VAO plan end to end: precondition, Run, wait, measured RTO, and Undo in drill mode.")
async def failover_plan(plan: str, mode: Literal["drill", "failover"] = "drill", restore_point: str = "latest",
                        vao_block: VaoServer | None = None, report_dir: str = "reports",
                        run_id: str | None = None) -> Any:
    """A manual single-plan run: the same engine as a drill of one plan."""
    spec = DrillSpec.model_validate({"name": "single-plan", "mode": mode, "restore_point": restore_point,
                                     "description": f"Single-plan {mode} of {plan}", "plans": [{"plan": plan}]})
    settings = connection_settings(vao_block)
    report = await run_drill(spec, settings, run_id=run_id or str(flow_run.id), now=None, report_dir=report_dir)
    return await finish(report)


@flow(name="recover-drill", flow_run_name="recover · {flow_run_id}", log_prints=False,
      description="Undo and verify what an unclosed drill run (crashed, killed, cancelled) may have failed over.")
async def recover_drill(flow_run_id: str) -> None:
    """Started by the crashed-run automation with the crashed run's id; reads its parameters (run id, report
    directory, VAO block) from Prefect, then recovers from its journal (shared storage when on several hosts).
    The crashed run may be a recovery run itself: then its own drill run is recovered."""
    logger = get_run_logger()
    async with get_client() as client:
        crashed = await _drill_run_behind(client, UUID(flow_run_id))
        if str(crashed.id) != flow_run_id:
            logger.warning("Run %s was a recovery that did not finish; recovering its drill run %s again",
                           flow_run_id, crashed.id)
    request = DrillRequest.model_validate((crashed.parameters or {}).get("request") or {})
    run_id = request.run_id or str(crashed.id)
    try:
        journal = Journal(request.journal(), run_id).read()
    except JournalError as exc:
        logger.info("No journal for run %s (%s): it never reached a failover", run_id, exc)
        return
    if not journal.is_open:
        logger.info("Run %s closed its journal: nothing to recover", run_id)
        return
    await _recover(journal, connection_settings(request.vao_block), logger, UUID(str(flow_run.id)))


#: A recovery run that crashed is recovered by another; after this many in a row a person must look.
MAX_RECOVERY_CHAIN = 3


async def _drill_run_behind(client: Any, run_id: UUID) -> FlowRun:
    """The drill run behind ``run_id``: itself, or for a recovery run, the run it was recovering (followed)."""
    for _ in range(MAX_RECOVERY_CHAIN + 1):
        run: FlowRun = await client.read_flow_run(run_id)
        flow_name = (await client.read_flow(run.flow_id)).name
        if flow_name != recover_drill.name:
            return run
        run_id = UUID(str((run.parameters or {})["flow_run_id"]))
    raise DrillError(f"{MAX_RECOVERY_CHAIN} recovery runs in a row did not finish: recover by hand "
                     f"(`vaodrill recover RUN_ID`) and check VAO now")


async def publish_history(report: DrillReport, spec: DrillSpec, report_dir: str | None,
                          settings: ConnectionSettings) -> None:
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
        history = await asyncio.to_thread(load_history, Path(report_dir), drills=[report.drill],
                                          policies={report.drill: policy}, expected={report.drill: list(ids)})
        for p in (p for p in history.plans if p.plan in ids):
            figures = {"run_id": report.run_id, "runs": p.runs, "passes": p.passes,
                       "last_good_at": p.last_good_at.isoformat() if p.last_good_at else None,
                       "last_good_rto_seconds": p.last_good_rto, "rto_target_seconds": p.rto_target,
                       "failure_streak": p.failure_streak}
            flags = [("vaodrill.plan.overdue", p.overdue, {"days_since_good": p.days_since_good(history.now),
                                                           "max_age_days": policy.max_age.total_seconds() / 86400}),
                     ("vaodrill.rto.regressed", p.regressed, {"baseline_rto_seconds": p.baseline_rto,
                                                              "rto_regression_percent": policy.rto_regression})]
            for event, reason, more in flags:
                if reason:
                    _emit(event, report.drill, settings, plan=(ids[p.plan], p.plan), drill_run=flow_run.id,
                          payload={**figures, **more, "reason": reason})
        await acreate_table_artifact(trend_rows(history), key=f"{artifact_key(f'drill-{report.drill}')}-trend",
                                     description=f"Drill {report.drill} over time: runs, passes, RTO trend, flags")
    except Exception:
        log.exception("the drill's history could not be published")
