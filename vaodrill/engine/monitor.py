"""One shared reading of the plans for every waiting plan: :class:`PlanMonitor` polls (its cadence, its patience
with a failing server) and :func:`wait_for` waits on it for one plan's stage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime

from vaodrill.engine.cadence import Sighting, make_cadence
from vaodrill.engine.targets import PlanTarget, utcnow
from vaodrill.errors import (
    DrillAborted,
    PlanFailed,
    PlanTimedOut,
    VaoAuthError,
    VaoForbidden,
)
from vaodrill.spec.model import Polling
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.orchestrator import Orchestrator

log = logging.getLogger("vaodrill.drill")


def abort_for(error: BaseException) -> DrillAborted | None:
    """Errors after which no further call can succeed: the drill stops waiting at once."""
    if isinstance(error, DrillAborted):
        return error
    if isinstance(error, VaoAuthError | VaoForbidden):
        return DrillAborted(f"authentication failed: {error}", kind="auth")
    return None


class PlanMonitor:
    """Reads every plan's state with ONE list request per poll interval, shared by all waiters.

    A failed read never kills the poller: the error is handed to the waiters. An authentication failure (a 401
    that survived a fresh login, or a 403) stops every wait at once; other failures do so once they have lasted
    ``give_up_after`` seconds without a good read.

    ``polling="adaptive"``: when to read is decided by :class:`vaodrill.engine.cadence.AdaptiveCadence` from the watched
    plans' progress, within the same read budget (see :mod:`vaodrill.engine.cadence`); ``"fixed"``: every interval.
    """

    def __init__(
        self,
        client: Orchestrator,
        interval: float,
        give_up_after: float,
        on_read_error: Callable[[str | None], None] | None = None,
        *,
        polling: Polling = "fixed",
    ) -> None:
        self.client = client
        self.interval = interval
        self.cadence = make_cadence(polling, interval)
        self.give_up_after = give_up_after
        self._on_read_error = on_read_error or (lambda _message: None)
        self._plans: dict[str, FailoverPlan] = {}
        self._observed_at = utcnow()
        self._sent = -math.inf  # when the request behind ``_plans`` left (``time.monotonic()``)
        self._readings: dict[str, tuple[FailoverPlan, float]] = {}  # plan id -> latest reading, when it left
        self._version = 0
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._watched: Counter[str] = Counter()  # plan id -> waiters: the plans the cadence reads for
        self._new_watch = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self.failing_since: datetime | None = None
        self.last_error: BaseException | None = None
        self.fatal: DrillAborted | None = None
        self.polls = 0

    def remember(self, plans: Iterable[FailoverPlan], sent: float) -> None:
        """Readings of plans by a request that left at ``sent`` (``time.monotonic()``), for :meth:`recent`."""
        for plan in plans:
            key = plan.id.lower()
            if sent >= self._readings.get(key, (plan, -math.inf))[1]:
                self._readings[key] = (plan, sent)

    def recent(self, plan_id: str) -> FailoverPlan | None:
        """The plan's latest reading (the list read or its own), if no newer one is to be had by reading it now.

        That is: its request left less than an interval ago, or it is as new as the newest list read while the poller
        is still on its cadence (it stops an interval after its last waiter left, when the loop lets it) and that read
        succeeded. A late event loop (a large drill through Prefect) ages every reading past an interval, and makes
        the poller as late; reading each plan again then would only add requests and make the loop later still.
        """
        plan, sent = self._readings.get(plan_id.lower(), (None, -math.inf))
        if time.monotonic() - sent <= self.interval:
            return plan
        polling = self._poller is not None and not self._poller.done() and self.last_error is None
        return plan if polling and sent >= self._sent else None

    def forgive(self) -> None:
        """Start a fresh give-up window (cleanup after a stop); an authentication failure stays."""
        if self.fatal is not None and self.fatal.kind != "auth":
            self.fatal = None
        self.failing_since = None

    async def watch(self, plan_id: str) -> AsyncIterator[tuple[FailoverPlan, datetime, float]]:
        """Each fresh reading of one plan (taken after the call), with the moment it was observed and the moment
        its request left (``time.monotonic()``)."""
        self._watchers += 1
        self._watched[plan_id.lower()] += 1
        self._new_watch.set()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="vaodrill-plan-monitor")
        try:
            seen = self._version
            while True:
                if self.fatal is not None:  # e.g. credentials refused: no reading will come
                    raise self.fatal
                async with self._changed:
                    while self._version <= seen:
                        await self._changed.wait()
                    seen = self._version
                    plan = self._plans.get(plan_id.lower())
                    observed_at, sent = self._observed_at, self._sent
                    fresh = self.last_error is None
                if self.fatal is not None:
                    raise self.fatal
                if plan is not None and fresh:
                    yield plan, observed_at, sent
                elif fresh:
                    raise PlanFailed(f"plan {plan_id} is no longer listed by the server")
        finally:
            self._watchers -= 1
            self._watched[plan_id.lower()] -= 1
            if self._watched[plan_id.lower()] <= 0:
                del self._watched[plan_id.lower()]

    async def _poll(self) -> None:
        await self._pause(resuming=True)
        while self._watchers > 0 and (self.fatal is None or self.fatal.kind != "auth"):
            attempt, sent = utcnow(), time.monotonic()
            try:
                plans = await self.client.list_plans()
            except Exception as exc:  # the poller survives anything and tells the waiters
                self.cadence.read(sent, time.monotonic(), None)
                self._failed(exc, attempt)
            else:
                self.cadence.read(sent, time.monotonic(), {p.id.lower(): Sighting.of(p) for p in plans})
                if self.last_error is not None:
                    self._on_read_error(None)
                self.last_error, self.failing_since = None, None
                if self.fatal is not None and self.fatal.kind != "auth":
                    self.fatal = None
                self.remember(plans, sent)
                async with self._changed:
                    self._plans = {p.id.lower(): p for p in plans}
                    self._observed_at, self._sent = utcnow(), sent
            self.polls += 1
            async with self._changed:
                self._version += 1
                self._changed.notify_all()
            await self._pause()

    async def _pause(self, *, resuming: bool = False) -> None:
        """Until the cadence's next read (a fixed poll: an interval after the previous one left), asked again
        when a wait starts (a stage just started may need a read sooner than the one planned)."""
        while True:
            now = time.monotonic()
            delay = self.cadence.next_read(now, self._watched, resuming=resuming) - now
            if delay <= 0:
                return
            self._new_watch.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._new_watch.wait()
            except TimeoutError:
                return

    def _failed(self, exc: BaseException, attempt: datetime) -> None:
        now = utcnow()
        self.last_error = exc
        self.failing_since = self.failing_since or attempt
        lasted = (now - self.failing_since).total_seconds()
        message = (
            f"reading plan states failed for {lasted:.0f}s: {exc}" if lasted else f"reading plan states failed: {exc}"
        )
        log.warning("%s", message)
        self._on_read_error(message)
        self.fatal = abort_for(exc)
        if self.fatal is None and lasted >= self.give_up_after:
            self.fatal = DrillAborted(
                f"VAO unreachable or failing for {lasted:.0f}s (give_up_after): {exc}", kind="unreachable"
            )

    async def aclose(self) -> None:
        if self._poller is not None and not self._poller.done():
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller


async def wait_for(
    monitor: PlanMonitor, target: PlanTarget, *, what: str, step: Callable[[FailoverPlan, int], object]
) -> tuple[FailoverPlan, datetime]:
    """The one wait routine: feed each reading to ``step`` until it returns True or the plan's timeout passes.

    ``step(plan, readings)`` returns True when done, False to keep waiting, an awaitable to run before the next
    reading (e.g. a Continue), or raises to stop. Only readings whose request left after the wait began, and after
    the last awaitable ended, count: a list read in flight when an Undo was answered still shows the halt the Undo
    ends, one that left while a Continue was on its way the halt the Continue answers.
    """
    readings, acted = 0, time.monotonic()
    try:
        async with asyncio.timeout(target.timeout_seconds):
            async for plan, observed_at, sent in monitor.watch(target.id):
                if sent < acted:
                    continue
                readings += 1
                outcome = step(plan, readings)
                if outcome is True:
                    return plan, observed_at
                if isinstance(outcome, Awaitable):
                    await outcome
                    acted = time.monotonic()
    except TimeoutError:
        last = f"; last read error: {monitor.last_error}" if monitor.last_error else ""
        raise PlanTimedOut(f"{what} not finished after {target.timeout_seconds:.0f}s{last}") from None
    raise PlanFailed(f"stopped watching before the {what} finished")  # pragma: no cover
