"""Run a DAG of coroutines: each node starts when all its dependencies succeeded.

A node whose dependency failed or was skipped is skipped with a reason naming that dependency, while
independent branches go on. ``max_parallel`` caps how many nodes run at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class NodeOutcome(Generic[T]):
    key: str
    value: T | None = None
    error: BaseException | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None


async def run_dag(
    order: Sequence[str],
    after: Mapping[str, Sequence[str]],
    run: Callable[[str], Awaitable[T]],
    *,
    max_parallel: int | None = None,
) -> dict[str, NodeOutcome[T]]:
    """Run ``run(key)`` for every key of ``order`` (a topological order) along ``after``."""
    outcomes: dict[str, NodeOutcome[T]] = {}
    done = {key: asyncio.Event() for key in order}
    slots = asyncio.Semaphore(max_parallel) if max_parallel else None

    async def node(key: str) -> None:
        outcome: NodeOutcome[T] = NodeOutcome(key)
        try:
            deps = list(after.get(key, ()))
            for dep in deps:
                await done[dep].wait()
            blocked = [dep for dep in deps if not outcomes[dep].ok]
            if blocked:
                outcome.skipped = f"dependency {blocked[0]!r} " + (
                    "was skipped" if outcomes[blocked[0]].skipped else "failed"
                )
                return
            if slots is None:
                outcome.value = await run(key)
            else:
                async with slots:
                    outcome.value = await run(key)
        except Exception as exc:  # a node's failure is its outcome, not the DAG's
            outcome.error = exc
        finally:
            outcomes[key] = outcome
            done[key].set()

    # return_exceptions: a cancelled DAG ends once every node has ended, not when the first node (say, one waiting
    # on a dependency) has; a node still winding down (a Run in flight) is never left behind by the cancellation
    await asyncio.gather(*(node(key) for key in order), return_exceptions=True)
    return outcomes


def reverse_order(order: Sequence[str], after: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Waves for tearing down: dependents before their dependencies (each wave may run in parallel)."""
    remaining = list(order)
    waves: list[list[str]] = []
    while remaining:
        needed = {dep for key in remaining for dep in after.get(key, ()) if dep in remaining}
        wave = [key for key in remaining if key not in needed]
        waves.append(wave)
        remaining = [key for key in remaining if key not in wave]
    return waves


__all__ = ["NodeOutcome", "reverse_order", "run_dag"]
