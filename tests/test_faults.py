"""The fault matrix: one drill per way a VAO server can misbehave, asserted from the simulator's request log.

Each case checks: at most one processed Run per plan, the report's statuses against the simulator's plan
states, which plans are left failed over (and that ``recover`` then cleans them), and how long giving up took.
The drill is two plans (Core Network, then Active Directory) so each case takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sim
from tests.test_engine import Recorder, assert_all_clean, by_name, runs_processed, settings_for, write_spec
from vaodrill.engine.drill import Drill
from vaodrill.engine.recovery import recover
from vaodrill.engine.runs import Observer, Phase, Transition
from vaodrill.journal import open_journals
from vaodrill.report.model import DrillReport
from vaodrill.spec.loader import load_spec
from vaodrill.vao.retry import RetryPolicy

PLANS = "  - plan: Core Network\n  - plan: Active Directory\n    after: [Core Network]\n"


def fault(sim: Sim, **spec: Any) -> None:
    sim.control.post("/_sim/faults", json=spec).raise_for_status()


class When(Observer):
    """Runs ``action`` once, at the first transition of ``plan`` into ``phase`` (a fault injected mid-drill)."""

    def __init__(self, plan: str, phase: Phase, action: Callable[[], None]) -> None:
        self.plan, self.phase, self.action = plan, phase, action
        self.at: float | None = None

    def on_transition(self, t: Transition) -> None:
        if self.at is None and t.run.name == self.plan and t.new is self.phase:
            self.at = time.monotonic()
            self.action()


async def run(
    sim: Sim, tmp_path: Path, *observers: Observer, plans: str = PLANS, **top: object
) -> tuple[DrillReport, Drill, float]:
    recorder = Recorder()
    engine = Drill(
        load_spec(write_spec(tmp_path, plans, **top)),
        settings_for(sim),
        run_id="fault",
        report_dir=tmp_path / "reports",
        observers=[recorder, *observers],
    )
    started = time.monotonic()
    report = await asyncio.wait_for(engine.run(), 120)
    return report, engine, time.monotonic() - started


def token_requests(sim: Sim) -> int:
    return len(sim.requests(method="POST", path="/v2/Token")) + len(sim.requests(method="POST", path="/Token"))


async def recover_after(sim: Sim, engine: Drill) -> None:
    sim.control.delete("/_sim/faults").raise_for_status()
    (journal,) = open_journals(engine.journal.path.parent)
    recovery = await recover(journal, settings_for(sim))
    assert recovery.clean, [(p.name, p.outcome) for p in recovery.plans]
    assert_all_clean(sim)


# -- the server stops accepting us ------------------------------------------------------------------------------


class FirstTime(Observer):
    """The monotonic time of the first transition into ``phase``."""

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.at: float | None = None

    def on_transition(self, t: Transition) -> None:
        if self.at is None and t.new is self.phase:
            self.at = time.monotonic()


@pytest.mark.parametrize("status", [401, 403])
async def test_credentials_refused_mid_drill_stop_within_two_polls(sim: Sim, tmp_path: Path, status: int) -> None:
    poll = 1.0
    sim.patch("Core Network", failover_duration=3600)
    when = When("Core Network", Phase.FAILING_OVER, lambda: fault(sim, method="*", path="/v2/*", status=status))
    interrupted = FirstTime(Phase.INTERRUPTED)
    report, engine, _ = await run(sim, tmp_path, when, interrupted, poll_interval=f"{poll}s")
    assert report.stopped == "auth" and "authentication failed" in (report.reason or "")
    assert when.at is not None and interrupted.at is not None
    assert interrupted.at - when.at <= 2 * poll + 0.5
    core = by_name(report)["Core Network"]
    assert core.status == "interrupted" and core.failover_started_at is not None
    assert core.undo == "failed"  # the cleanup was attempted, and could not authenticate
    assert by_name(report)["Active Directory"].status == "skipped"
    assert token_requests(sim) <= 3  # one login, one refresh or re-login at most: no login per poll
    assert runs_processed(sim) == {sim.plan_id("Core Network").lower(): 1}
    await recover_after(sim, engine)


async def test_every_read_failing_gives_up_after_give_up_after(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", failover_duration=3600)
    when = When(
        "Core Network", Phase.FAILING_OVER, lambda: fault(sim, method="GET", path="/v2/FailoverPlans*", status=500)
    )
    interrupted = FirstTime(Phase.INTERRUPTED)
    report, engine, _ = await run(sim, tmp_path, when, interrupted, give_up_after="10s", poll_interval="0.2s")
    assert report.stopped == "unreachable" and "give_up_after" in (report.reason or "")
    assert when.at is not None and interrupted.at is not None
    # give_up_after, plus at most one read's own retries (the client's retry policy: its waits at their longest) before
    # it is seen, plus a generous ceiling for the poll and the scheduling of a loaded machine
    policy = RetryPolicy()
    one_read = sum(
        min(policy.max_delay, policy.backoff * 2**i) * (1 + policy.jitter) for i in range(policy.attempts - 1)
    )
    assert 10 <= interrupted.at - when.at <= 10 + one_read + 6, (interrupted.at - when.at, one_read)
    assert by_name(report)["Core Network"].undo == "failed"
    assert engine.journal.read().is_open
    await recover_after(sim, engine)


# -- answers lost, delayed or refused for now ------------------------------------------------------------------


async def test_a_plan_disabled_after_the_reading_its_precondition_used_is_refused_by_vao_and_never_started(
    sim: Sim, tmp_path: Path
) -> None:
    """The precondition may use a reading taken before a change (``PlanMonitor.recent``): VAO refuses the Run the
    plan's state no longer allows, and the refusal is no start: nothing to undo, dependents skipped."""
    disable = When("Active Directory", Phase.CHECKING, lambda: sim.patch("Active Directory", state="Disabled"))
    report, engine, _ = await run(sim, tmp_path, disable, poll_interval="5s")
    directory = by_name(report)["Active Directory"]
    reason = directory.reason or ""
    assert directory.status == "failed" and "Run refused" in reason and "Disabled" in reason, reason
    assert directory.failover_started_at is None and directory.undo == "not_needed"
    assert directory.id.lower() not in sim.posts("Undo")
    assert runs_processed(sim) == {sim.plan_id("Core Network").lower(): 1}
    assert report.left_failed_over == [] and not engine.journal.read().is_open


async def test_a_lost_run_answer_counts_as_started_from_the_post(sim: Sim, tmp_path: Path) -> None:
    fault(sim, method="POST", path="/v2/FailoverPlans/*/Run", drop="after", count=1)
    report, _, _ = await run(sim, tmp_path)
    core = by_name(report)["Core Network"]
    assert report.verdict == "passed", report.reason
    assert core.failover_started_at is not None and core.rto_seconds is not None
    assert "lost" in (core.reason or "") or core.reason is None
    assert runs_processed(sim) == {sim.plan_id(n).lower(): 1 for n in ("Core Network", "Active Directory")}
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Run")) == 2  # never resent
    assert_all_clean(sim)


async def test_a_run_refused_with_retry_after_is_sent_again_after_the_delay(sim: Sim, tmp_path: Path) -> None:
    fault(sim, method="POST", path="/v2/FailoverPlans/*/Run", retry_after=1, count=1)
    report, _, _ = await run(sim, tmp_path)
    assert report.verdict == "passed", report.reason
    core = sim.plan_id("Core Network").lower()
    statuses = [
        e["status"]
        for e in sim.requests(method="POST", path="/v2/FailoverPlans/*/Run")
        if e["path"].split("/")[3].lower() == core
    ]
    assert statuses == [429, 200]
    assert runs_processed(sim) == {sim.plan_id(n).lower(): 1 for n in ("Core Network", "Active Directory")}


@pytest.mark.parametrize(
    "case",
    [
        {"method": "GET", "path": "/v2/FailoverPlans*", "status": 503, "count": 5},
        {"path": "/v2/*", "retry_after": 1, "rate": 0.1, "seed": 42},
        {"method": "*", "path": "/v2/FailoverPlans*", "latency": 0.2},
    ],
    ids=["503-burst-on-reads", "429-at-a-rate", "latency"],
)
async def test_transient_trouble_does_not_change_the_outcome(sim: Sim, tmp_path: Path, case: dict[str, Any]) -> None:
    fault(sim, **case)
    report, engine, _ = await run(sim, tmp_path)
    assert report.verdict == "passed", report.reason
    assert set(runs_processed(sim).values()) == {1}
    assert_all_clean(sim)
    assert not engine.journal.read().is_open


async def test_a_dropped_connection_before_an_undo_is_resent(sim: Sim, tmp_path: Path) -> None:
    fault(sim, method="POST", path="/v2/FailoverPlans/*/Undo", drop="before", count=1)
    report, _, _ = await run(sim, tmp_path)
    assert report.verdict == "passed", report.reason
    assert {p.undo for p in report.plans} == {"verified"}
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Undo")) == 3  # one dropped, two processed
    assert_all_clean(sim)


async def test_token_and_refresh_token_expiry_mid_drill(sim: Sim, tmp_path: Path) -> None:
    def expire() -> None:
        sim.control.post("/_sim/tokens/expire", json={"refresh": True}).raise_for_status()

    when = When("Core Network", Phase.FAILING_OVER, expire)
    report, _, _ = await run(sim, tmp_path, when)
    assert report.verdict == "passed", report.reason
    assert 2 <= token_requests(sim) <= 3


# -- the plan itself misbehaves ------------------------------------------------------------------------------------


async def test_a_halt_is_reported_and_undone(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", halt_at_step=2)
    report, _, _ = await run(sim, tmp_path)
    assert by_name(report)["Core Network"].status == "halted"
    assert by_name(report)["Active Directory"].status == "skipped"
    assert report.left_failed_over == [] and len(runs_processed(sim)) == 1
    assert_all_clean(sim)


async def test_a_stage_that_never_finishes_times_out(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", never_finish=True)
    started = time.monotonic()
    report, _, _ = await run(sim, tmp_path, plans=PLANS.replace("Core Network\n", "Core Network\n    timeout: 1s\n", 1))
    assert by_name(report)["Core Network"].status == "timed_out"
    assert by_name(report)["Core Network"].undo == "verified"
    assert time.monotonic() - started < 20
    assert_all_clean(sim)


async def test_an_undo_that_fails_is_left_failed_over_loudly(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Active Directory", fail_undo=True)
    report, engine, _ = await run(sim, tmp_path)
    assert [p.plan for p in report.left_failed_over] == ["Active Directory"]
    assert by_name(report)["Active Directory"].status == "passed"
    assert by_name(report)["Active Directory"].undo == "failed"
    assert engine.journal.read().may_be_failed_over() == ["Active Directory"]
