"""A Run in flight is never abandoned, even when an adapter lets the plan's coroutine go.

Found under load in the Prefect path: a stop while a plan's Run was in flight, and the wrapper around the plan (a
child flow run) returning on cancellation without waiting for it, let the drill build its report and clean up
before the Run's answer came: the plan was reported "skipped" and, its Run sent after all, not undone. The engine
now settles every Run in flight before it cleans up. These tests reproduce the adapter without Prefect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.conftest import Sim
from tests.test_engine import Recorder, by_name, runs_processed, settings_for, write_spec
from vaodrill.engine.drill import Drill
from vaodrill.engine.runs import Phase, Transition
from vaodrill.engine.steps import DrillSession
from vaodrill.engine.targets import PlanTarget
from vaodrill.spec.loader import load_spec


class AbandoningSteps:
    """The session's steps, with a plan grouping that, when cancelled, returns at once and leaves the plan's own
    coroutine running in the background (what a wrapper that does not wait for its body does)."""

    def __init__(self, session: DrillSession) -> None:
        self.session = session
        self.left_behind: list[asyncio.Task[Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    async def plan(self, target: PlanTarget, work: Callable[[], Awaitable[Any]]) -> Any:
        body = asyncio.ensure_future(work())
        self.left_behind.append(body)
        return await asyncio.shield(body)


async def test_a_stop_while_a_run_is_in_flight_cleans_it_up_whoever_waits(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", failover_duration=3600)
    spec = load_spec(
        write_spec(tmp_path, "  - plan: Core Network\n  - plan: Active Directory\n    after: [Core Network]\n")
    )
    made: list[AbandoningSteps] = []

    def steps(session: DrillSession) -> AbandoningSteps:
        made.append(AbandoningSteps(session))
        return made[-1]

    class StopWhenStarting(Recorder):
        def on_transition(self, transition: Transition) -> None:
            super().on_transition(transition)
            if transition.run.name == "Core Network" and transition.new is Phase.STARTING:
                engine.stop("stopped by the test", kind="signal")  # the Run is about to leave

    recorder = StopWhenStarting()
    engine = Drill(
        spec, settings_for(sim), run_id="abandoned", report_dir=tmp_path / "reports", observers=[recorder], steps=steps
    )
    report = await asyncio.wait_for(engine.run(), timeout=120)  # a generous ceiling: it takes about a second

    core = sim.plan_id("Core Network").lower()
    assert runs_processed(sim) == {core: 1}  # the Run went out, once
    assert sim.posts("Undo") == {core: 1}  # and was undone
    plans = by_name(report)
    assert plans["Core Network"].status == "interrupted" and plans["Core Network"].undo == "verified", plans
    assert plans["Active Directory"].status == "skipped"
    assert report.left_failed_over == []
    # the plan's own coroutine, let go by the adapter, ends too (it saw the answer and the stop)
    await asyncio.wait_for(asyncio.gather(*made[0].left_behind, return_exceptions=True), timeout=60)
