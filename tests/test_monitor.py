"""When a plan's last reading still serves (``PlanMonitor.recent``), against the simulator over loopback HTTP.

A late event loop (a large drill through Prefect) is made here by blocking the loop, as a busy one does: no poll
can leave while it is blocked, so what the rule sees is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.conftest import Sim
from tests.test_engine import settings_for
from tests.test_faults import fault
from vaodrill.engine.monitor import PlanMonitor

INTERVAL = 0.05


def waiter(monitor: PlanMonitor, plan_id: str, read: asyncio.Event) -> asyncio.Task[None]:
    """A plan's wait, as a drill's: the poller reads for it; ``read`` is set at its first reading."""

    async def wait() -> None:
        async for _ in monitor.watch(plan_id):
            read.set()

    return asyncio.create_task(wait())


async def stop(waiting: asyncio.Task[None], monitor: PlanMonitor) -> None:
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await monitor.aclose()


async def test_the_newest_list_reading_serves_while_the_poller_reads(sim: Sim) -> None:
    core, directory = sim.plan_id("Core Network"), sim.plan_id("Active Directory")
    read = asyncio.Event()
    async with settings_for(sim).client() as client:
        monitor = PlanMonitor(client, INTERVAL, give_up_after=60)
        waiting = waiter(monitor, core, read)
        await asyncio.wait_for(read.wait(), 30)  # one list read has shown every plan; the poller goes on
        time.sleep(4 * INTERVAL)  # a late loop: that reading is now older than an interval, and still the newest
        reading = monitor.recent(directory)
        assert reading is not None and reading.id.lower() == directory.lower()
        await stop(waiting, monitor)
        assert monitor.recent(directory) is None  # the poller has stopped: no newer reading is coming, read the plan


async def test_an_old_reading_does_not_serve_once_the_poll_fails(sim: Sim) -> None:
    core, directory = sim.plan_id("Core Network"), sim.plan_id("Active Directory")
    failed = asyncio.Event()

    def note(message: str | None) -> None:
        if message:
            failed.set()

    async with settings_for(sim).client() as client:
        monitor = PlanMonitor(client, INTERVAL, give_up_after=60, on_read_error=note)
        monitor.remember(await client.list_plans(), time.monotonic())
        fault(sim, method="GET", path="/v2/FailoverPlans", status=500)
        waiting = waiter(monitor, core, asyncio.Event())  # the poller reads for Core Network, and fails
        await asyncio.wait_for(failed.wait(), 30)
        time.sleep(2 * INTERVAL)
        assert monitor.recent(directory) is None  # the newest reading is old, and no newer one is sure to come
        await stop(waiting, monitor)
