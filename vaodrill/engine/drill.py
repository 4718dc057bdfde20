"""The drill engine: one record per plan, one state table, a journal, and the report built from the records.

A drill's whole truth is its plan records (:class:`PlanRun`) and its journal, so a crash, a signal, a resumed
run, ``vaodrill recover`` and the report all read the same thing. The engine walks the DAG, calls four steps per
plan (check, start, wait, clean: :class:`Steps`), moves each record only through :meth:`Ledger.move` (checked
against :data:`TRANSITIONS`, journaled, told to the observers), and always cleans up what it may have failed over,
also after a signal, an authentication failure or a server that stopped answering.

Prefect is not imported here: ``flows/`` passes steps that run as Prefect tasks and an observer that publishes
logs, events and artifacts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from vaodrill.engine.checks import CheckFailed, CheckRun, failed_critical, run_checks, verified_at
from vaodrill.engine.dag import run_dag
from vaodrill.engine.observers import publish, show_unstarted, tell_start
from vaodrill.engine.readiness import ReadinessSession
from vaodrill.engine.runs import Ledger, Observer, Phase, PlanRun, Steps, plan_result, verdict
from vaodrill.engine.steps import DrillSession, WriteGate
from vaodrill.engine.targets import PlanTarget, Started, build_targets, utcnow
from vaodrill.errors import (
    DrillAborted,
    PlanHalted,
    PlanTimedOut,
    PreconditionFailed,
    RunNotStarted,
)
from vaodrill.journal import JOURNAL_VERSION, Journal, default_journal_dir
from vaodrill.report.files import write_reports
from vaodrill.report.model import DrillReport, Stopped
from vaodrill.spec.checks import Check
from vaodrill.spec.model import DrillSpec
from vaodrill.spec.zones import timezone_warning
from vaodrill.vao.connection import ConnectionSettings

log = logging.getLogger("vaodrill.drill")


class Drill:
    """One run of a drill spec against one VAO server: ``await Drill(...).run()`` returns the report.

    ``steps`` wraps the session's steps (the Prefect adapter turns each into a task); ``stop()`` (a signal)
    stops starting plans and stops waiting, then the cleanup runs and the report is written as usual.
    """

    def __init__(
        self,
        spec: DrillSpec,
        settings: ConnectionSettings,
        *,
        run_id: str,
        report_dir: str | Path | None = "reports",
        journal_dir: str | Path | None = None,
        now: datetime | None = None,
        observers: Iterable[Observer] = (),
        steps: Callable[[DrillSession], Steps] | None = None,
        write_gate: WriteGate | None = None,
        flow_run_url: str | None = None,
        spec_file: str | None = None,
        approval: Mapping[str, str] | None = None,
    ) -> None:
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
        session_type = ReadinessSession if self.spec.mode == "readiness" else DrillSession
        async with session_type(
            client,
            poll_interval=self.spec.poll_interval.total_seconds(),
            give_up_after=self.spec.give_up_after.total_seconds(),
            journal=self.journal,
            write_gate=self._write_gate,
            on_read_error=self.ledger.notice,
            polling=self.spec.polling,
        ) as session:
            self.session = session
            steps = self._make_steps(session)
            plans = await session.list_plans()
            targets = build_targets(
                self.spec, plans, now=self.now or utcnow(), server_timezone=self.settings.server_timezone
            )
            if self.spec.mode == "readiness":  # a server without readiness checks: one line, nothing opened
                for target in targets.values():
                    client.readiness_request(target.id)
            self._open(targets)
            tell_start(
                self.ledger.observers,
                self.spec.name,
                self.run_id,
                self.spec.mode,
                self.settings.url,
                self.records.values(),
            )
            order = [step.plan for step in self.spec.topological_order()]
            after = {key: list(targets[key].after) for key in order}
            self._dag = asyncio.ensure_future(
                run_dag(order, after, lambda key: self._grouped_plan(steps, key), max_parallel=self.spec.max_parallel)
            )
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
            "open",
            version=JOURNAL_VERSION,
            drill=self.spec.name,
            mode=self.spec.mode,
            server=self.settings.url,
            spec_file=self.spec_file,
            poll_interval=self.spec.poll_interval.total_seconds(),
            give_up_after=self.spec.give_up_after.total_seconds(),
            plans=[
                {
                    "key": t.key,
                    "id": t.id,
                    "name": t.name,
                    "after": list(t.after),
                    "target": PlanRun(t).to_json()["target"],
                }
                for t in targets.values()
            ],
        )
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
        if failure is not None and (
            self.spec.mode != "readiness"
            or isinstance(failure, DrillAborted | asyncio.CancelledError)
            or self.stopped is not None
        ):
            raise failure  # a failed readiness check stops no other plan's: a weekly report names them all

    async def _plan(self, steps: Steps, key: str) -> None:
        """One plan's failover; raises (so its dependents are skipped) unless it failed over as it should."""
        run = self.records[key]
        if run.outcome in (Phase.FAILED_OVER, Phase.READY):
            return  # resumed: done in an earlier attempt
        if run.outcome is not None and run.phase not in (Phase.FAILING_OVER, Phase.CHECKING_READINESS, Phase.STARTING):
            raise RuntimeError(run.reason or str(run.outcome))
        if run.phase is Phase.PENDING:
            await self._check(steps, run)
        if run.phase is Phase.STARTING:
            await self._start(steps, run)
        await self._wait(steps, run)

    async def _check(self, steps: Steps, run: PlanRun) -> None:
        """The precondition, unless the drill was stopped before this plan's turn."""
        if self.stopped is not None:
            self.ledger.move(run, Phase.SKIPPED, reason=f"not started: {self.stopped}")
            raise self.stopped
        self.ledger.move(run, Phase.CHECKING)
        try:
            await steps.check(run.target)
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

    async def _start(self, steps: Steps, run: PlanRun) -> None:
        """The Run (or readiness check), sent at most once; a Run in flight is never abandoned."""
        key = run.key
        started: Started | None = None
        sent_before = (run.started_at or utcnow()) if run.run_sent else None
        start = self._starts[key] = asyncio.ensure_future(steps.start(run.target, run_sent_before=sent_before))
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
        self._started(run, started)
        if cancelled:
            self._interrupt(run)
            raise asyncio.CancelledError()

    async def _wait(self, steps: Steps, run: PlanRun) -> None:
        """Until the failover (or check) ends; each way it can end is its own phase."""
        key, readiness = run.key, self.spec.mode == "readiness"
        try:
            done = await steps.wait_failover(run.target)
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
            self.ledger.move(
                run,
                Phase.VERIFYING,
                completed_at=done.completed_at,
                ended_at=done.completed_at,
                details=done.details,
                continues=done.continues,
                confirmed=True,
                events=self._events(key),
            )
        if checks:
            await self._verify(run, checks)
            return
        self.ledger.move(
            run,
            Phase.READY if readiness else Phase.FAILED_OVER,
            completed_at=done.completed_at,
            details=done.details,
            continues=done.continues,
            confirmed=True,
            events=self._events(key),
        )

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

    def _started(self, run: PlanRun, started: Started) -> None:
        """The Run (or readiness check) has its answer: the plan is failing over (or being checked)."""
        readiness = self.spec.mode == "readiness"
        self.ledger.move(
            run,
            Phase.CHECKING_READINESS if readiness else Phase.FAILING_OVER,
            run_sent=not readiness,
            started_at=started.started_at,
            confirmed=started.confirmed,
            reason=started.note,
        )

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
                    "was skipped" if outcome is Phase.SKIPPED or outcome is None else f"ended {outcome.value}"
                )
        return f"not started: {self.stopped or 'drill cancelled'}"

    def _sent(self, key: str) -> bool:
        return self.session is not None and key in self.session.runs_sent

    def _interrupt(self, run: PlanRun) -> None:
        self.ledger.move(
            run,
            Phase.INTERRUPTED,
            reason=f"interrupted: {self.stopped or 'drill cancelled'}",
            events=self._events(run.key),
        )

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
        for key, start in self._starts.items():
            run = self.records[key]
            if run.phase is Phase.STARTING:
                started = None if start.cancelled() or start.exception() is not None else start.result()
                if started is None:
                    self.ledger.move(run, Phase.FAILED, run_sent=self._sent(key), reason=f"stopped: {self.stopped}")
                    continue
                self._started(run, started)
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
        await show_unstarted(steps, self.records, self._grouped)
        await publish(report, self.ledger.observers)
        return report

    # -- the report ---------------------------------------------------------------------------------------

    def report(self, started_at: datetime) -> DrillReport:
        results = [plan_result(run, self.spec.mode) for run in self.records.values()]
        final, reason = verdict(results, self.spec.mode)
        if self.stopped is not None:
            final = "failed"
            reason = f"{self.stopped}" + (f"; {reason}" if reason else "")
        zone = timezone_warning(self.spec.timezone, self.settings.server_timezone)
        return DrillReport(
            drill=self.spec.name,
            description=self.spec.description,
            run_id=self.run_id,
            mode=self.spec.mode,
            verdict=final,
            reason=reason,
            started_at=started_at,
            finished_at=utcnow(),
            vao_server=self.settings.url,
            flow_run_url=self.flow_run_url,
            stopped=cast(Stopped, self.stopped.kind) if self.stopped else None,
            warnings=[zone] if zone else [],
            plans=results,
        )

    def _write(self, report: DrillReport) -> None:
        """Files first (they must exist even when Prefect is gone), then the journal."""
        if self.report_dir is not None:
            files = write_reports(report, self.report_dir, journal=self.journal)
            log.info("Reports written to %s", files.directory)
        if self.spec.mode != "drill" or not self.ledger.unclean():
            self.journal.append("close", verdict=report.verdict)
        else:
            log.critical("Journal %s left open: run `vaodrill recover %s`", self.journal.path, self.run_id)


__all__ = ["Drill"]
