"""The readiness drill: the same session, but each plan gets a ReadinessCheck instead of a Run, and nothing to undo.

VRO (and VAO) run the check on the plan and show it in the plan's state: running (``Checking``), then a verdict
(``Verified`` or ``NotVerified``). The check is a write: announced in the journal, sent at most once per run.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import cached_property

from vaodrill.engine.monitor import abort_for, wait_for
from vaodrill.engine.steps import START_GRACE_POLLS, DrillSession, never_sent, refused
from vaodrill.engine.targets import PlanTarget, StageDone, Started, utcnow
from vaodrill.errors import PlanFailed, PreconditionFailed, RunNotStarted, VaoError
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.rules import finished_with_errors
from vaodrill.vao.vocabulary import Condition, StateRecord, spelling_key

log = logging.getLogger("vaodrill.drill")

#: A readiness check's words (VRO's user guide): running, and its two results (``Verified (passed check)`` too).
_CHECKING = frozenset({"checking", "checkhalting"})
_CHECK_VERDICTS = frozenset({"verified", "notverified"})


class ReadinessSession(DrillSession):
    """``start`` sends a ReadinessCheck and ``wait_failover`` waits for its verdict; a resumed run never sends a
    check its journal announced again, and then waits for that check's result instead of refusing the plan."""

    @cached_property
    def checks_sent(self) -> set[str]:
        """Plan keys whose ReadinessCheck this run announced: its journal's (a resume), then this session's."""
        intents = self.earlier.intents if self.earlier is not None else []
        return {str(i.get("plan")) for i in intents if i.get("op") == "readiness"}

    @cached_property
    def _before_check(self) -> dict[str, StateRecord]:
        """Plan key -> its state at the check's start: an old verdict is never taken for this check's."""
        return {}

    async def check(self, target: PlanTarget) -> FailoverPlan:
        """The precondition, except for a check this run already sent: its result is waited for."""
        if target.key in self.checks_sent:
            return await self.current(target)
        return await super().check(target)

    async def start(self, target: PlanTarget, *, run_sent_before: datetime | None = None) -> Started:
        """Send a ReadinessCheck at most once (a write: announced in the journal first). Its answer lost, the check
        is not sent again: the plan's state then shows whether it runs (:meth:`wait_failover`). ``run_sent_before``
        is a Run's: whether this check was sent is the journal's ``readiness`` intent (:attr:`checks_sent`)."""
        plan = await self.current(target)
        self._before_check[target.key] = self.status(plan)
        started_at = utcnow()
        if target.key in self.checks_sent:
            log.warning("%s: ReadinessCheck already sent by this run: not sending it again", target.name)
            return Started(started_at, posted=False, confirmed=False, note="resumed: ReadinessCheck sent earlier")
        self._refuse_unless_runnable(target, plan)
        self.checks_sent.add(target.key)
        try:
            await self._post(target, "readiness", lambda: self.client.readiness_check(target.id))
        except VaoError as exc:
            if (abort := abort_for(exc)) is not None:
                raise abort from None
            if never_sent(exc):
                raise RunNotStarted(f"ReadinessCheck not sent: {exc}") from None
            if refused(exc):
                raise PreconditionFailed(f"ReadinessCheck refused: {exc}") from None
            log.warning("%s: ReadinessCheck's answer lost (%s): watching the plan", target.name, exc)
            return Started(started_at, posted=True, confirmed=False, note=f"ReadinessCheck answer: {exc}")
        return Started(started_at, posted=True)

    async def wait_failover(self, target: PlanTarget) -> StageDone:
        """Until the readiness check ends: VERIFIED passes, NOT VERIFIED (or a result with errors) fails with the
        server's words. A verdict counts only once the check was seen running or the plan's words changed since
        the precondition's reading: an old VERIFIED is never taken for this check's result."""
        before = self._before_check.get(target.key)
        grace_until = time.monotonic() + START_GRACE_POLLS * self.monitor.interval
        seen_running = False

        def step(plan: FailoverPlan, readings: int) -> object:
            nonlocal seen_running
            shown = self.status(plan)
            verdict = spelling_key(shown.words)
            if shown.running or shown.in_use or verdict in _CHECKING:
                seen_running = True
                return False
            new = seen_running or before is None or (shown.words, shown.details) != (before.words, before.details)
            if verdict in _CHECK_VERDICTS and new:
                if verdict != "verified" or finished_with_errors(shown.details):
                    raise PlanFailed(f"readiness check failed: {shown.describe()}")
                return True
            if shown.condition is not Condition.IDLE:
                raise PlanFailed(f"unexpected state {shown.describe()} during the readiness check")
            if seen_running:
                raise PlanFailed(f"the readiness check ended without a result: {shown.describe()}")
            if readings < START_GRACE_POLLS or time.monotonic() < grace_until:
                return False  # the server may not show the check yet
            raise PlanFailed(
                f"the readiness check never showed: still {shown.describe()} after {readings} readings "
                "(a check shorter than poll_interval cannot be told from the one before)"
            )

        plan, observed_at = await wait_for(self.monitor, target, what="readiness check", step=step)
        return StageDone(observed_at, plan.state_details)


__all__ = ["ReadinessSession"]
