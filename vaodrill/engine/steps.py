"""The four things a drill does to one plan, against VAO: check, start, wait, clean. No Prefect here.

``DrillSession`` owns one client, one shared :class:`PlanMonitor` and the run's journal. Every POST (Run, Undo,
Halt) is announced in the journal before it is sent and its outcome recorded after, and every decision about a
plan's state goes through :mod:`vaodrill.vao.rules`. The Prefect tasks in ``tasks/`` call these methods one to one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from vaodrill.engine.monitor import PlanMonitor, abort_for, wait_for
from vaodrill.engine.targets import Cleanup, PlanTarget, StageDone, Started, utcnow
from vaodrill.errors import (
    CleanupNotVerified,
    DrillAborted,
    PlanFailed,
    PlanHalted,
    PlanTimedOut,
    PreconditionFailed,
    RunNotStarted,
    VaoConnectError,
    VaoError,
    VaoResponseError,
    VaoServerError,
)
from vaodrill.journal import Journal, JournalError, JournalState, open_journals
from vaodrill.report.model import PlanEvent
from vaodrill.spec.model import Polling
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.orchestrator import Orchestrator
from vaodrill.vao.retry import is_transient, patience
from vaodrill.vao.rules import failover_complete, finished_with_errors, is_clean, not_runnable_because
from vaodrill.vao.vocabulary import Condition, Stage, StateRecord

log = logging.getLogger("vaodrill.drill")

#: A plan that still looks idle this many readings and poll intervals after its Run was sent did not start (both:
#: adaptive polling may read several times within one interval).
START_GRACE_POLLS = 5
#: The longest Retry-After honoured on a POST; a longer one counts as a failure.
MAX_RETRY_AFTER = 120.0
#: Undo is resent (never Run) when its answer was lost and the plan shows no undo yet; at most this many POSTs.
UNDO_ATTEMPTS = 3

WriteGate = Callable[[], contextlib.AbstractAsyncContextManager[object]]
T = TypeVar("T")


#: The step a halt's details name ("Halted at step 2 of 4: ...").
_HALT_STEP = re.compile(r"\bstep (\d+)\b", re.IGNORECASE)


def _shows_failover(status: StateRecord) -> bool:
    """The server shows this plan's failover (running, finished or halted), or the plan busy."""
    return status.condition in (Condition.FAILING_OVER, Condition.FAILED_OVER, Condition.HALTED) or status.in_use


#: The stage each POST starts (a Halt starts none: the stage it halts stays the one started before).
_STARTS: dict[str, Stage] = {"run": "failover", "undo": "undo"}


def started_stages(journal: JournalState) -> dict[str, Stage]:
    """Plan id -> the stage a drill run last started on it, from the POSTs its journal announced."""
    started: dict[str, Stage] = {}
    for intent in journal.intents:
        if (op := str(intent.get("op", ""))) in _STARTS:
            started[str(intent.get("plan_id", "")).lower()] = _STARTS[op]
    return started


def never_sent(error: VaoError) -> bool:
    """A POST that provably never reached VAO: nothing ran, nothing to read back."""
    return isinstance(error, VaoConnectError) and not error.may_have_reached_server


def refused(error: VaoError) -> bool:
    """VAO answered a POST with a 4xx: it refused it, nothing ran."""
    return isinstance(error, VaoResponseError) and not isinstance(error, VaoServerError)


def _undo_done(shown: StateRecord) -> bool:
    """The undo's wait: clean is done; still undoing (or not shown yet) waits; anything else fails the cleanup."""
    if is_clean(shown):
        return True
    if shown.condition is Condition.HALTED or (
        shown.condition is Condition.UNDONE and finished_with_errors(shown.details)
    ):
        raise CleanupNotVerified(f"undo stopped in {shown.describe()}")
    if shown.condition in (Condition.UNDOING, Condition.UNDONE, Condition.FAILING_OVER, Condition.FAILED_OVER):
        return False  # the undo runs, or the server does not show it yet
    raise CleanupNotVerified(f"unexpected state {shown.describe()} during undo")


class DrillSession:
    """One drill run's connection to VAO: one client, one token, one pool, one monitor, one journal."""

    def __init__(
        self,
        client: Orchestrator,
        *,
        poll_interval: float,
        give_up_after: float,
        journal: Journal | None = None,
        write_gate: WriteGate | None = None,
        on_read_error: Callable[[str | None], None] | None = None,
        polling: Polling = "fixed",
    ) -> None:
        self.client = client
        self.give_up_after = give_up_after
        self.monitor = PlanMonitor(client, poll_interval, give_up_after, on_read_error, polling=polling)
        self.journal = journal
        self._write_gate: WriteGate = write_gate or contextlib.nullcontext
        #: Plan keys whose Run this session announced (it may have reached VAO).
        self.runs_sent: set[str] = set()
        #: Plan key -> the halts seen and Continues sent during its failover, for the report.
        self.events: dict[str, list[PlanEvent]] = {}
        #: Plan id -> the stage vaodrill last started on it (this session's POSTs, or its journal's): what a
        #: state word that names no stage (``Processing``) is running.
        self.started: dict[str, Stage] = {}
        #: What this run's journal says it sent already (a resumed run): the readiness drill reads it too.
        self.earlier: JournalState | None = None
        if journal is not None and journal.exists():
            with contextlib.suppress(JournalError):
                self.earlier = journal.read()
                self.started = started_stages(self.earlier)

    def _started(self, plan_id: str, op: str) -> None:
        if op in _STARTS:
            self.started[plan_id.lower()] = _STARTS[op]

    def status(self, plan: FailoverPlan) -> StateRecord:
        """The plan's normalized state, knowing what this drill started on it."""
        return plan.status(self.started.get(plan.id.lower()))

    async def __aenter__(self) -> DrillSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.monitor.aclose()
        await self.client.aclose()

    def holder_of(self, target: PlanTarget) -> str | None:
        """Another unclosed drill run that may have this plan failed over (from the journals beside ours)."""
        if self.journal is None:
            return None
        for other in open_journals(self.journal.path.parent):
            if other.run_id != self.journal.run_id and any(
                str(other.plan_info(key).get("id", "")).lower() == target.id.lower()
                for key in other.may_be_failed_over()
            ):
                return other.run_id
        return None

    # -- plumbing ----------------------------------------------------------------------------------------

    async def plan(self, target: PlanTarget, work: Callable[[], Awaitable[T]]) -> T:
        """One plan's steps as a unit; run directly they need no grouping (the Prefect adapter adds one)."""
        return await work()

    async def read(self, target: PlanTarget) -> FailoverPlan:
        """One plan, read now, patiently (see :meth:`patiently`)."""
        sent = time.monotonic()
        plan = await self.patiently(target.name, lambda: self.client.get_plan(target.id))
        self.monitor.remember([plan], sent)
        return plan

    #: Single-plan reads (``GET /FailoverPlans/{id}``) of a plan that passes cleanly: the precondition, the start and
    #: the cleanup each read it only when no recent reading serves (:meth:`PlanMonitor.recent`: :meth:`current`, and
    #: the cleanup's use of a recent complete reading). Whether one does depends on scheduling: 0 to 3; tests name it.
    PLAN_READS_ON_A_CLEAN_PASS = range(4)

    async def current(self, target: PlanTarget) -> FailoverPlan:
        """The plan as its recent reading showed it (the shared list read, or the precondition's own read for the
        start right after it; see :meth:`PlanMonitor.recent`), else read now.

        Enough for a precondition: VAO itself refuses a Run the plan's state does not allow, and a refusal is
        never counted as a start. It spares a read per plan on the critical path (a dependent's Run leaves as
        soon as the read that showed its dependencies done). Cleanup and every unclear answer still read now.
        """
        return self.monitor.recent(target.id) or await self.read(target)

    async def list_plans(self) -> list[FailoverPlan]:
        """The drill's first read (it also serves the first plans' preconditions); a server that cannot be
        reached at all fails at once: a wrong URL is a configuration error, not an outage."""
        sent = time.monotonic()
        plans = await self.patiently("the plan list", self.client.list_plans, connect=False)
        self.monitor.remember(plans, sent)
        return plans

    async def patiently(self, what: str, call: Callable[[], Awaitable[T]], *, connect: bool = True) -> T:
        """A read the client retries (the one policy, :mod:`vaodrill.vao.retry`) until ``give_up_after``.

        ``connect=False``: a server that cannot be reached at all fails after the policy's own few attempts (the
        drill's first read: a wrong URL is a configuration error, not an outage); other failures are borne.
        """
        started = time.monotonic()
        try:
            if not connect:
                try:
                    return await call()
                except VaoError as exc:
                    if isinstance(exc, VaoConnectError) or not is_transient(exc):
                        raise
            with patience(max(self.give_up_after - (time.monotonic() - started), 0.0)):
                return await call()
        except VaoError as exc:
            if (abort := abort_for(exc)) is not None:
                raise abort from None
            if not is_transient(exc) or (not connect and isinstance(exc, VaoConnectError)):
                raise
            lasted = time.monotonic() - started
            raise DrillAborted(
                f"VAO unreachable or failing for {lasted:.0f}s (give_up_after): {exc}", kind="unreachable"
            ) from None

    async def _post(self, target: PlanTarget, op: str, send: Callable[[], Awaitable[None]], **intent: Any) -> None:
        """One POST, announced in the journal first. The client sends it again only when VAO provably did not act
        on it (never received; 429 or 503 with Retry-After), within ``give_up_after`` and ``MAX_RETRY_AFTER``."""
        try:
            async with contextlib.AsyncExitStack() as slot:
                await self._write_slot(slot, target, op)
                if self.journal:
                    self.journal.append("intent", plan=target.key, plan_id=target.id, op=op, **intent)
                    await self.journal.sync()
                if op == "run":
                    self.runs_sent.add(target.key)
                self._started(target.id, op)
                with patience(min(MAX_RETRY_AFTER, self.give_up_after)):
                    await send()
        except VaoError as exc:
            if self.journal:
                self.journal.append("outcome", plan=target.key, op=op, ok=False, error=str(exc))
            raise
        if self.journal:
            self.journal.append("outcome", plan=target.key, op=op, ok=True)

    async def _write_slot(self, slot: contextlib.AsyncExitStack, target: PlanTarget, op: str) -> None:
        """Enter the write gate (a Prefect global concurrency limit). A gate that failed because of a failed
        exchange (its server busy or down) is asked again under the retry policy until ``give_up_after``; one that
        refuses outright (e.g. the limit does not exist) fails at once. Either way nothing has been sent yet."""

        async def enter(_left: float) -> None:
            await slot.enter_async_context(self._write_gate())

        try:
            with patience(self.give_up_after):
                await self.client.retry.run(
                    enter,
                    retryable=lambda exc: exc.__cause__ is not None,
                    log=log,
                    what=f"{target.name}: no write slot for the {op} yet",
                )
        except Exception as exc:  # whatever the limit's client raises, the POST did not leave
            raise VaoConnectError(f"{op}: no write slot ({exc})") from None

    # -- steps --------------------------------------------------------------------------------------------

    async def check(self, target: PlanTarget) -> FailoverPlan:
        """The precondition: the plan's current state (see :meth:`current`) is runnable (docs/vao-api.md, section 5)."""
        plan = await self.current(target)
        self._refuse_unless_runnable(target, plan)
        return plan

    def _refuse_unless_runnable(self, target: PlanTarget, plan: FailoverPlan) -> None:
        """Why the plan cannot run, naming the unclosed drill run that may hold it."""
        reason = not_runnable_because(self.status(plan))
        if reason is not None:
            if holder := self.holder_of(target):
                reason += f"; drill run {holder} has it failed over, or left it so (`vaodrill recover {holder}`)"
            raise PreconditionFailed(reason)

    async def start(self, target: PlanTarget, *, run_sent_before: datetime | None = None) -> Started:
        """Send Run at most once. ``run_sent_before``: the journal says this run already sent it (a resume).
        A readiness drill sends its ReadinessCheck instead (:class:`~vaodrill.engine.readiness.ReadinessSession`)."""
        if run_sent_before is not None:
            plan = await self.read(target)
            log.warning(
                "%s: Run already sent by this run at %s: not sending it again", target.name, run_sent_before.isoformat()
            )
            return Started(
                run_sent_before,
                posted=False,
                confirmed=_shows_failover(self.status(plan)),
                note="resumed: Run sent earlier in this run",
            )
        self._refuse_unless_runnable(target, await self.current(target))
        started_at = utcnow()
        try:
            await self._post(
                target,
                "run",
                lambda: self.client.run_failover(
                    target.id, restore_point=target.restore_point, execute_chained_plans=False
                ),
                restore_point=target.restore_point,
            )
        except VaoError as exc:
            if (abort := abort_for(exc)) is not None or never_sent(exc):
                raise abort or RunNotStarted(f"Run not sent: {exc}") from None
            return await self._after_unclear_run(target, started_at, exc)
        return Started(started_at, posted=True)

    async def _after_unclear_run(self, target: PlanTarget, started_at: datetime, error: VaoError) -> Started:
        """The Run's answer was an error or never came: the server's own state decides, never a guess.

        A 4xx is a refusal: nothing ran. A failover the server shows is ours only if no other unclosed drill run
        holds the plan (two drills may pass their precondition together; the second Run is then refused).
        """
        holder = self.holder_of(target)
        held = f"; drill run {holder} has it failed over" if holder else ""
        if refused(error):
            raise PreconditionFailed(f"Run refused: {error}{held}") from None
        shown = self.status(await self.read(target))
        if _shows_failover(shown) and holder:
            raise PreconditionFailed(f"Run refused ({error}){held}, not by this one") from None
        if _shows_failover(shown):
            log.warning("%s: Run answered %s, but the plan is failing over: counted as started", target.name, error)
            return Started(started_at, posted=True, note=f"Run answer: {error}")
        if isinstance(error, VaoResponseError):
            raise RunNotStarted(f"Run refused: {error}") from None
        log.warning("%s: Run's answer lost (%s) and the plan shows no failover yet: watching it", target.name, error)
        return Started(started_at, posted=True, confirmed=False, note=f"Run answer lost: {error}")

    async def wait_failover(self, target: PlanTarget) -> StageDone:
        """Until the failover completes, halts (the halt policy applies) or the plan's timeout passes."""
        continues = 0
        grace_until = time.monotonic() + START_GRACE_POLLS * self.monitor.interval
        events = self.events.setdefault(target.key, [])

        def step(plan: FailoverPlan, readings: int) -> object:
            nonlocal continues
            shown = self.status(plan)
            if shown.condition is Condition.FAILING_OVER:
                self._continued(events, "resumed")
                return False
            if shown.condition is Condition.FAILED_OVER:
                self._continued(events, "completed")
                if finished_with_errors(shown.details):
                    raise PlanFailed(f"failover finished with errors ({shown.details})")
                return True
            if shown.condition is Condition.HALTED:
                self._continued(events, "halted again")
                step_at = _HALT_STEP.search(shown.details)
                events.append(
                    PlanEvent(
                        kind="halt",
                        at=utcnow(),
                        step=int(step_at[1]) if step_at else None,
                        details=shown.details or None,
                    )
                )
                policy = target.halt
                if policy.continue_with is None or continues >= policy.max:
                    tried = f" after {continues} Continue" if continues else ""
                    raise PlanHalted(f"halted{tried} ({shown.details or 'no details'})")
                continues += 1
                log.warning(
                    "%s halted; Continue %s (%d of %d)", target.name, policy.continue_with, continues, policy.max
                )
                sent = PlanEvent(kind="continue", at=utcnow(), option=policy.continue_with)
                events.append(sent)
                return self._send_continue(target, sent)
            self._continued(events, f"then {shown.describe()}")
            if is_clean(shown) and (readings < START_GRACE_POLLS or time.monotonic() < grace_until):
                return False  # the server may not show the Run yet
            if is_clean(shown):
                raise PlanFailed(f"the failover never showed: still {shown.describe()} after {readings} readings")
            raise PlanFailed(f"unexpected state {shown.describe()} during failover")

        plan, observed_at = await wait_for(self.monitor, target, what="failover", step=step)
        return StageDone(observed_at, plan.state_details, continues)

    async def clean(self, target: PlanTarget) -> Cleanup:
        """Put the plan back and verify it is clean: halt a failover still running, Undo, wait for clean.

        A recent reading (:meth:`PlanMonitor.recent`) that shows the failover complete is enough to send the Undo (VAO
        refuses one the plan's state does not allow, and a refused Undo reads the plan now); any other state
        is read now, so a reading older than the Run can never pass for clean.
        """
        recent = self.monitor.recent(target.id)
        shown = self.status(recent) if recent is not None else None
        if shown is None or not failover_complete(shown):
            shown = self.status(await self.read(target))
        if is_clean(shown):
            return Cleanup(utcnow(), undone=False)
        if shown.condition is Condition.FAILING_OVER and shown.running:
            log.warning("%s is still failing over: halting it before the undo", target.name)
            await self._post(target, "halt", lambda: self.client.halt(target.id, fullstop=True))
            await wait_for(self.monitor, target, what="halt", step=lambda p, _: self._halt_done(self.status(p)))
            shown = self.status(await self.read(target))
        await self._undo(target, shown)
        try:
            plan, observed_at = await wait_for(
                self.monitor, target, what="undo", step=lambda p, _: _undo_done(self.status(p))
            )
        except PlanTimedOut as exc:
            raise CleanupNotVerified(str(exc)) from None
        # The undo's own wording ("Complete, 1 warning") only while the plan still shows the undo, not an idle word.
        own = plan.state_details if self.status(plan).condition is Condition.UNDONE else None
        return Cleanup(observed_at, undone=True, details=own or None)

    async def _undo(self, target: PlanTarget, shown: StateRecord) -> None:
        """Send the Undo unless the plan is clean or undoing already; an unclear answer is settled by the plan's
        state, resent at most ``UNDO_ATTEMPTS`` times."""
        for attempt in range(1, UNDO_ATTEMPTS + 1):
            if is_clean(shown) or shown.condition is Condition.UNDOING:
                return
            if shown.condition not in (Condition.FAILING_OVER, Condition.FAILED_OVER, Condition.HALTED):
                raise CleanupNotVerified(f"cannot undo from {shown.describe()}")
            try:
                await self._post(target, "undo", lambda: self.client.undo(target.id))
                return
            except VaoError as exc:
                if (abort := abort_for(exc)) is not None:
                    raise abort from None
                shown = self.status(await self.read(target))  # the server's state decides whether the Undo took
                if attempt == UNDO_ATTEMPTS or refused(exc):
                    if is_clean(shown) or shown.condition in (Condition.UNDOING, Condition.UNDONE):
                        return
                    raise CleanupNotVerified(f"Undo failed: {exc}") from None
                log.warning("%s: Undo answered %s; plan is %s", target.name, exc, shown.describe())

    async def _send_continue(self, target: PlanTarget, sent: PlanEvent) -> None:
        try:
            await self.client.continue_plan(target.id, sent.option or "")
        except BaseException as exc:
            sent.outcome = f"not sent: {exc}" if str(exc) else "not sent"
            raise

    @staticmethod
    def _continued(events: list[PlanEvent], outcome: str) -> None:
        """The next reading after a Continue says what it did: resumed, completed or halted again."""
        if events and events[-1].kind == "continue" and events[-1].outcome is None:
            events[-1].outcome = outcome

    @staticmethod
    def _halt_done(shown: StateRecord) -> bool:
        """A Halt sent to a running failover has taken: halted, or the failover stopped running, or clean."""
        return (
            shown.condition is Condition.HALTED
            or is_clean(shown)
            or (shown.condition in (Condition.FAILING_OVER, Condition.FAILED_OVER) and not shown.running)
        )


__all__ = ["START_GRACE_POLLS", "DrillSession", "WriteGate", "never_sent", "refused", "started_stages"]
