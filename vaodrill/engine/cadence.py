"""When :class:`~vaodrill.engine.monitor.PlanMonitor` reads the plan list next: a fixed interval or an adaptive one.

A fixed poll sees a completion on average half an interval late. The adaptive schedule (``polling: adaptive``)
reads when a completion is likely, from what the server says and what it has already shown:

* a running stage says ``In progress: step S of T``. Every reading of it is a fact about the stage's start ``a``
  and its step length ``d``, assuming the steps are of equal length (the simulator's are): step S had begun by
  the time the answer came back (``a + (S-1)d <= received``) and had not ended when the request left
  (``a + S*d >= sent``); a reading that showed the plan before this stage says ``a >= sent`` of that reading.
  These half-planes bound ``d`` to an interval, and so the completion ``a + T*d`` to a window [lo, hi];
* earlier stages of the same kind give a typical step length (their median), used within that interval.

Each watched running stage proposes a read: just after ``hi`` when the window is at most an interval wide (one
read then sees the completion at most that window late); otherwise a guess (just after the estimate's own window
when that is narrow, else its middle, so the reading halves it), but while the stage may already be done never
later than a fixed poll would read. The next read is the earliest proposal, bounded below by the floor and the
budget and above by ``MAX_GAP`` intervals. A watched plan with no running stage, a stage that does not say its
steps, or one whose readings contradict equal steps (a real server's steps differ) is read every interval.

What it buys is measured, not promised: on stages lasting 3-12 intervals in 5-12 equal steps the mean lag is
about 0.7 of a fixed poll's (tests/test_cadence.py); on stages of 1-3 intervals, or when many plans complete
within each interval, there is little to gain, and a stage of an exact small multiple of the interval can be
seen a little later than by a fixed poll (never more than an interval late while the window holds).

**The budget.** Every read, good or failed, spends one token of a bucket that holds at most ``BURST`` tokens,
starts with one and gains one per interval. So from the monitor's start to any moment t there are at most
``1 + t / interval`` reads, exactly what a fixed poll allows (60/interval per minute, counted from the start);
over any window of W seconds at most ``BURST + W / interval``. Reads are never closer than ``FLOOR`` intervals
apart, so a burst cannot hammer a server. A failed read is retried after an interval, like the fixed poll, so
``give_up_after`` and the error reporting work unchanged.

Prefect-free and clock-free: times are plain seconds (the monitor passes ``time.monotonic()``), so the property
tests in ``tests/test_cadence.py`` drive it with simulated time.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from vaodrill.spec.model import POLLING, Polling
from vaodrill.vao.models import FailoverPlan, PlanState

BURST = 3
"""Tokens the bucket holds: at most this many reads beyond the interval's rate in any window."""
FLOOR = 0.1
"""The shortest gap between two reads, in intervals."""
MAX_GAP = 2.0
"""The longest gap between two reads, in intervals (a halt or an error is seen within this)."""
PRIORS = 50
"""Completed stages remembered per kind for the typical step length."""

_STEP = re.compile(r"\bstep\s+(\d+)\s+of\s+(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Sighting:
    """One plan as one read showed it: its state and, while a stage runs, which step of how many."""

    state: str
    running: bool
    complete: bool = False
    step: int | None = None
    steps: int | None = None

    @classmethod
    def of(cls, plan: FailoverPlan) -> Sighting:
        match = _STEP.search(plan.state_details) if plan.running else None
        step, steps = (int(match[1]), int(match[2])) if match else (None, None)
        if step is not None and steps is not None and not 1 <= step <= steps:
            step = steps = None
        return cls(plan.state_raw or plan.state.value, plan.running, plan.stage_complete, step, steps)

    @property
    def halted(self) -> bool:
        return PlanState.parse(self.state) is PlanState.HALTED


class Cadence(Protocol):
    def read(self, sent: float, received: float, plans: Mapping[str, Sighting] | None) -> None:
        """A plan-list read left at ``sent`` and was answered at ``received``; ``plans`` is None if it failed."""

    def next_read(self, now: float, watched: Collection[str], *, resuming: bool = False) -> float:
        """When the next read should leave (same clock as ``read``); ``resuming``: the poller (re)starts."""


class FixedCadence:
    """One read an interval after the previous one left, so a slow answer does not stretch the period; never
    sooner than ``FLOOR`` intervals after that answer (a poller that (re)starts reads at once)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._due: float | None = None

    def read(self, sent: float, received: float, plans: Mapping[str, Sighting] | None) -> None:
        self._due = max(sent + self.interval, received + FLOOR * self.interval)

    def next_read(self, now: float, watched: Collection[str], *, resuming: bool = False) -> float:
        return now if resuming or self._due is None else self._due


@dataclass
class _Stage:
    """What the readings of one running stage say about its start ``a`` and step length ``d``."""

    state: str
    steps: int
    uppers: dict[int, float] = field(default_factory=dict)  # S -> first answer showing step S: a+(S-1)d <= r
    lowers: dict[int, float] = field(default_factory=dict)  # S -> last request showing step S: a+S*d >= s
    d_lo: float = 1e-9
    d_hi: float = math.inf

    @property
    def consistent(self) -> bool:
        return self.d_lo <= self.d_hi

    def upper(self, step: int, received: float) -> None:
        if step in self.uppers:
            return
        self.uppers[step] = received
        for low_step, sent in self.lowers.items():
            self._pair(step, received, low_step, sent)

    def lower(self, step: int, sent: float) -> None:
        self.lowers[step] = max(sent, self.lowers.get(step, -math.inf))
        for up_step, received in self.uppers.items():
            self._pair(up_step, received, step, sent)

    def _pair(self, up_step: int, received: float, low_step: int, sent: float) -> None:
        """a + (up-1)d <= received and a + low*d >= sent  =>  (up-1-low) d <= received - sent."""
        k, room = up_step - 1 - low_step, received - sent
        if k > 0:
            self.d_hi = min(self.d_hi, room / k)
        elif k < 0:
            self.d_lo = max(self.d_lo, room / k)
        elif room < 0:
            self.d_hi = -math.inf  # contradiction: never consistent again

    def completion(self, d: float) -> tuple[float, float]:
        """The range of ``a + T*d`` for this step length."""
        lo = max(sent + (self.steps - step) * d for step, sent in self.lowers.items())
        hi = min((received + (self.steps - step + 1) * d for step, received in self.uppers.items()), default=math.inf)
        return lo, hi

    def step_length(self) -> float | None:
        return (self.d_lo + self.d_hi) / 2 if self.consistent and math.isfinite(self.d_hi) else None


class AdaptiveCadence:
    """Reads when a watched stage is likely to complete, within the fixed interval's read budget (module doc)."""

    def __init__(self, interval: float, *, burst: int = BURST) -> None:
        self.interval = interval
        self.burst = burst
        self.floor = FLOOR * interval
        self.margin = interval / 100  # read this much after the latest possible completion
        self._tokens = 1.0
        self._tokens_at: float | None = None
        self._last_sent: float | None = None
        self._failed = False
        self._stages: dict[str, _Stage] = {}
        self._seen: dict[str, tuple[Sighting, float]] = {}  # plan -> last sighting, and its read's ``sent``
        self._priors: dict[str, deque[float]] = {}

    def _spend(self, sent: float) -> None:
        if self._tokens_at is not None:
            self._tokens = min(float(self.burst), self._tokens + (sent - self._tokens_at) / self.interval)
        self._tokens, self._tokens_at = self._tokens - 1, sent

    def read(self, sent: float, received: float, plans: Mapping[str, Sighting] | None) -> None:
        self._spend(sent)
        self._last_sent, self._failed = sent, plans is None
        for plan_id, now in (plans or {}).items():
            self._track(plan_id, now, sent, received)

    def _track(self, plan_id: str, now: Sighting, sent: float, received: float) -> None:
        before = self._seen.get(plan_id)
        self._seen[plan_id] = (now, sent)
        stage = self._stages.get(plan_id)
        if stage is not None and not (now.running and now.state == stage.state and now.steps == stage.steps):
            del self._stages[plan_id]
            if now.complete and now.state == stage.state:  # it ended between the last reading and this one
                stage.upper(stage.steps + 1, received)
                if (d := stage.step_length()) is not None:
                    self._priors.setdefault(stage.state, deque(maxlen=PRIORS)).append(d)
            stage = None
        if not now.running or now.step is None or now.steps is None:
            return
        if stage is None:
            stage = self._stages[plan_id] = _Stage(now.state, now.steps)
            if before is not None and not before[0].running and not before[0].halted:
                stage.lower(0, before[1])  # it had not started when that read left (a resumed halt had)
        stage.upper(now.step, received)
        stage.lower(now.step, sent)

    def proposal(self, plan_id: str) -> float | None:
        """When this plan's stage should be read next; None: nothing known, read at the interval."""
        stage = self._stages.get(plan_id)
        if stage is None or not stage.consistent or self._last_sent is None:
            return None
        lo, hi = stage.completion(stage.d_lo)[0], stage.completion(stage.d_hi)[1]
        if hi - lo <= self.interval:
            return hi + self.margin  # one read sees it at most hi - lo late: never later than a fixed poll's worst
        prior = self._priors.get(stage.state)
        if prior:  # the typical step length, within what this stage's readings allow
            first, last = stage.completion(min(max(statistics.median(prior), stage.d_lo), stage.d_hi))
        elif math.isfinite(hi):
            first, last = lo, hi
        else:
            return None
        # a narrow window: read once after it; else in its middle (that reading halves it, or sees the end)
        wanted = last + self.margin if last - first <= self.interval else (first + last) / 2
        # a guess: while the stage may already be done, never wait longer than a fixed poll would
        return min(wanted, max(lo, self._last_sent + self.interval))

    def next_read(self, now: float, watched: Collection[str], *, resuming: bool = False) -> float:
        if self._last_sent is None:
            return now
        token_at = self._last_sent + max(0.0, 1 - self._tokens) * self.interval
        if self._failed:  # retried like a fixed poll, so give_up_after is counted as it always was
            return max(self._last_sent + self.interval, token_at)
        wanted = self._last_sent + MAX_GAP * self.interval
        for plan_id in watched:  # every watched plan is waited for: read it at the interval unless predicted
            proposed = self.proposal(plan_id)
            wanted = min(wanted, self._last_sent + self.interval if proposed is None else proposed)
        return max(wanted, self._last_sent + self.floor, token_at)


def make_cadence(polling: Polling, interval: float) -> Cadence:
    if polling == "fixed":
        return FixedCadence(interval)
    if polling == "adaptive":
        return AdaptiveCadence(interval)
    raise ValueError(f"polling must be one of {', '.join(POLLING)}, not {polling!r}")


__all__ = ["BURST", "FLOOR", "MAX_GAP", "AdaptiveCadence", "Cadence", "FixedCadence", "Sighting", "make_cadence"]
