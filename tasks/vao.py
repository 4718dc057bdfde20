"""Prefect tasks around a drill's plans: one task run per plan (``failover · <plan>``: its precondition, Run and
wait) and one per undo (``undo · <plan>``), linked along the DAG, so a drill's run graph is its plan DAG.

The engine (``vaodrill.engine.drill``) decides; these only make each plan visible in the Prefect UI. Task runs cost
the drill no API round trip (Prefect 3 records their states from events sent in the background), so nothing
Prefect does waits between a dependency's completion and its dependent's Run POST. The precondition, the Run and
the wait are plain calls inside the plan's task (its run log shows each: checking, starting, failing over, ...):
as nested tasks they would be unconnected nodes beside the DAG. None is retried or cached by Prefect: the session
already retries what is safe to retry, and the run's journal, not a cache, guarantees that a resumed run never
sends a second Run.

Prefect shows a drill; it never decides one: when Prefect fails around a task (:meth:`Attempt.recover`), the work
runs without its task run, or keeps the result it already has, and the drill goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency
from prefect.states import Cancelled, Completed, Failed
from prefect.utilities.engine import link_state_to_task_run_result

from vaodrill.engine.runs import Phase, PlanRun
from vaodrill.engine.steps import DrillSession, WriteGate
from vaodrill.engine.targets import Cleanup, PlanTarget, StageDone, Started
from vaodrill.errors import DrillError
from vaodrill.report.text import format_duration
from vaodrill.vao.models import FailoverPlan

T = TypeVar("T")
log = logging.getLogger("vaodrill.tasks")


class Attempt(Generic[T]):
    """Work run inside a Prefect task run: whether it began, and its result once it ended, so that Prefect failing
    around it never repeats it nor loses it."""

    def __init__(self) -> None:
        self.began = False
        self.result: tuple[T] | None = None

    async def run(self, call: Awaitable[T]) -> T:
        self.began = True
        result = await call
        self.result = (result,)
        return result

    async def recover(self, error: Exception, direct: Callable[[], Awaitable[T]], what: str) -> T:
        """After ``error`` around the task run: the result if the work ended, the work without its task run if it
        never began; an error of the work itself (it began and did not end) is raised again."""
        if self.result is not None:
            log.warning("Prefect failed after %s (%s): its task run may not show the result", what, error)
            return self.result[0]
        if self.began:
            raise error
        log.warning("Prefect failed (%s): %s runs without its task run", error, what)
        return await direct()


def plan_state(run: PlanRun) -> State[Any]:
    """How a plan's failover ended, as its task run's final state; the message gives the reason (the undo is the
    drill's own task)."""
    why = " ".join((run.reason or run.phase.value).split())
    if run.phase in (Phase.FAILED_OVER, Phase.UNDOING, Phase.CLEAN):
        rto = (run.completed_at - run.started_at).total_seconds() if run.completed_at and run.started_at else None
        target = run.target.rto_target_seconds
        met = "" if rto is None or target is None else (" (target met)" if rto <= target else " (TARGET MISSED)")
        return Completed(message=f"failed over in {format_duration(rto)}, target {format_duration(target)}{met}")
    if run.phase is Phase.SKIPPED:
        return Cancelled(name="Skipped", message=why)
    if run.phase is Phase.INTERRUPTED:
        return Cancelled(name="Interrupted", message=why)
    return Failed(name=run.phase.value.capitalize(), message=why)


@task(name="failover", task_run_name="failover · {plan}", cache_policy=NO_CACHE, persist_result=False, retries=0)
async def drill_plan(plan: str, work: Callable[[], Awaitable[PlanRun]]) -> State[Any]:
    """One plan of a drill: precondition, Run, wait for the failover; a plan that never started runs nothing and
    ends Skipped with the reason."""
    return plan_state(await work())


@task(name="undo", task_run_name="undo · {plan}", cache_policy=NO_CACHE, persist_result=False, retries=0)
async def undo_plan(plan: str, work: Callable[[], Awaitable[Cleanup]]) -> Cleanup:
    """Undo the failover (halting it first if still running) and verify the plan is clean again."""
    return await work()


class QuietFinish(logging.Filter):
    """Drops Prefect's "Finished in state Completed(...)" run-log record of one drill run's own task runs: their
    state shows it, and each record costs the drill's loop CPU. Other runs' records, and failures, pass."""

    def __init__(self, flow_run_id: object) -> None:
        super().__init__()
        self.flow_run_id = str(flow_run_id)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno < logging.WARNING
            and getattr(record, "flow_run_id", None) == self.flow_run_id
            and getattr(record, "task_name", None) in DRILL_TASKS
            and str(record.msg).startswith("Finished in state")
        )


#: The names of the task runs of a drill's plans and undos.
DRILL_TASKS = frozenset({drill_plan.name, undo_plan.name})


@contextlib.contextmanager
def quiet_finish(flow_run_id: object) -> Iterator[None]:
    """While a drill runs, its plans' and undos' completed task runs log no "Finished in state" record."""
    quiet = QuietFinish(flow_run_id)
    task_logger = logging.getLogger("prefect.task_runs")
    task_logger.addFilter(quiet)
    try:
        yield
    finally:
        task_logger.removeFilter(quiet)


class PlanNode:
    """Stands for a plan's task run among its dependents' ``wait_for``: the run graph draws the edge, and a
    dependent is never held back by Prefect's reading of its dependency's state (the engine already decided)."""


class TaskSteps:
    """The engine's steps with Prefect task runs: ``plan`` one per plan, after its dependencies' (every plan gets
    one, also a plan that never started); ``clean`` one per undo, after its plan's."""

    def __init__(self, session: DrillSession) -> None:
        self.session = session
        self._nodes: dict[str, PlanNode] = {}

    async def plan(self, target: PlanTarget, work: Callable[[], Awaitable[PlanRun]]) -> PlanRun:
        attempt: Attempt[PlanRun] = Attempt()

        async def recorded() -> PlanRun:
            return await attempt.run(work())

        try:
            call = drill_plan(
                target.name,
                recorded,
                return_state=True,
                wait_for=[self._nodes[k] for k in target.after if k in self._nodes],
            )
            state = await cast(Awaitable[State[Any]], call)  # an async task's state (Prefect types it unawaited)
        except Exception as exc:  # Prefect shows the drill, it never decides it
            return await attempt.recover(exc, recorded, f"plan {target.name}")
        node = self._nodes[target.key] = PlanNode()
        link_state_to_task_run_result(state, node)
        if attempt.result is None:
            raise DrillError(f"the task run of {target.name} did not run: {state.name}: {state.message}")
        return attempt.result[0]

    async def check(self, target: PlanTarget) -> FailoverPlan:
        return await self.session.check(target)

    async def start(self, target: PlanTarget, *, run_sent_before: datetime | None = None) -> Started:
        return await self.session.start(target, run_sent_before=run_sent_before)

    async def wait_failover(self, target: PlanTarget) -> StageDone:
        return await self.session.wait_failover(target)

    async def clean(self, target: PlanTarget) -> Cleanup:
        attempt: Attempt[Cleanup] = Attempt()

        async def recorded() -> Cleanup:
            return await attempt.run(self.session.clean(target))

        node = self._nodes.get(target.key)
        try:
            result: Cleanup = await undo_plan(target.name, recorded, wait_for=[node] if node else [])
        except Exception as exc:
            return await attempt.recover(exc, recorded, f"the undo of {target.name}")
        return result


#: Seconds a write slot is leased for; the server refuses less than 60.
WRITE_LEASE_SECONDS = 60.0


def write_gate(server_url: str) -> WriteGate | None:
    """A Prefect global concurrency limit around every Run/Undo/Halt POST, when ``VAODRILL_WRITE_LIMIT`` names one.

    ``{host}`` in the name becomes the VAO server's host (``vao-writes-{host}``: one limit per VAO server, so
    drills against different servers never wait on each other). Create each limit once, e.g.
    ``prefect gcl create vao-writes-vao1.corp --limit 2``. ``strict=True``: a missing limit fails the step
    instead of silently running unthrottled. The slot's lease is the server's shortest (60 s; Prefect renews it
    while the POST lasts), so a host that dies mid-POST blocks its VAO server's writes (a recovery's Undo too)
    for a minute, not Prefect's default five.
    """
    template = os.environ.get("VAODRILL_WRITE_LIMIT")
    if not template:
        return None
    name = write_limit_name(template, urlsplit(server_url).hostname or "vao")
    return lambda: concurrency(name, occupy=1, strict=True, lease_duration=WRITE_LEASE_SECONDS)


def write_limit_name(template: str, host: str) -> str:
    """The limit's name for one VAO server: ``{host}`` in ``template`` becomes the host, in a limit's letters."""
    return template.replace("{host}", re.sub(r"[^A-Za-z0-9.-]+", "-", host))
