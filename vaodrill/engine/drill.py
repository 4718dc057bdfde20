"""The drill engine: one record per plan, one state table, a journal, and the report built from the records.

A drill's whole truth is its plan records (:class:`PlanRun`) and its journal, so a crash, a signal, a resumed
run, ``vaodrill recover`` and the report all read the same thing. The engine walks the DAG, calls four steps per
plan (check, start, wait, clean: :class:`Steps`), moves each record only through :meth:`Drill._move` (checked
against :data:`TRANSITIONS`, journaled, told to the observers), and always cleans up what it may have failed over,
also after a signal, an authentication failure or a server that stopped answering.

Prefect is not imported here: ``flows/`` passes steps that run as Prefect tasks and an observer that publishes
logs, events and artifacts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, cast

from vaodrill.engine.checks import CheckFailed, CheckRun, failed_critical, run_checks, verified_at
from vaodrill.engine.dag import reverse_order, run_dag
from vaodrill.engine.steps import (
    Cleanup,
    DrillSession,
    PlanTarget,
    StageDone,
    Started,
    WriteGate,
    started_stages,
    utcnow,
)
from vaodrill.errors import (
    DrillAborted,
    PlanHalted,
    PlanTimedOut,
    PreconditionFailed,
    RunNotStarted,
    UnknownPlans,
)
from vaodrill.journal import JOURNAL_VERSION, Journal, JournalState, default_journal_dir
from vaodrill.report.checks import CheckResult
from vaodrill.report.files import write_reports
from vaodrill.report.model import (
    DrillReport,
    PlanEvent,
    PlanResult,
    PlanStatus,
    Stopped,
    UndoStatus,
    Verdict,
)
from vaodrill.spec.checks import Check
from vaodrill.spec.model import DrillSpec, HaltPolicy
from vaodrill.spec.restore_points import restore_point_date, timezone_warning
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.rules import finished_with_warnings, is_clean, not_runnable_because
from vaodrill.vao.vocabulary import Condition, Stage

log = logging.getLogger("vaodrill.drill")

#: Without an explicit timeout a plan may take this multiple of its RTO target (or DEFAULT_TIMEOUT) to finish.
TIMEOUT_FACTOR = 3.0
MIN_TIMEOUT = 10 * 60.0
DEFAULT_TIMEOUT = 2 * 3600.0
#: How long the report's observers (Prefect artifacts, events) may take once the files are written.
PUBLISH_TIMEOUT = 15.0


class Phase(StrEnum):
    """Where a plan is in a drill."""

    PENDING = "pending"
    CHECKING = "checking"
    STARTING = "starting"
    FAILING_OVER = "failing over"
    VERIFYING = "verifying"  # VAO reported the failover complete; the plan's application checks run
    FAILED_OVER = "failed over"
    CHECKING_READINESS = "checking readiness"  # a readiness drill's check runs (nothing is failed over)
    READY = "ready"  # its check passed
    UNDOING = "undoing"
    CLEAN = "clean"
    SKIPPED = "skipped"
    REFUSED = "refused"
    HALTED = "halted"
    TIMED_OUT = "timed out"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    LEFT_FAILED_OVER = "left failed over"


#: Where the failover of a plan can end; each may be followed by an undo.
ENDINGS = frozenset({Phase.FAILED_OVER, Phase.HALTED, Phase.TIMED_OUT, Phase.FAILED, Phase.INTERRUPTED})

#: The only moves a plan record can make.
TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.CHECKING, Phase.SKIPPED}),
    Phase.CHECKING: frozenset({Phase.STARTING, Phase.REFUSED, Phase.SKIPPED, Phase.FAILED}),
    Phase.STARTING: frozenset({Phase.FAILING_OVER, Phase.CHECKING_READINESS, Phase.REFUSED, Phase.FAILED}),
    Phase.CHECKING_READINESS: frozenset({Phase.READY, Phase.FAILED, Phase.TIMED_OUT, Phase.INTERRUPTED}),
    Phase.READY: frozenset(),
    Phase.FAILING_OVER: ENDINGS - {Phase.FAILING_OVER} | {Phase.VERIFYING},
    Phase.VERIFYING: frozenset({Phase.FAILED_OVER, Phase.FAILED, Phase.INTERRUPTED}),
    **{ending: frozenset({Phase.UNDOING}) for ending in ENDINGS},
    Phase.UNDOING: frozenset({Phase.CLEAN, Phase.LEFT_FAILED_OVER}),
    Phase.LEFT_FAILED_OVER: frozenset({Phase.UNDOING}),
    Phase.CLEAN: frozenset(),
    Phase.SKIPPED: frozenset(),
    Phase.REFUSED: frozenset(),
}

#: The report's status of a plan, by the phase its failover ended in.
STATUS_OF: Mapping[Phase, PlanStatus] = {
    Phase.FAILED_OVER: "passed", Phase.HALTED: "halted", Phase.TIMED_OUT: "timed_out", Phase.FAILED: "failed",
    Phase.INTERRUPTED: "interrupted", Phase.SKIPPED: "skipped", Phase.REFUSED: "failed", Phase.READY: "passed",
}


class IllegalTransition(RuntimeError):
    """A bug: the engine tried a move the table does not allow."""


@dataclass
class PlanRun:
    """One plan's record in one drill run; changed only by :meth:`Drill._move`."""

    target: PlanTarget
    phase: Phase = Phase.PENDING
    outcome: Phase | None = None  # the phase the failover ended in (or skipped / refused)
    reason: str | None = None
    run_sent: bool = False
    started_at: datetime | None = None
    confirmed: bool = False
    completed_at: datetime | None = None
    ended_at: datetime | None = None  # when the failover stage ended, however it ended
    details: str | None = None
    continues: int = 0
    undo: UndoStatus | None = None
    undo_reason: str | None = None
    undo_at: datetime | None = None
    undo_details: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # PlanEvent, as JSON: halts and Continues
    checks: list[dict[str, Any]] = field(default_factory=list)  # CheckResult, as JSON
    verified_at: datetime | None = None  # when the last critical check passed

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def name(self) -> str:
        return self.target.name

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"]["halt"] = self.target.halt.model_dump(mode="json")
        return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanRun:
        raw_target = dict(data["target"])
        raw_target["halt"] = HaltPolicy.model_validate(raw_target.get("halt") or {})
        raw_target["after"] = tuple(raw_target.get("after") or ())
        raw_target["notes"] = tuple(raw_target.get("notes") or ())
        fields = {k: v for k, v in data.items() if k != "target"}
        for key in ("phase", "outcome"):
            fields[key] = Phase(fields[key]) if fields.get(key) else None
        fields["phase"] = fields["phase"] or Phase.PENDING
        for key in ("started_at", "completed_at", "ended_at", "undo_at", "verified_at"):
            fields[key] = datetime.fromisoformat(fields[key]) if fields.get(key) else None
        return cls(target=PlanTarget(**raw_target), **fields)


@dataclass(frozen=True)
class Transition:
    """A plan record moved: what observers receive (``run`` is a snapshot)."""

    drill: str
    run_id: str
    run: PlanRun
    old: Phase
    new: Phase
    at: datetime


class Observer:
    """Receives a drill's transitions and its report; must be quick and must not raise (errors are logged)."""

    def on_start(self, drill: str, run_id: str, mode: str, server: str, runs: list[PlanRun]) -> None:
        """The drill resolved its plans and restore points and is about to start."""

    def on_transition(self, transition: Transition) -> None:
        """A plan record changed."""

    def on_notice(self, drill: str, message: str | None) -> None:
        """A drill-level condition (e.g. the server failing to answer); None clears it."""

    async def on_report(self, report: DrillReport) -> None:
        """The report, after its files are written."""


class Steps(Protocol):
    """The four steps per plan, and ``plan`` around one plan's steps (a task run in Prefect; every plan of
    the drill gets one, also a plan that never started). :class:`DrillSession` is the direct implementation,
    ``tasks.vao.TaskSteps`` the Prefect one."""

    async def plan(self, target: PlanTarget, work: Callable[[], Awaitable[PlanRun]]) -> PlanRun: ...

    async def check(self, target: PlanTarget) -> FailoverPlan: ...

    async def start(self, target: PlanTarget, *, run_sent_before: datetime | None = None) -> Started: ...

    async def wait_failover(self, target: PlanTarget) -> StageDone: ...

    async def clean(self, target: PlanTarget) -> Cleanup: ...


def default_timeout(rto_target_seconds: float | None) -> float:
    if rto_target_seconds is None:
        return DEFAULT_TIMEOUT
    return max(MIN_TIMEOUT, rto_target_seconds * TIMEOUT_FACTOR)


def find_plan(plans: list[FailoverPlan], ref: str) -> FailoverPlan | None:
    """A plan by id (case-insensitive GUID) or exact name; a name shared by two plans is refused."""
    by_id = [p for p in plans if p.id.lower() == ref.lower()]
    if by_id:
        return by_id[0]
    by_name = [p for p in plans if p.name == ref]
    if len(by_name) > 1:
        raise PreconditionFailed(f"plan name {ref!r} is ambiguous on the server: use its id")
    return by_name[0] if by_name else None


def build_targets(spec: DrillSpec, plans: list[FailoverPlan], *, now: datetime,
                  server_timezone: str) -> dict[str, PlanTarget]:
    """Resolve every step to a server plan and a restore-point date; ALL unknown plans are named at once."""
    unknown = [step.plan for step in spec.plans if find_plan(plans, step.plan) is None]
    if unknown:
        raise UnknownPlans(f"not found on the server: {', '.join(repr(u) for u in unknown)}")
    targets: dict[str, PlanTarget] = {}
    for step in spec.plans:
        plan = find_plan(plans, step.plan)
        assert plan is not None
        date, resolved = restore_point_date(spec.rule_for(step), now=now, drill_tz=spec.timezone,
                                            server_tz=server_timezone)
        rto = step.rto_target.total_seconds() if step.rto_target is not None else plan.target_rto_seconds
        timeout = step.timeout.total_seconds() if step.timeout is not None else default_timeout(rto)
        targets[step.plan] = PlanTarget(
            key=step.plan, id=plan.id, name=plan.name, after=tuple(step.after), restore_point=date,
            rule=resolved.rule, seed=resolved.seed, rto_target_seconds=rto, timeout_seconds=timeout,
            halt=spec.halt_policy_for(step), notes=tuple(resolved.notes))
    return targets


class Ledger:
    """The plan records of one run, the journal they are written to and the observers told of each move."""

    def __init__(self, drill: str, run_id: str, journal: Journal, observers: Iterable[Observer]) -> None:
        self.drill = drill
        self.run_id = run_id
        self.journal = journal
        self.observers = list(observers)
        self.records: dict[str, PlanRun] = {}

    def move(self, run: PlanRun, new: Phase, **changes: Any) -> None:
        """The one way a record changes: checked against TRANSITIONS, journaled, then told to the observers."""
        old = run.phase
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"{run.name}: {old} -> {new}")
        run.phase = new
        if new in ENDINGS or new in (Phase.SKIPPED, Phase.REFUSED, Phase.READY):
            run.outcome = new
        if (new in ENDINGS or new is Phase.READY) and run.started_at is not None and run.ended_at is None:
            run.ended_at = changes.get("completed_at") or utcnow()
        for key, value in changes.items():
            setattr(run, key, value)
        self.journal.append("plan", plan=run.key, phase=new.value, record=run.to_json())
        transition = Transition(self.drill, self.run_id, replace(run), old, new, utcnow())
        for observer in self.observers:
            try:
                observer.on_transition(transition)
            except Exception:  # a broken display must never break a failover
                log.exception("observer failed on a transition")

    def notice(self, message: str | None) -> None:
        for observer in self.observers:
            try:
                observer.on_notice(self.drill, message)
            except Exception:
                log.exception("observer failed on a notice")

    def restore(self, earlier: JournalState, targets: Mapping[str, PlanTarget], *, resume: bool) -> None:
        """Records from a journal. A phase the process never finished is read as what it may have left behind."""
        for key, target in targets.items():
            saved = earlier.plans.get(key)
            run = PlanRun.from_json(saved) if saved else PlanRun(target)
            run.run_sent = run.run_sent or key in earlier.may_be_failed_over()
            if resume and not run.run_sent and run.outcome is not Phase.READY:
                run = PlanRun(target)  # nothing was sent for it (or only a check): a resumed run tries it afresh
            elif run.phase is Phase.UNDOING:
                run.phase = Phase.LEFT_FAILED_OVER
            elif run.phase in (Phase.CHECKING, Phase.STARTING) and not run.run_sent:
                run.phase = Phase.PENDING
            elif not resume and run.run_sent and run.phase in (Phase.STARTING, Phase.FAILING_OVER, Phase.VERIFYING):
                run.phase = Phase.INTERRUPTED
                run.outcome = Phase.INTERRUPTED
                run.reason = "interrupted: the drill process stopped (journal)"
            self.records[key] = run

    def unclean(self) -> list[PlanRun]:
        """Plans this run may have failed over and not verifiably put back."""
        return [r for r in self.records.values() if r.run_sent and r.phase is not Phase.CLEAN]

    async def clean_up(self, keys: Sequence[str], steps: Steps) -> None:
        """The one cleanup loop: dependents first, a wave at a time; never raises; every outcome recorded."""

        async def one(key: str) -> None:
            run = self.records[key]
            self.move(run, Phase.UNDOING)
            try:
                result = await steps.clean(run.target)
            except Exception as exc:
                self.move(run, Phase.LEFT_FAILED_OVER, undo="failed", undo_reason=str(exc))
                log.critical("CLEANUP NOT VERIFIED for %s: %s", run.name, exc)
            else:
                undo: UndoStatus = "verified" if run.started_at is not None or result.undone else "not_needed"
                self.move(run, Phase.CLEAN, undo=undo, undo_at=result.completed_at, undo_details=result.details)

        wanted = [k for k in keys if self.records[k].phase is not Phase.CLEAN]
        edges = {k: [d for d in self.records[k].target.after if d in wanted] for k in wanted}
        for wave in reverse_order(wanted, edges):
            await asyncio.gather(*(one(key) for key in wave))


class Drill:
    """One run of a drill spec against one VAO server: ``await Drill(...).run()`` returns the report.

    ``steps`` wraps the session's steps (the Prefect adapter turns each into a task); ``stop()`` (a signal)
    stops starting plans and stops waiting, then the cleanup runs and the report is written as usual.
    """

    def __init__(self, spec: DrillSpec, settings: ConnectionSettings, *, run_id: str,
                 report_dir: str | Path | None = "reports", journal_dir: str | Path | None = None,
                 now: datetime | None = None, observers: Iterable[Observer] = (),
                 steps: Callable[[DrillSession], Steps] | None = None, write_gate: WriteGate | None = None,
                 flow_run_url: str | None = None, spec_file: str | None = None,
                 approval: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.settings = settings
        self.run_id = run_id
        self.report_dir = Path(report_dir) if report_dir else None
        journal = Journal(Path(journal_dir) if journal_dir else default_journal_dir(report_dir), run_id)
        self.ledger = Ledger(spec.name, run_id, journal, observers)
        self.now = now
        self._make_steps = steps or (lambda session: session)
        self._write_gate = write_gate
        self.flow_run_url = flow_run_url
        self.spec_file = spec_file
        #: Who approved a real failover, and under which ticket: the journal's evidence of it.
        self.approval = dict(approval) if approval else None
        self.stopped: DrillAborted | None = None
        self._dag: asyncio.Task[Any] | None = None
        self._grouped: set[str] = set()
        self.session: DrillSession | None = None
        #: Runs in flight by plan key: their answers decide what there is to undo, whoever awaits them.
        self._starts: dict[str, asyncio.Future[Started]] = {}

    @property
    def records(self) -> dict[str, PlanRun]:
        return self.ledger.records

    @property
    def journal(self) -> Journal:
        return self.ledger.journal

    # -- stopping -----------------------------------------------------------------------------------------

    def stop(self, reason: str, kind: str = "signal") -> None:
        """Stop starting plans and stop waiting; cleanup and the report still follow. Safe from a signal handler
        scheduled on the loop."""
        if self.stopped is None:
            self.stopped = DrillAborted(reason, kind=kind)
            log.error("Drill %s stopping: %s", self.spec.name, reason)
        if self._dag is not None and not self._dag.done():
            self._dag.cancel()

    def may_be_failed_over(self) -> list[str]:
        """Names of plans this run may have failed over and not verifiably put back (for a hurried exit)."""
        return [r.name for r in self.ledger.unclean()]

    # -- the run ------------------------------------------------------------------------------------------

    async def run(self) -> DrillReport:
        started_at = utcnow()
        client = self.settings.client()
        async with DrillSession(client, poll_interval=self.spec.poll_interval.total_seconds(),
                                give_up_after=self.spec.give_up_after.total_seconds(), journal=self.journal,
                                write_gate=self._write_gate, on_read_error=self.ledger.notice,
                                polling=self.spec.polling, readiness=self.spec.mode == "readiness") as session:
            self.session = session
            steps = self._make_steps(session)
            plans = await session.list_plans()
            targets = build_targets(self.spec, plans, now=self.now or utcnow(),
                                    server_timezone=self.settings.server_timezone)
            if self.spec.mode == "readiness":  # a server without readiness checks: one line, nothing opened
                for target in targets.values():
                    client.readiness_request(target.id)
            self._open(targets)
            for observer in self.ledger.observers:
                try:
                    observer.on_start(self.spec.name, self.run_id, self.spec.mode, self.settings.url,
                                      [replace(r) for r in self.records.values()])
                except Exception:
                    log.exception("observer failed on the start")
            order = [step.plan for step in self.spec.topological_order()]
            after = {key: list(targets[key].after) for key in order}
            self._dag = asyncio.ensure_future(run_dag(order, after, lambda key: self._grouped_plan(steps, key),
                                                      max_parallel=self.spec.max_parallel))
            try:
                await self._dag
            except asyncio.CancelledError:
                if self.stopped is None:  # cancelled from outside (e.g. the flow run): clean up, then re-raise
                    self.stop("drill cancelled", kind="cancelled")
                    await self._finish(steps, order, started_at)
                    raise
            return await self._finish(steps, order, started_at)

    def _open(self, targets: Mapping[str, PlanTarget]) -> None:
        """A new journal, or the records of a resumed run (``--run-id`` of an earlier run, a flow retry)."""
        if self.journal.exists():
            self.ledger.restore(self.journal.read(), targets, resume=True)
            self.journal.append("resume")
            log.warning("Resuming drill run %s from its journal %s", self.run_id, self.journal.path)
            return
        self.ledger.records = {key: PlanRun(target) for key, target in targets.items()}
        self.journal.append(
            "open", version=JOURNAL_VERSION, drill=self.spec.name, mode=self.spec.mode, server=self.settings.url,
            spec_file=self.spec_file, poll_interval=self.spec.poll_interval.total_seconds(),
            give_up_after=self.spec.give_up_after.total_seconds(),
            plans=[{"key": t.key, "id": t.id, "name": t.name, "after": list(t.after),
                    "target": PlanRun(t).to_json()["target"]} for t in targets.values()])
        if self.approval:
            self.journal.append("approval", **self.approval)

    async def _grouped_plan(self, steps: Steps, key: str) -> None:
        """``_plan`` inside ``steps.plan`` (its task run); raises as ``_plan`` does, so dependents skip."""
        self._grouped.add(key)
        run = self.records[key]
        failure: BaseException | None = None
        finished = False

        async def work() -> PlanRun:
            nonlocal failure, finished
            try:
                await self._plan(steps, key)
            except (Exception, asyncio.CancelledError) as exc:  # the grouping sees the record either way
                failure = exc
            finished = True
            return run

        try:
            await steps.plan(run.target, work)
        except Exception as exc:
            if not finished:  # the grouping itself failed (e.g. the Prefect API): dependents must not start
                if run.phase is Phase.PENDING:
                    self.ledger.move(run, Phase.SKIPPED, reason=f"not started: {exc}")
                raise
            log.warning("plan %s finished, but its grouping failed: %s", run.name, exc)
        if failure is not None and (self.spec.mode != "readiness" or isinstance(
                failure, DrillAborted | asyncio.CancelledError) or self.stopped is not None):
            raise failure  # a failed readiness check stops no other plan's: a weekly report names them all

    async def _show_unstarted(self, steps: Steps) -> None:
        """Plans that never ran still get their group, in DAG order, so a UI shows the whole drill (best effort:
        bounded, and never in the way of the report)."""
        keys = [k for k in self.records if k not in self._grouped]
        if not keys:
            return

        async def show(key: str) -> None:
            run = self.records[key]

            async def nothing() -> PlanRun:
                return run

            await steps.plan(run.target, nothing)

        after = {k: [d for d in self.records[k].target.after if d in keys] for k in keys}
        try:
            await asyncio.wait_for(run_dag(keys, after, show), PUBLISH_TIMEOUT)
        except Exception as exc:
            log.warning("plans that never started are not all shown: %s", exc)

    async def _plan(self, steps: Steps, key: str) -> None:
        """One plan's failover; raises (so its dependents are skipped) unless it failed over as it should."""
        run = self.records[key]
        target = run.target
        readiness = self.spec.mode == "readiness"
        if run.outcome in (Phase.FAILED_OVER, Phase.READY):
            return  # resumed: done in an earlier attempt
        if run.outcome is not None and run.phase not in (Phase.FAILING_OVER, Phase.CHECKING_READINESS,
                                                         Phase.STARTING):
            raise RuntimeError(run.reason or str(run.outcome))
        started: Started | None = None
        if run.phase is Phase.PENDING:
            if self.stopped is not None:
                self.ledger.move(run, Phase.SKIPPED, reason=f"not started: {self.stopped}")
                raise self.stopped
            self.ledger.move(run, Phase.CHECKING)
            try:
                await steps.check(target)
            except asyncio.CancelledError:
                self.ledger.move(run, Phase.SKIPPED, reason=f"not started: {self.stopped or 'cancelled'}")
                raise
            except PreconditionFailed as exc:
                self.ledger.move(run, Phase.REFUSED, reason=f"precondition: {exc}")
                raise
            except Exception as exc:
                self.ledger.move(run, Phase.FAILED, reason=f"precondition not checked: {exc}")
                self._abort_on(exc)
                raise
            self.ledger.move(run, Phase.STARTING, reason=None)
        if run.phase is Phase.STARTING:
            sent_before = (run.started_at or utcnow()) if run.run_sent else None
            start = self._starts[key] = asyncio.ensure_future(steps.start(target, run_sent_before=sent_before))
            cancelled = False
            try:
                # A Run in flight is never abandoned: its outcome says what there is to undo.
                started = await asyncio.shield(start)
            except asyncio.CancelledError:
                cancelled = True
                with contextlib.suppress(Exception):
                    started = await start
                if started is None:
                    self.ledger.move(run, Phase.FAILED, run_sent=self._sent(key), reason=f"stopped: {self.stopped}")
                    raise
            except PreconditionFailed as exc:
                self.ledger.move(run, Phase.REFUSED, reason=f"precondition: {exc}")
                raise
            except RunNotStarted as exc:
                self.ledger.move(run, Phase.FAILED, reason=str(exc))
                raise
            except Exception as exc:
                self.ledger.move(run, Phase.FAILED, run_sent=self._sent(key), reason=str(exc))
                self._abort_on(exc)
                raise
            self.ledger.move(run, Phase.CHECKING_READINESS if readiness else Phase.FAILING_OVER,
                             run_sent=not readiness, started_at=started.started_at,
                             confirmed=started.confirmed, reason=started.note)
            if cancelled:
                self._interrupt(run)
                raise asyncio.CancelledError()
        try:
            done = await steps.wait_failover(target)
        except asyncio.CancelledError:
            self._interrupt(run)
            raise
        except PlanHalted as exc:
            self.ledger.move(run, Phase.HALTED, reason=str(exc), events=self._events(key))
            raise
        except PlanTimedOut as exc:
            self.ledger.move(run, Phase.TIMED_OUT, reason=str(exc), events=self._events(key))
            raise
        except DrillAborted as exc:
            self._abort_on(exc)
            self.ledger.move(run, Phase.INTERRUPTED, reason=f"interrupted: {exc}", events=self._events(key))
            raise
        except Exception as exc:
            self.ledger.move(run, Phase.FAILED, reason=str(exc), events=self._events(key))
            raise
        checks = () if readiness else self.spec.checks_for(key)
        if checks and run.phase is not Phase.VERIFYING:
            self.ledger.move(run, Phase.VERIFYING, completed_at=done.completed_at, ended_at=done.completed_at,
                             details=done.details, continues=done.continues, confirmed=True, events=self._events(key))
        if checks:
            await self._verify(run, checks)
            return
        self.ledger.move(run, Phase.READY if readiness else Phase.FAILED_OVER, completed_at=done.completed_at,
                         details=done.details, continues=done.continues, confirmed=True, events=self._events(key))

    async def _verify(self, run: PlanRun, checks: tuple[Check, ...]) -> None:
        """The plan's application checks; a critical one failing fails the plan (so dependents skip, and the
        cleanup undoes it like any other plan that failed over)."""
        target, completed_at = run.target, run.completed_at or utcnow()
        where = CheckRun(self.spec.name, self.run_id, target.name, target.id, self.settings.url)
        try:
            results = await run_checks(checks, where, completed_at)
        except asyncio.CancelledError:
            self._interrupt(run)
            raise
        data = [r.model_dump(mode="json") for r in results]
        if (failed := failed_critical(results)) is not None:
            self.ledger.move(run, Phase.FAILED, reason=f"check {failed.name!r} failed: {failed.message}", checks=data)
            raise CheckFailed(f"{target.name}: check {failed.name!r} failed: {failed.message}")
        self.ledger.move(run, Phase.FAILED_OVER, checks=data, verified_at=verified_at(results))

    def _events(self, key: str) -> list[dict[str, Any]]:
        """The halts and Continues the session saw for this plan, as the record keeps them."""
        seen = self.session.events.get(key, []) if self.session is not None else []
        if not seen:  # a resumed run keeps what its journal recorded
            return list(self.records[key].events)
        return [e.model_dump(mode="json") for e in seen]

    def _why_not_started(self, run: PlanRun) -> str:
        for dep in run.target.after:
            outcome = self.records[dep].outcome
            if outcome is not Phase.FAILED_OVER:
                return f"dependency {self.records[dep].name!r} " + (
                    "was skipped" if outcome is Phase.SKIPPED or outcome is None else f"ended {outcome.value}")
        return f"not started: {self.stopped or 'drill cancelled'}"

    def _sent(self, key: str) -> bool:
        return self.session is not None and key in self.session.runs_sent

    def _interrupt(self, run: PlanRun) -> None:
        self.ledger.move(run, Phase.INTERRUPTED, reason=f"interrupted: {self.stopped or 'drill cancelled'}",
                         events=self._events(run.key))

    def _abort_on(self, error: BaseException) -> None:
        """Authentication refused or the server gone: no other plan can succeed, so stop them all now."""
        if isinstance(error, DrillAborted):
            self.stop(str(error), kind=error.kind)

    async def _settle_in_flight(self) -> None:
        """Before the cleanup, every Run in flight has its answer, and no plan is left mid-start or mid-wait.

        A plan's own coroutine waits for its Run's answer (a Run in flight is never abandoned), but an adapter may
        have let the coroutine go (a Prefect wrapper returning on cancellation): then its record is settled here,
        from the answer, so a Run that went out is always cleaned up and never reported as skipped.
        """
        await asyncio.gather(*self._starts.values(), return_exceptions=True)
        readiness = self.spec.mode == "readiness"
        for key, start in self._starts.items():
            run = self.records[key]
            if run.phase is Phase.STARTING:
                started = None if start.cancelled() or start.exception() is not None else start.result()
                if started is None:
                    self.ledger.move(run, Phase.FAILED, run_sent=self._sent(key), reason=f"stopped: {self.stopped}")
                    continue
                self.ledger.move(run, Phase.CHECKING_READINESS if readiness else Phase.FAILING_OVER,
                                 run_sent=not readiness, started_at=started.started_at, confirmed=started.confirmed,
                                 reason=started.note)
            if run.phase in (Phase.FAILING_OVER, Phase.CHECKING_READINESS, Phase.VERIFYING):
                self._interrupt(run)

    async def _finish(self, steps: Steps, order: Sequence[str], started_at: datetime) -> DrillReport:
        await self._settle_in_flight()
        for run in self.records.values():
            if run.phase is Phase.PENDING:
                self.ledger.move(run, Phase.SKIPPED, reason=self._why_not_started(run))
            elif run.phase is Phase.CHECKING:
                self.ledger.move(run, Phase.SKIPPED, reason=f"not started: {self.stopped or 'cancelled'}")
        if self.spec.mode == "drill":
            if self.session is not None:
                self.session.monitor.forgive()
            await self.ledger.clean_up([k for k in order if self.records[k].run_sent], steps)
        report = self.report(started_at)
        self._write(report)
        await self.journal.sync()
        await self._show_unstarted(steps)
        await self._publish(report)
        return report

    # -- the report ---------------------------------------------------------------------------------------

    def report(self, started_at: datetime) -> DrillReport:
        results = [plan_result(run, self.spec.mode) for run in self.records.values()]
        final, reason = verdict(results, self.spec.mode)
        if self.stopped is not None:
            final = "failed"
            reason = f"{self.stopped}" + (f"; {reason}" if reason else "")
        zone = timezone_warning(self.spec.timezone, self.settings.server_timezone)
        return DrillReport(drill=self.spec.name, description=self.spec.description, run_id=self.run_id,
                           mode=self.spec.mode, verdict=final, reason=reason, started_at=started_at,
                           finished_at=utcnow(), vao_server=self.settings.url, flow_run_url=self.flow_run_url,
                           stopped=cast(Stopped, self.stopped.kind) if self.stopped else None,
                           warnings=[zone] if zone else [], plans=results)

    def _write(self, report: DrillReport) -> None:
        """Files first (they must exist even when Prefect is gone), then the journal."""
        if self.report_dir is not None:
            files = write_reports(report, self.report_dir, journal=self.journal)
            log.info("Reports written to %s", files.directory)
        if self.spec.mode != "drill" or not self.ledger.unclean():
            self.journal.append("close", verdict=report.verdict)
        else:
            log.critical("Journal %s left open: run `vaodrill recover %s`", self.journal.path, self.run_id)

    async def _publish(self, report: DrillReport) -> None:
        """The observers (Prefect artifacts, events), each bounded in time; a failing one is only logged."""

        async def tell(observer: Observer) -> None:
            try:
                await asyncio.wait_for(observer.on_report(report), PUBLISH_TIMEOUT)
            except Exception:
                log.exception("observer failed on the report")

        await asyncio.gather(*(tell(o) for o in self.ledger.observers))


def plan_result(run: PlanRun, mode: str) -> PlanResult:
    """One line of the report; the achieved RTO is measured from the Run POST to the observed completion."""
    target = run.target
    rto = None
    if run.started_at is not None and run.completed_at is not None and mode != "readiness":
        rto = round((run.completed_at - run.started_at).total_seconds(), 3)
    status: PlanStatus = STATUS_OF.get(run.outcome, "skipped") if run.outcome else "skipped"
    if run.undo is not None:
        undo: UndoStatus = run.undo
    elif run.run_sent and mode == "failover":
        undo = "skipped"
    elif run.run_sent:
        undo = "failed"
    else:
        undo = "not_needed"
    undo_reason = run.undo_reason
    if undo == "skipped":
        undo_reason = "failover mode: left failed over on purpose"
    elif undo == "failed" and run.undo is None:
        undo_reason = "cleanup never ran"
    target_s = target.rto_target_seconds
    rto_verified = None
    if run.started_at is not None and run.verified_at is not None:
        rto_verified = round((run.verified_at - run.started_at).total_seconds(), 3)
    checks = [CheckResult.model_validate(c) for c in run.checks]
    measured = rto_verified if rto_verified is not None else rto
    return PlanResult(
        plan=target.name, id=target.id, status=status, reason=run.reason, after=list(target.after),
        restore_point=target.restore_point, restore_point_rule=target.rule, restore_point_seed=target.seed,
        failover_started_at=run.started_at, failover_completed_at=run.completed_at,
        failover_ended_at=run.ended_at, failover_details=run.details,
        rto_seconds=rto, rto_target_seconds=target_s,
        rto_met=None if measured is None or target_s is None else measured <= target_s,
        undo=undo, undo_reason=undo_reason, undo_completed_at=run.undo_at, undo_details=run.undo_details,
        events=[PlanEvent.model_validate(e) for e in run.events],
        warnings=[f"{what}VAO: {details}" for what, details in (("", run.details), ("undo: ", run.undo_details))
                  if details and finished_with_warnings(details)]
        + [c.describe() for c in checks if not c.critical and c.status == "failed"],
        notes=list(target.notes), checks=checks, verified_at=run.verified_at, rto_verified_seconds=rto_verified,
    )


def verdict(results: list[PlanResult], mode: str) -> tuple[Verdict, str | None]:
    """Passed only if every plan passed and (in drill mode) every cleanup was verified."""
    problems = []
    bad = [r.plan for r in results if r.status != "passed"]
    if bad:
        problems.append(f"{len(bad)} of {len(results)} plans did not pass: {', '.join(bad)}")
    if mode == "drill":
        dirty = [r.plan for r in results if r.undo == "failed"]
        if dirty:
            problems.append(f"LEFT FAILED OVER (cleanup not verified): {', '.join(dirty)}")
    return ("failed", "; ".join(problems)) if problems else ("passed", None)


# -- recovery -------------------------------------------------------------------------------------------------


@dataclass
class RecoveryPlan:
    """What ``recover`` found for one plan an unclosed run may have failed over, and will do about it."""

    key: str
    name: str
    id: str
    state: str
    action: str  # nothing | undo | halt and undo | wait for the undo | leave (failover mode) | unknown
    outcome: str | None = None


@dataclass
class Recovery:
    journal: JournalState
    plans: list[RecoveryPlan] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return all(p.outcome == "clean" for p in self.plans)


def _action(plan: FailoverPlan | None, mode: str, stage: Stage | None) -> str:
    if plan is None:
        return "unknown"
    shown = plan.status(stage)
    if is_clean(shown):
        return "nothing"
    if mode != "drill":
        return "leave (real failover)"
    if shown.condition is Condition.FAILING_OVER and shown.running:
        return "halt and undo"
    if shown.condition is Condition.UNDOING and shown.running:
        return "wait for the undo"
    return "undo"


async def survey(journal: JournalState, settings: ConnectionSettings) -> Recovery:
    """Read-only: each plan the journal says may be failed over, its state on the server, the action planned."""
    recovery = Recovery(journal)
    async with settings.client() as client:
        plans = {p.id.lower(): p for p in await client.list_plans()}
    started = started_stages(journal)
    for key in journal.may_be_failed_over():
        info = journal.plan_info(key)
        plan = plans.get(str(info.get("id", "")).lower())
        recovery.plans.append(RecoveryPlan(key, str(info.get("name", key)), str(info.get("id", "?")),
                                           plan.describe_state() if plan else "not listed by the server",
                                           _action(plan, journal.mode, started.get(str(info.get("id", "")).lower()))))
    return recovery


async def recover(journal: JournalState, settings: ConnectionSettings, *, observers: Iterable[Observer] = (),
                  write_gate: WriteGate | None = None, steps: Callable[[DrillSession], Steps] | None = None,
                  surveyed: Recovery | None = None) -> Recovery:
    """Halt, undo and verify every plan an unclosed run may have left failed over; close the journal if clean.

    The same code serves ``vaodrill recover``, the flow's cancellation hook and the crashed-run deployment.
    A real failover's journal is never undone: its plans are listed and left as they are. ``surveyed``: the
    survey already shown to the user (not read again).
    """
    recovery = surveyed or await survey(journal, settings)
    if journal.mode != "drill":
        return recovery
    ledger = Ledger(journal.drill, journal.run_id, Journal(journal.path.parent, journal.run_id), observers)
    targets = {str(info["key"]): PlanRun.from_json({"target": info["target"]}).target
               for info in journal.opened.get("plans", []) if isinstance(info, dict) and "target" in info}
    ledger.restore(journal, targets, resume=False)
    ledger.journal.append("recover")
    async with DrillSession(settings.client(), poll_interval=float(journal.opened.get("poll_interval") or 10),
                            give_up_after=float(journal.opened.get("give_up_after") or 300),
                            journal=ledger.journal, write_gate=write_gate) as session:
        await ledger.clean_up([p.key for p in recovery.plans], (steps or (lambda s: s))(session))
    for p in recovery.plans:
        record = ledger.records[p.key]
        p.outcome = "clean" if record.phase is Phase.CLEAN else f"left failed over: {record.undo_reason}"
    if not ledger.unclean():
        ledger.journal.append("close", recovered=True)
        await ledger.journal.sync()
    return recovery


# -- dry run ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    plan: str
    ok: bool
    note: str
    request: str | None = None


async def dry_run(spec: DrillSpec, settings: ConnectionSettings, now: datetime | None = None) -> list[PlannedCall]:
    """Resolve plans and restore points and run the preconditions, with reads only: no POST at all."""
    async with settings.client() as client:
        plans = await client.list_plans()
        targets = build_targets(spec, plans, now=now or utcnow(), server_timezone=settings.server_timezone)
        calls = []
        for step in spec.topological_order():
            target = targets[step.plan]
            plan = await client.get_plan(target.id)
            if (reason := not_runnable_because(plan)) is not None:
                calls.append(PlannedCall(target.name, False, f"precondition fails: {reason}"))
                continue
            if spec.mode == "readiness":
                path, body = client.readiness_request(target.id)
                calls.append(PlannedCall(target.name, True, f"{plan.describe_state()}; readiness check",
                                         f"POST {client.base_url}{path} {json.dumps(body)}"))
                continue
            path, body = client.failover_request(target.id, restore_point=target.restore_point)
            calls.append(PlannedCall(
                target.name, True, f"{plan.describe_state()}; restore point {target.restore_point} ({target.rule})",
                f"POST {client.base_url}{path} {json.dumps(body)}"))
            calls += [PlannedCall(target.name, True, f"then, once VAO reports it complete: check {c.label!r} "
                                  f"({c.kind} {c.target}; {'critical' if c.critical else 'non-critical'}, deadline "
                                  f"{c.deadline.total_seconds():g}s)") for c in spec.checks_for(step)]
            if spec.mode == "drill":
                calls.append(PlannedCall(target.name, True, "then, at cleanup",
                                         f"POST {client.base_url}{client.undo_path(target.id)}"))
        return calls


__all__ = [
    "ENDINGS", "STATUS_OF", "TRANSITIONS", "Drill", "IllegalTransition", "Observer", "Phase", "PlanRun",
    "PlannedCall", "Recovery", "RecoveryPlan", "Steps", "Transition", "build_targets", "default_timeout",
    "dry_run", "find_plan", "plan_result", "recover", "survey", "verdict",
]
