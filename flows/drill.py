"""Prefect flows: ``dr_drill`` runs a drill spec; ``failover_plan`` one plan; ``recover_drill`` an unclosed run.

The flows only adapt the engine (``vaodrill.engine.drill.Drill``) to Prefect: each plan and each undo runs as a task
run of ``tasks.vao`` inside the drill's flow run, and ``flows.publish.PrefectObserver`` turns the engine's
transitions and report into run logs, events and artifacts. Every decision about a plan is the engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import pendulum
from prefect import Flow, State, flow, get_run_logger
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.objects import FlowRun
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from vaodrill.engine import progress, signals
from vaodrill.engine.drill import Drill
from vaodrill.engine.recovery import recover
from vaodrill.errors import DrillError, UnknownPlans, VaoAuthError, VaoConnectionError, VaoUsageError, one_line
from vaodrill.journal import _RUN_ID, Journal, JournalError, JournalState, default_journal_dir
from vaodrill.report.model import DrillReport
from vaodrill.spec.loader import SpecError, load_spec
from vaodrill.spec.model import DrillSpec
from vaodrill.vao.connection import ConnectionSettings
from vaodrill_prefect.flows.publish import PrefectObserver, _emit, artifact_key, outcome_message, publish_history
from vaodrill_prefect.tasks.blocks import VaoServer
from vaodrill_prefect.tasks.vao import TaskSteps, quiet_finish, write_gate


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
        None,
        json_schema_extra=_no_default,
        title="Drill file",
        description="Path of the drill spec (YAML) on the machine that "
        "runs the drill, relative to its working directory; "
        f"shipped: {_shipped_drills()}",
    )
    vao_block: VaoServer | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=_no_default,
        title="VAO server",
        description="A saved 'VAO Server' block; leave empty to use "
        "the VAO_* settings of the machine that runs "
        "the drill",
    )
    report_dir: str = Field(
        "reports",
        min_length=1,
        title="Report directory",
        description="Reports go here, and the drill's journal under journal/ (unless a journal directory is given)",
    )
    journal_dir: Annotated[str, StringConstraints(min_length=1)] | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=_no_default,
        title="Journal directory",
        description="Where the drill's journal goes (shared storage "
        "when drills run on several hosts); default: "
        "VAODRILL_JOURNAL_DIR of the machine that runs the "
        "drill, else <report directory>/journal",
    )
    run_id: Annotated[str, StringConstraints(pattern=_RUN_ID.pattern)] | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=_no_default,
        title="Resume run",
        description="Leave empty for a new drill. The id of an earlier run "
        "(letters, digits, '.', '_' or '-') resumes it from its "
        "journal; no plan ever gets a second Run",
    )
    now: datetime | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=_no_default,
        title="Restore-point reference time",
        description="Read restore-point rules as of this instant (default: now)",
    )
    #: Who approved a real failover started from the command line (not in the run form: the UI's approval is the
    #: real-failover flow's own pause); written into the drill's journal and evidence pack.
    approval: SkipJsonSchema[dict[str, str] | None] = None
    #: The drill spec the CLI already read (in-process runs only: never sent to the API, never in the form).
    spec: SkipJsonSchema[DrillSpec | None] = Field(None, exclude=True)

    def journal(self) -> Path:
        """The directory of the drill's journal: the one given, else the machine's default for the report dir."""
        return Path(self.journal_dir) if self.journal_dir else default_journal_dir(self.report_dir)

    def load_spec_once(self) -> DrillSpec:
        """The drill spec: the one the CLI (or the run's name) read, else the drill file's, kept for the run."""
        if self.spec is None:
            if not self.drill_file:
                raise DrillError("no drill file chosen: give the path of a drill spec in the run form (drill_file)")
            self.spec = load_spec(self.drill_file)
        return self.spec

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
    """``<drill name> · YYYY-MM-DD HH:MM:SSZ``: runs of different drills, and two runs a minute apart, differ.

    Prefect calls this with the validated request the flow body then receives, so the spec read here is kept in
    the request and the body does not read the drill file again (a CLI drill's request already holds its spec).
    """
    request = flow_run.parameters.get("request") or {}
    drill_file = request.get("drill_file") if isinstance(request, dict) else getattr(request, "drill_file", None)
    try:
        if not isinstance(request, DrillRequest):
            raise TypeError("not a validated request")
        name = request.load_spec_once().name
    except Exception:  # the run itself reports a bad spec; its name needs none
        name = Path(str(drill_file or "drill")).stem
    return f"{name} · {pendulum.now('UTC').format('YYYY-MM-DD HH:mm:ss')}Z"


def connection_settings(block: ConnectionSettings | None) -> ConnectionSettings:
    """The VAO connection of a run: its request's block (a saved one, or the settings a CLI drill handed in) over
    the ``VAO_*`` variables of the machine that runs it, field by field (:meth:`ConnectionSettings.resolve`)."""
    try:
        settings = ConnectionSettings.resolve(block=block, env=os.environ)
    except VaoUsageError as exc:
        raise DrillError(str(exc)) from None
    if settings is None:
        raise DrillError(
            "no VAO server configured: choose a 'VAO Server' block as the request's vao_block "
            "(`vaodrill serve` saves its server as 'vaodrill-serve') or set VAO_URL, VAO_USERNAME, "
            "VAO_PASSWORD where the drill runs"
        )
    return settings


async def run_drill(
    spec: DrillSpec,
    settings: ConnectionSettings,
    *,
    run_id: str,
    now: datetime | None,
    report_dir: str | None,
    journal_dir: str | Path | None = None,
    spec_file: str | None = None,
    approval: dict[str, str] | None = None,
) -> DrillReport:
    """The engine, with its steps as tasks and its transitions published to Prefect and to this process."""
    observer = PrefectObserver(settings, get_run_logger(), len(spec.plans))
    reference = pendulum.from_timestamp(now.timestamp(), tz="UTC") if now else None
    drill = Drill(
        spec,
        settings,
        run_id=run_id,
        report_dir=report_dir,
        journal_dir=journal_dir,
        now=reference,
        observers=[observer, progress.bus],
        write_gate=write_gate(settings.url),
        steps=TaskSteps,
        flow_run_url=flow_run.ui_url,
        spec_file=spec_file,
        approval=approval,
    )
    signals.running.add(drill)
    try:
        observer.open(spec.name)
        with quiet_finish(flow_run.id):
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
        logger.critical(
            "Real failover %s stopped after starting: %s (left failed over, no undo)", journal.run_id, ", ".join(names)
        )
        return
    logger.critical("Recovering drill run %s: plans possibly failed over: %s", journal.run_id, ", ".join(names))
    _emit("vaodrill.drill.cancelled", journal.drill, settings, payload={"run_id": journal.run_id, "plans": names})
    observer = PrefectObserver(settings, logger, len(names))
    recovery = await recover(journal, settings, observers=[observer, progress.bus], write_gate=write_gate(settings.url))
    for p in recovery.plans:
        (logger.info if p.outcome == "clean" else logger.critical)("%s: %s", p.name, p.outcome)
    rows = "\n".join(f"| {p.name} | {p.state} | {p.action} | {p.outcome} |" for p in recovery.plans)
    key = artifact_key(f"recovery-{journal.drill}")
    async with get_client() as client:
        await client.create_artifact(
            ArtifactCreate(
                type="markdown",
                key=key,
                flow_run_id=run,
                data=f"## Recovery of drill run `{journal.run_id}` ({journal.drill})\n\n"
                f"{'Every plan is clean again.' if recovery.clean else '**PLANS LEFT FAILED OVER: check VAO now.**'}"
                f"\n\n| plan | state found | action | outcome |\n|---|---|---|---|\n{rows}\n",
                description=f"Recovery of {journal.drill}: {'clean' if recovery.clean else 'NOT clean'}",
            )
        )
    if not recovery.clean:
        raise DrillError(
            f"recovery of run {journal.run_id} left plans failed over: "
            f"{', '.join(p.name for p in recovery.plans if p.outcome != 'clean')}"
        )


@flow(
    name="dr-drill",
    flow_run_name=_drill_run_name,
    log_prints=False,
    retries=0,
    on_cancellation=[undo_after_cancellation],
    description="Fail over a DAG of VAO plans, measure RTO against target, clean up and report.",
)
async def dr_drill(request: DrillRequest) -> Any:
    """Run the drill spec in ``request.drill_file``; the run ends Failed, with the cause, unless it passed.

    A request that cannot run (no or a bad drill file, no VAO server) ends Failed with that one line in its state
    and its log, not a traceback: nothing went wrong in the code, a person has to read why.
    """
    signals.reclaim()  # a CLI drill's SIGINT/SIGTERM stop it cleanly (undo, report); Prefect's bridge is for workers
    try:
        spec = request.load_spec_once()
        settings = connection_settings(request.vao_block)
        report = await run_drill(
            spec,
            settings,
            run_id=request.run_id or str(flow_run.id),
            now=request.now,
            report_dir=request.report_dir,
            journal_dir=request.journal(),
            spec_file=str(Path(request.drill_file).resolve()) if request.drill_file else None,
            approval=request.approval,
        )
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


@flow(
    name="failover-plan",
    flow_run_name="{mode} · {plan}",
    log_prints=False,
    description="One VAO plan end to end: precondition, Run, wait, measured RTO, and Undo in drill mode.",
)
async def failover_plan(
    plan: str,
    mode: Literal["drill", "failover"] = "drill",
    restore_point: str = "latest",
    vao_block: VaoServer | None = None,
    report_dir: str = "reports",
    run_id: str | None = None,
) -> Any:
    """A manual single-plan run: the same engine as a drill of one plan."""
    spec = DrillSpec.model_validate(
        {
            "name": "single-plan",
            "mode": mode,
            "restore_point": restore_point,
            "description": f"Single-plan {mode} of {plan}",
            "plans": [{"plan": plan}],
        }
    )
    settings = connection_settings(vao_block)
    report = await run_drill(spec, settings, run_id=run_id or str(flow_run.id), now=None, report_dir=report_dir)
    return await finish(report)


@flow(
    name="recover-drill",
    flow_run_name="recover · {flow_run_id}",
    log_prints=False,
    description="Undo and verify what an unclosed drill run (crashed, killed, cancelled) may have failed over.",
)
async def recover_drill(flow_run_id: str) -> None:
    """Started by the crashed-run automation with the crashed run's id; reads its parameters (run id, report
    directory, VAO block) from Prefect, then recovers from its journal (shared storage when on several hosts).
    The crashed run may be a recovery run itself: then its own drill run is recovered."""
    logger = get_run_logger()
    async with get_client() as client:
        crashed = await _drill_run_behind(client, UUID(flow_run_id))
        if str(crashed.id) != flow_run_id:
            logger.warning(
                "Run %s was a recovery that did not finish; recovering its drill run %s again", flow_run_id, crashed.id
            )
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
    raise DrillError(
        f"{MAX_RECOVERY_CHAIN} recovery runs in a row did not finish: recover by hand "
        f"(`vaodrill recover RUN_ID`) and check VAO now"
    )
