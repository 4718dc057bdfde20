"""Prefect tasks around the VAO calls of a drill: thin wrappers of ``vaodrill.drill.DrillSession``.

Retry policies, by what a repeat could do to production:
- precondition: a read; retried on transient errors (connection, 429, 5xx).
- start_failover: NEVER retried by Prefect. The client resends only what provably never reached VAO, and the
  task is cached per drill run and plan, so a flow retry or a rerun of the same run id gets the recorded start
  back instead of posting Run again. The session also re-reads the plan and never posts to one failing over.
- wait_for_failover: no retries; the wait routine itself rides out failed reads until the plan's timeout.
- clean_up: retried on transient errors; it re-reads the plan first, so a retry never posts a second Undo.
Every step is cached per (run id, plan, step) so a retried flow resumes instead of repeating side effects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.concurrency.asyncio import concurrency
from prefect.context import TaskRunContext

from vaodrill.drill import Cleanup, DrillSession, PlanTarget, StageDone, Started
from vaodrill.errors import VaoConnectionError, VaoRateLimited, VaoServerError
from vaodrill.models import FailoverPlan

CACHE_FOR = timedelta(days=30)


async def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only errors that say "try again later", never a refusal or a drill verdict."""
    try:
        await state.aresult()
    except (VaoConnectionError, VaoRateLimited, VaoServerError):
        return True
    except Exception:
        return False
    return False


def once_per_run(step: str) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """Cache key: one result per drill run, plan and step; a retried or rerun drill reuses it."""

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        return f"vaodrill/{parameters['run_id']}/{parameters['target'].id}/{step}"

    return key


@task(name="precondition", task_run_name="precondition · {target.name}", cache_key_fn=once_per_run("precondition"),
      cache_expiration=CACHE_FOR, retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient)
async def check_precondition(session: DrillSession, target: PlanTarget, run_id: str) -> FailoverPlan:
    """The plan exists, is Enabled and is not in use: otherwise no Run is ever sent to it."""
    return await session.precondition(target)


@task(name="start-failover", task_run_name="failover · {target.name}", cache_key_fn=once_per_run("run"),
      cache_expiration=CACHE_FOR, retries=0)
async def start_failover(session: DrillSession, target: PlanTarget, run_id: str) -> Started:
    """``POST /v2/FailoverPlans/{id}/Run`` (FailoverNow) at most once per drill run."""
    return await session.start_failover(target)


@task(name="wait-for-failover", task_run_name="wait · {target.name}", cache_key_fn=once_per_run("wait"),
      cache_expiration=CACHE_FOR, retries=0)
async def wait_for_failover(session: DrillSession, target: PlanTarget, run_id: str, started: Started) -> StageDone:
    """Until the failover completes, halts (halt policy applies) or the plan's timeout passes."""
    return await session.wait_failover(target)


@task(name="clean-up", task_run_name="undo · {target.name}", cache_key_fn=once_per_run("undo"),
      cache_expiration=CACHE_FOR, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=transient)
async def clean_up(session: DrillSession, target: PlanTarget, run_id: str, started: bool) -> Cleanup:
    """Undo the failover and verify the plan is Enabled again."""
    return await session.clean_up(target, started=started)


def write_gate() -> Callable[[], AbstractAsyncContextManager[object]] | None:
    """A Prefect global concurrency limit around every Run/Undo/Halt POST, when ``VAODRILL_WRITE_LIMIT`` names one.

    Create it once per VAO server: ``prefect gcl create vao-writes --limit 2``. ``strict=True``: a missing
    limit fails the step instead of silently running unthrottled.
    """
    name = os.environ.get("VAODRILL_WRITE_LIMIT")
    if not name:
        return None
    return lambda: concurrency(name, occupy=1, strict=True)
