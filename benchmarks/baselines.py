"""Baselines for the drill benchmark: the same drill file, run without Prefect on vaodrill's client only.

``bare``: the floor a fixed-poll runner can reach on this client. It walks the DAG on asyncio with ONE plan-list
read per poll interval (at a fixed rate), posts each Run as soon as a read shows all its dependencies complete,
then undoes in reverse waves (dependents first) the same way. No precondition reads, no reports.

``sequential``: what a naive script does: one plan at a time in dependency order, a GET of that plan every
interval until it completes, then the undos one at a time.

    VAO_URL=http://127.0.0.1:9899 VAO_USERNAME=demo VAO_PASSWORD=demo python benchmarks/baselines.py bare DRILL.yaml

Only the drill keys the benchmark writes are read: ``plans[].plan`` (names, in dependency order),
``plans[].after`` and ``poll_interval`` (a number of seconds). Exit 0 when every plan failed over and was undone.
This is benchmark code, not product: no retries beyond the client's, no cleanup on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from vaodrill.engine.dag import reverse_order
from vaodrill.errors import VaoError
from vaodrill.spec.zones import to_server_wall_time
from vaodrill.vao.client import VaoClient
from vaodrill.vao.models import FailoverPlan, PlanState


class BaselineError(Exception):
    """The drill cannot go on (unknown plan, a plan halted); the message is one line."""


@dataclass(frozen=True)
class Drill:
    order: list[str]  # plan names, dependencies first
    after: dict[str, list[str]]
    interval: float


def load_drill(path: Path) -> Drill:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    after = {step["plan"]: list(step.get("after") or []) for step in data["plans"]}
    return Drill(order=list(after), after=after, interval=float(data["poll_interval"]))


def failed_over(plan: FailoverPlan) -> bool:
    if plan.state is PlanState.HALTED:
        raise BaselineError(f"{plan.name} halted: {plan.state_details}")
    return plan.state is PlanState.FAILOVER and plan.stage_complete


def undone(plan: FailoverPlan) -> bool:
    if plan.state is PlanState.HALTED:
        raise BaselineError(f"{plan.name} halted during undo: {plan.state_details}")
    return plan.state is PlanState.ENABLED and not plan.in_use


async def resolve(client: VaoClient, drill: Drill) -> dict[str, str]:
    """Plan name -> id, from one list read."""
    ids = {plan.name: plan.id for plan in await client.list_plans()}
    missing = [name for name in drill.order if name not in ids]
    if missing:
        raise BaselineError(f"plans not on the server: {', '.join(missing[:5])}")
    return {name: ids[name] for name in drill.order}


class Ticker:
    """Fixed-rate reads: the k-th read is due at start + k x interval, whatever the previous one cost."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._due = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        self._due = max(self._due + self.interval, now)  # a read later than a whole interval: go at once
        await asyncio.sleep(self._due - now)


async def bare(client: VaoClient, drill: Drill) -> None:
    ids = await resolve(client, drill)
    when = to_server_wall_time(datetime.now(UTC), "UTC")  # the simulator keeps UTC
    ticker = Ticker(drill.interval)
    started: set[str] = set()
    done: set[str] = set()

    async def read() -> dict[str, FailoverPlan]:
        await ticker.wait()
        return {plan.id: plan for plan in await client.list_plans()}

    async def start_ready() -> None:
        ready = [name for name in drill.order if name not in started and all(dep in done for dep in drill.after[name])]
        started.update(ready)
        await asyncio.gather(*(client.run_failover(ids[name], restore_point=when) for name in ready))

    await start_ready()
    while len(done) < len(drill.order):
        plans = await read()
        done.update(name for name in started - done if failed_over(plans[ids[name]]))
        await start_ready()
    for wave in reverse_order(drill.order, drill.after):
        await asyncio.gather(*(client.undo(ids[name]) for name in wave))
        pending = set(wave)
        while pending:
            plans = await read()
            pending = {name for name in pending if not undone(plans[ids[name]])}


async def _poll_one(client: VaoClient, plan_id: str, interval: float, until: Callable[[FailoverPlan], bool]) -> None:
    while True:
        await asyncio.sleep(interval)
        if until(await client.get_plan(plan_id)):
            return


async def sequential(client: VaoClient, drill: Drill) -> None:
    ids = await resolve(client, drill)
    for name in drill.order:
        await client.run_failover(ids[name], restore_point=to_server_wall_time(datetime.now(UTC), "UTC"))
        await _poll_one(client, ids[name], drill.interval, failed_over)
    for wave in reverse_order(drill.order, drill.after):
        for name in wave:
            await client.undo(ids[name])
            await _poll_one(client, ids[name], drill.interval, undone)


RUNNERS = {"bare": bare, "sequential": sequential}


async def _main(runner: str, drill_file: Path) -> None:
    drill = load_drill(drill_file)
    url, user, password = (os.environ.get(key) for key in ("VAO_URL", "VAO_USERNAME", "VAO_PASSWORD"))
    if not (url and user and password):
        raise BaselineError("set VAO_URL, VAO_USERNAME and VAO_PASSWORD")
    async with VaoClient(url, user, password) as client:
        await RUNNERS[runner](client, drill)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("runner", choices=sorted(RUNNERS))
    parser.add_argument("drill", type=Path)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args.runner, args.drill))
    except (BaselineError, VaoError, KeyError, OSError) as exc:
        print(f"error: {args.runner}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
