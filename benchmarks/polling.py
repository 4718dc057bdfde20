"""Benchmark: status reads while N plans fail over, shared list polling vs one GET per plan.

Runs both strategies side by side in one process against the simulator over loopback HTTP and prints the
number of status requests and the wall time for each. Usage: python benchmarks/polling.py [N ...]
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

from vaodrill.engine.monitor import PlanMonitor
from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer
from vaodrill.vao.client import VaoClient
from vaodrill.vao.models import PlanState

INTERVAL = 0.05


def scenario(n: int) -> dict[str, object]:
    return {
        "name": "bench",
        "plans": [{"name": f"Plan {i:03d}", "state": "Enabled", "failover_duration": 60, "steps": 4} for i in range(n)],
    }


async def one_run(url: str, n: int, shared: bool) -> tuple[int, float]:
    async with httpx.AsyncClient(base_url=url) as control, VaoClient(url, "demo", "demo") as client:
        await control.post("/_sim/reset", json={"scenario": scenario(n), "time_scale": 60})
        plans = await client.list_plans()
        for plan in plans:
            await client.run_failover(plan.id)
        await control.delete("/_sim/requests")
        started = time.perf_counter()
        if shared:
            monitor = PlanMonitor(client, INTERVAL, give_up_after=60)

            async def wait(plan_id: str) -> None:
                async for plan, _, _ in monitor.watch(plan_id):
                    if plan.state is PlanState.FAILOVER and plan.stage_complete:
                        return

            await asyncio.gather(*(wait(p.id) for p in plans))
            await monitor.aclose()
        else:

            async def wait(plan_id: str) -> None:
                while True:
                    plan = await client.get_plan(plan_id)
                    if plan.state is PlanState.FAILOVER and plan.stage_complete:
                        return
                    await asyncio.sleep(INTERVAL)

            await asyncio.gather(*(wait(p.id) for p in plans))
        elapsed = time.perf_counter() - started
        reads = len((await control.get("/_sim/requests", params={"method": "GET"})).json())
        return reads, elapsed


async def main(sizes: list[int]) -> None:
    with BackgroundServer(create_app("demo")) as server:
        print(f"{'plans':>6} | {'shared: reads':>14} {'time':>7} | {'per plan: reads':>16} {'time':>7}")
        for n in sizes:
            shared_reads, shared_time = await one_run(server.url, n, shared=True)
            naive_reads, naive_time = await one_run(server.url, n, shared=False)
            print(f"{n:>6} | {shared_reads:>14} {shared_time:>6.2f}s | {naive_reads:>16} {naive_time:>6.2f}s")


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [6, 24, 96]))
