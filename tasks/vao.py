"""Prefect tasks around the VAO calls of a drill: one thin task per step of ``vaodrill.steps.DrillSession``.

The engine (``vaodrill.drill``) decides; these only make each step visible in the Prefect UI. None is retried or
cached by Prefect: the session already retries what is safe to retry (reads, by the client's one retry policy),
and the run's journal, not a cache, guarantees that a resumed or retried run never sends a second Run.

Prefect shows a drill; it never decides one: when Prefect's API fails around a step (:func:`as_task`), the step
runs without its task run, or keeps the result it already has, and the drill goes on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency

from vaodrill.models import FailoverPlan
from vaodrill.steps import Cleanup, DrillSession, PlanTarget, StageDone, Started, WriteGate

T = TypeVar("T")
log = logging.getLogger("vaodrill.tasks")


def _prefect_failed(error: BaseException) -> bool:
    """An error of Prefect's own API (the session maps every VAO transport error into the VaoError tree)."""
    return isinstance(error, httpx.HTTPError)


class Attempt(Generic[T]):
    """One step (or one plan's steps) run inside a Prefect run: whether it began, and its result once it ended,
    so that a failure of Prefect's API around it never repeats it nor loses it."""

    def __init__(self) -> None:
        self.began = False
        self.result: tuple[T] | None = None

    async def run(self, call: Awaitable[T]) -> T:
        self.began = True
        result = await call
        self.result = (result,)
        return result

    async def recover(self, error: Exception, direct: Callable[[], Awaitable[T]], what: str) -> T:
        """After ``error`` around the Prefect run: the result if the work ended, the work without its Prefect run
        if Prefect's API failed before it began; anything else is raised again."""
        if not _prefect_failed(error) or (self.began and self.result is None):
            raise error
        if self.result is not None:
            log.warning("Prefect API failed after %s (%s): its run may not show the result", what, error)
            return self.result[0]
        log.warning("Prefect API failed (%s): %s runs without its Prefect run", error, what)
        return await direct()


_attempt: ContextVar[Attempt[Any] | None] = ContextVar("vaodrill_step_attempt", default=None)


async def _step(call: Awaitable[T]) -> T:
    """A task's body: the session's step, recorded in the caller's :class:`Attempt`."""
    attempt = _attempt.get()
    return await (call if attempt is None else attempt.run(call))


async def as_task(task_call: Callable[[], Awaitable[T]], direct: Callable[[], Awaitable[T]], what: str) -> T:
    """``task_call()``, the step as a Prefect task; Prefect's API failing around it is settled by
    :meth:`Attempt.recover`. Never a step twice."""
    attempt: Attempt[T] = Attempt()
    token = _attempt.set(attempt)
    try:
        return await task_call()
    except Exception as exc:
        return await attempt.recover(exc, direct, what)
    finally:
        _attempt.reset(token)


@task(name="precondition", task_run_name="precondition · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def check_precondition(session: DrillSession, target: PlanTarget) -> FailoverPlan:
    """The plan exists, is runnable (idle, not in use) and not held by an unclosed run."""
    return await _step(session.check(target))


@task(name="start-failover", task_run_name="failover · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def start_failover(session: DrillSession, target: PlanTarget, run_sent_before: datetime | None) -> Started:
    """``POST /v2/FailoverPlans/{id}/Run`` (FailoverNow), at most once per drill run."""
    return await _step(session.start(target, run_sent_before=run_sent_before))


@task(name="wait-for-failover", task_run_name="wait · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def wait_for_failover(session: DrillSession, target: PlanTarget) -> StageDone:
    """Until the failover completes, halts (halt policy applies) or the plan's timeout passes."""
    return await _step(session.wait_failover(target))


@task(name="clean-up", task_run_name="undo · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def clean_up(session: DrillSession, target: PlanTarget) -> Cleanup:
    """Undo the failover (halting it first if still running) and verify the plan is clean again."""
    return await _step(session.clean(target))


class TaskSteps:
    """The engine's four steps as Prefect tasks; a plan's tasks wait on each other (precondition → Run → wait),
    so the run graph shows each plan's order. ``flows.drill.FlowSteps`` adds ``plan``: a child flow run each."""

    def __init__(self, session: DrillSession) -> None:
        self.session = session
        self._last: dict[str, list[Any]] = {}

    async def check(self, target: PlanTarget) -> FailoverPlan:
        plan: FailoverPlan = await as_task(lambda: check_precondition(self.session, target),
                                           lambda: self.session.check(target), f"the precondition of {target.name}")
        self._last[target.key] = [plan]
        return plan

    async def start(self, target: PlanTarget, *, run_sent_before: datetime | None = None) -> Started:
        started: Started = await as_task(
            lambda: start_failover(self.session, target, run_sent_before, wait_for=self._last.get(target.key, [])),
            lambda: self.session.start(target, run_sent_before=run_sent_before), f"the Run of {target.name}")
        self._last[target.key] = [started]
        return started

    async def wait_failover(self, target: PlanTarget) -> StageDone:
        done: StageDone = await as_task(
            lambda: wait_for_failover(self.session, target, wait_for=self._last.get(target.key, [])),
            lambda: self.session.wait_failover(target), f"the wait for {target.name}")
        self._last[target.key] = [done]
        return done

    async def clean(self, target: PlanTarget) -> Cleanup:
        return await self._clean(target, [])

    async def _clean(self, target: PlanTarget, after: list[Any]) -> Cleanup:
        result: Cleanup = await as_task(lambda: clean_up(self.session, target, wait_for=after),
                                        lambda: self.session.clean(target), f"the undo of {target.name}")
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
