"""The adaptive read schedule (vaodrill.engine.cadence): its budget, its lag, and a whole drill on it over HTTP.

The property tests drive the cadence with simulated time and a model of the simulator's stages (steps of equal
length, ``In progress: step S of T``); the drill test counts plan-list reads in the simulator's request log.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Sim
from tests.test_engine import assert_all_clean, drill, runs_processed
from vaodrill.engine.cadence import BURST, FLOOR, AdaptiveCadence, Cadence, FixedCadence, Sighting, make_cadence
from vaodrill.vao.models import FailoverPlan

IDLE = Sighting("Enabled", running=False)


def shown(start: float, step_length: float, steps: int, at: float, kind: str = "Failover") -> Sighting:
    """A stage of ``steps`` equal steps starting at ``start``, as a read at ``at`` shows it."""
    if at < start:
        return IDLE
    if at < start + steps * step_length:
        return Sighting(kind, True, step=min(steps, math.floor((at - start) / step_length) + 1), steps=steps)
    return Sighting(kind, False, complete=True)


def lag(cadence: Cadence, start: float, step_length: float, steps: int, read_time: float = 0.01) -> float:
    """How long after the stage's end a read first shows it complete (the cadence reads from time 0)."""
    now = 0.0
    while True:
        now = max(now, cadence.next_read(now, ["p"]))
        at = now + read_time / 2
        sighting = shown(start, step_length, steps, at)
        cadence.read(now, now + read_time, {"p": sighting})
        if sighting.complete:
            return at - (start + steps * step_length)
        now += read_time


# -- the budget ------------------------------------------------------------------------------------------------

sightings = st.one_of(
    st.just(IDLE),
    st.builds(
        lambda s, extra: Sighting("Failover", True, step=s, steps=s + extra), st.integers(1, 20), st.integers(0, 20)
    ),
    st.builds(lambda s: Sighting("UndoFailover", True, step=s, steps=5), st.integers(1, 5)),
    st.just(Sighting("Failover", False, complete=True)),
    st.just(Sighting("Halted", False)),
    st.just(Sighting("Failover", True)),  # running, steps not said
)
reads = st.lists(
    st.tuples(
        st.one_of(st.none(), st.dictionaries(st.sampled_from("abc"), sightings, max_size=3)),  # None: the read failed
        st.floats(0, 2),  # how long the read took, in intervals
        st.floats(0, 3),  # how late the poller woke, in intervals
        st.sets(st.sampled_from("abcd")),  # the plans waited for
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(interval=st.floats(0.05, 30), reads=reads)
def test_the_budget_holds_for_any_readings(
    interval: float, reads: list[tuple[dict[str, Sighting] | None, float, float, set[str]]]
) -> None:
    cadence = AdaptiveCadence(interval)
    now, sent = 0.0, []
    for plans, took, late, watched in reads:
        now = max(now, cadence.next_read(now, watched)) + late * interval
        sent.append(now)
        now += took * interval
        cadence.read(sent[-1], now, plans)
    slack = 1e-9 * (1 + sent[-1])
    for i, j in itertools.combinations_with_replacement(range(len(sent)), 2):
        window = sent[j] - sent[i]
        assert j - i + 1 <= BURST + window / interval + slack  # any window: at most the burst beyond the rate
        assert j + 1 <= 1 + (sent[j] - sent[0]) / interval + slack  # from the start: exactly a fixed poll's budget
    assert all(b - a >= FLOOR * interval - slack for a, b in itertools.pairwise(sent))


@given(interval=st.floats(0.05, 30), plans=st.sets(st.sampled_from("abcd")))
def test_no_read_is_later_than_two_intervals_and_a_failed_one_is_retried_after_one(
    interval: float, plans: set[str]
) -> None:
    cadence = AdaptiveCadence(interval)
    cadence.read(0.0, 0.1 * interval, {p: Sighting("Failover", True, step=1, steps=1000) for p in plans})
    assert cadence.next_read(0.1 * interval, plans) <= 2 * interval
    cadence.read(2 * interval, 2.1 * interval, None)
    assert cadence.next_read(2.1 * interval, plans) == pytest.approx(3 * interval)


# -- the lag -----------------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(interval=st.floats(0.1, 10), seed=st.integers(0, 2**32))
def test_stages_of_equal_steps_are_seen_sooner_than_by_a_fixed_poll(interval: float, seed: int) -> None:
    """Twelve stages lasting 3-12 intervals in 5-12 equal steps, each started at 16 phases against the reads: on
    average the adaptive schedule sees them complete sooner than a fixed poll (whose lag averages half an
    interval). Not for every single shape: a stage of exactly 3 intervals in 5 steps is seen 0.55 intervals late
    against 0.48 (the fixed poll's reads fall just after its ends), so the shapes are drawn, not shrunk."""
    rng = random.Random(seed)
    phases = [(k + 0.5) / 16 * interval for k in range(16)]
    adaptive, fixed = [], []
    for _ in range(12):
        length, steps = rng.uniform(3, 12), rng.randint(5, 12)
        step_length = length * interval / steps
        adaptive += [lag(AdaptiveCadence(interval), phase, step_length, steps, interval / 100) for phase in phases]
        fixed += [lag(FixedCadence(interval), phase, step_length, steps, interval / 100) for phase in phases]
    assert statistics.mean(fixed) == pytest.approx(interval / 2, rel=0.1)
    assert statistics.mean(adaptive) < 0.9 * statistics.mean(fixed)
    assert max(adaptive) < 1.05 * interval  # never much later than a fixed poll's worst


# -- reading the server --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("details", "state", "expected"),
    [
        ("In progress: step 3 of 5", "Failover", (True, 3, 5)),
        ("in progress: Step 12 of 40 (Power on VMs)", "UndoFailover", (True, 12, 40)),
        ("In progress", "Failover", (True, None, None)),
        ("In progress: step 6 of 5", "Failover", (True, None, None)),
        ("Halted at step 2 of 5: step failed", "Halted", (False, None, None)),
        ("Complete, no errors, no warnings", "Failover", (False, None, None)),
    ],
)
def test_sighting_reads_step_s_of_t(details: str, state: str, expected: tuple[bool, int | None, int | None]) -> None:
    plan = FailoverPlan.model_validate(
        {
            "id": "1",
            "name": "P",
            "planState": state,
            "planStateDetails": details,
            "planInUse": not details.startswith("Complete"),
        }
    )
    sighting = Sighting.of(plan)
    assert (sighting.running, sighting.step, sighting.steps) == expected


def test_an_unknown_polling_is_refused() -> None:
    with pytest.raises(ValueError, match="polling must be one of fixed, adaptive"):
        make_cadence("fast", 1.0)  # type: ignore[arg-type]  # the point: a value the type does not allow


# -- a whole drill over HTTP -------------------------------------------------------------------------------------------

SCENARIO = {
    "name": "cadence",
    "timezone": "UTC",
    "defaults": {"steps": 8},
    "plans": [
        {"name": name, "failover_duration": failover, "undo_duration": undo}
        for name, failover, undo in (("Core", 150, 80), ("Database", 220, 100), ("App", 120, 60), ("Files", 260, 90))
    ],
}
PLANS = """
  - plan: Core
  - plan: Database
    after: [Core]
  - plan: App
    after: [Database]
  - plan: Files
"""
INTERVAL = 0.2


def list_reads(sim: Sim) -> list[float]:
    return sorted(
        datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
        for e in sim.requests(method="GET", path="/v2/FailoverPlans")
    )


async def test_an_adaptive_drill_passes_within_the_fixed_read_budget(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    sim = sim_factory(SCENARIO, time_scale=100)  # failovers of 1.2-2.6 s in 8 steps, undos of 0.6-1 s
    report, _, engine = await drill(sim, tmp_path, PLANS, poll_interval=f"{INTERVAL}s", polling="adaptive")
    assert report.verdict == "passed", report.reason
    assert engine.session is not None and isinstance(engine.session.monitor.cadence, AdaptiveCadence)
    assert set(runs_processed(sim).values()) == {1} and len(runs_processed(sim)) == 4
    assert_all_clean(sim)
    # the drill's first read resolves the plans; every later one is the monitor's, counted where the server saw it
    reads = list_reads(sim)[1:]
    jitter = 0.1  # between the monitor's clock and the server's log (a loaded server logs a read late)
    for i, j in itertools.combinations(range(len(reads)), 2):
        assert j - i + 1 <= BURST + (reads[j] - reads[i] + jitter) / INTERVAL, (i, j)
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert min(gaps) < 0.9 * INTERVAL  # it did read sooner than the interval when an end was near ...
    assert len(reads) <= 1 + (reads[-1] - reads[0] + jitter) / INTERVAL  # ... and paid for it with later reads


async def test_the_spec_key_chooses_the_adaptive_cadence(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory(SCENARIO, time_scale=100)
    report, _, engine = await drill(sim, tmp_path, "  - plan: Core\n", polling="adaptive")
    assert report.verdict == "passed", report.reason
    assert engine.session is not None and isinstance(engine.session.monitor.cadence, AdaptiveCadence)
