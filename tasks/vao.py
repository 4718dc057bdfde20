"""Prefect tasks around the VAO calls of a drill: one thin task per step of ``vaodrill.steps.DrillSession``.

The engine (``vaodrill.drill``) decides; these only make each step visible in the Prefect UI. None is retried or
cached by Prefect: the session already retries what is safe to retry (reads, by the client's one retry policy),
and the run's journal, not a cache, guarantees that a resumed or retried run never sends a second Run.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency

from vaodrill.models import FailoverPlan
from vaodrill.steps import Cleanup, DrillSession, PlanTarget, StageDone, Started, WriteGate


@task(name="precondition", task_run_name="precondition · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def check_precondition(session: DrillSession, target: PlanTarget) -> FailoverPlan:
    """The plan exists, is runnable (idle, not in use) and not held by an unclosed run."""
    return await session.check(target)


@task(name="start-failover", task_run_name="failover · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def start_failover(session: DrillSession, target: PlanTarget, run_sent_before: datetime | None) -> Started:
    """``POST /v2/FailoverPlans/{id}/Run`` (FailoverNow), at most once per drill run."""
    return await session.start(target, run_sent_before=run_sent_before)


@task(name="wait-for-failover", task_run_name="wait · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def wait_for_failover(session: DrillSession, target: PlanTarget) -> StageDone:
    """Until the failover completes, halts (halt policy applies) or the plan's timeout passes."""
    return await session.wait_failover(target)


@task(name="clean-up", task_run_name="undo · {target.name}",
      cache_policy=NO_CACHE, persist_result=False, retries=0)
async def clean_up(session: DrillSession, target: PlanTarget) -> Cleanup:
    """Undo the failover (halting it first if still running) and verify the plan is clean again."""
    return await session.clean(target)


class TaskSteps:
    """The engine's four steps as Prefect tasks; a plan's tasks wait on each other (precondition → Run → wait),
    so the run graph shows each plan's order. ``flows.drill.FlowSteps`` adds ``plan``: a child flow run each."""

    def __init__(self, session: DrillSession) -> None:
        self.session = session
        self._last: dict[str, list[Any]] = {}

    async def check(self, target: PlanTarget) -> FailoverPlan:
        plan: FailoverPlan = await check_precondition(self.session, target)
        self._last[target.key] = [plan]
        return plan

    async def start(self, target: PlanTarget, *, run_sent_before: datetime | None = None) -> Started:
        started: Started = await start_failover(self.session, target, run_sent_before,
                                                wait_for=self._last.get(target.key, []))
        self._last[target.key] = [started]
        return started

    async def wait_failover(self, target: PlanTarget) -> StageDone:
        done: StageDone = await wait_for_failover(self.session, target, wait_for=self._last.get(target.key, []))
        self._last[target.key] = [done]
        return done

    async def clean(self, target: PlanTarget) -> Cleanup:
        result: Cleanup = await clean_up(self.session, target)
        return result


def write_gate(server_url: str) -> WriteGate | None:
    """A Prefect global concurrency limit around every Run/Undo/Halt POST, when ``VAODRILL_WRITE_LIMIT`` names one.

    ``{host}`` in the name becomes the VAO server's host (``vao-writes-{host}``: one limit per VAO server, so
    drills against different servers never wait on each other). Create each limit once, e.g.
    ``prefect gcl create vao-writes-vao1.corp --limit 2``. ``strict=True``: a missing limit fails the step
    instead of silently running unthrottled.
    """
    template = os.environ.get("VAODRILL_WRITE_LIMIT")
    if not template:
        return None
    host = urlsplit(server_url).hostname or "vao"
    name = template.replace("{host}", re.sub(r"[^A-Za-z0-9.-]+", "-", host))
    return lambda: concurrency(name, occupy=1, strict=True)
