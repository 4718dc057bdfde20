"""The deployments of vaodrill, served from one machine by ``vaodrill serve``.

The same three are declared for ``prefect deploy`` in ``deployments/prefect.yaml`` (work pool + worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from prefect import aserve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.exceptions import TerminationSignal
from prefect.schedules import Cron

from flows.drill import dr_drill, recover_drill
from flows.failover import real_failover
from tasks.blocks import block_ref, register_block_types
from vaodrill.spec import load_spec

log = logging.getLogger("vaodrill.serve")

#: Two runs of the same drill never overlap: a second one is cancelled, not queued behind a failover.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)

#: How often ``serve`` asks for runs to start: from pressing Run in the UI to the flow run's start is at most this
#: plus the process start (Prefect's default, 10 s, made a manual drill wait up to 11 s for its first Run).
POLL_SECONDS = 1


def deployments(block: str | None = None, *, simulated: bool = False) -> list[RunnerDeployment]:
    """The served deployments; ``block`` names the 'VAO Server' block their runs use (default: VAO_* variables).

    The manual drill defaults to the demo drill only against the simulator: against a real VAO its run form asks
    for a drill file, so a Quick Run never fails over production plans with the demo's spec.
    """

    def request(drill_file: str | None) -> dict[str, Any]:
        return {"request": {**({"drill_file": drill_file} if drill_file else {}),
                            **({"vao_block": block_ref(block)} if block else {})}}

    return cast(list[RunnerDeployment], [
        dr_drill.to_deployment(
            name="app-stack-monthly",
            description="Monthly DR test of the ordering application: first Saturday, 02:00 Berlin time.",
            schedules=[Cron("0 2 1-7 * 6", day_or=False, timezone="Europe/Berlin")],
            parameters=request("deployments/drills/app-stack-monthly.yaml"),
            concurrency_limit=ONE_AT_A_TIME, tags=["dr", "scheduled"],
        ),
        dr_drill.to_deployment(
            name="manual-drill",
            description="A drill on demand (e.g. before a change window): pick the drill file in the form.",
            parameters=request("deployments/drills/demo.yaml" if simulated else None),
            concurrency_limit=ONE_AT_A_TIME, tags=["dr", "manual"],
        ),
        # No deployment concurrency limit here: Prefect gives the slot back while a run is paused for approval
        # and then crashes the paused run; the flow itself refuses to run beside another real failover.
        real_failover.to_deployment(
            name="real-failover",
            description="REAL failover (no undo) after typed approval in the UI; times out with nothing done.",
            parameters=request("deployments/drills/real-failover.yaml"),
            tags=["dr", "real"],
        ),
        recover_drill.to_deployment(
            name="recover-crashed",
            description="Undo and verify what a crashed drill run left failed over (the crashed-run automation).",
            tags=["dr", "recovery"],
        ),
    ])


def unstarted_run_name(parameters: dict[str, Any], created: datetime) -> str:
    """``<drill name> · <created>Z`` for a run that never started (its flow names the runs that do)."""
    request = parameters.get("request") or {}
    drill_file = str(request.get("drill_file") or "") if isinstance(request, dict) else ""
    try:
        name = load_spec(drill_file).name
    except Exception:  # a missing or bad drill file: the file's name is all there is to show
        name = Path(drill_file).stem or "drill (no drill file)"
    return f"{name} · {created.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


async def name_unstarted_runs(flows: set[str]) -> None:
    """Name the runs of ``flows`` cancelled before they started, e.g. by a deployment's concurrency limit.

    Prefect gives a run created from the UI or a schedule a random name and only the flow renames it, when it
    starts; a run cancelled before that would keep a name that says nothing about its drill.
    """
    events = EventFilter(event=EventNameFilter(name=["prefect.flow-run.Cancelled"]))
    async with get_events_subscriber(filter=events) as subscriber, get_client() as client:
        async for event in subscriber:
            if not any(r.role == "flow" and r.name in flows for r in event.related):
                continue
            with contextlib.suppress(Exception):  # a name is a convenience; serving goes on without it
                run = await client.read_flow_run(event.resource.prefect_object_id("prefect.flow-run"))
                if run.start_time is None:
                    await client.update_flow_run(run.id, name=unstarted_run_name(run.parameters, run.created
                                                                                  or event.occurred))


async def aserve_all(limit: int = 4, block: str | None = None, *, simulated: bool = False,
                     poll_seconds: float = POLL_SECONDS) -> None:
    """Register the block types the run forms need, then serve the deployments until cancelled."""
    await register_block_types()
    served = deployments(block, simulated=simulated)
    namer = asyncio.create_task(name_unstarted_runs({dr_drill.name, real_failover.name}))
    try:
        await aserve(*served, limit=limit, query_seconds=poll_seconds)
    finally:
        namer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await namer


def serve_all(limit: int = 4, block: str | None = None, *, simulated: bool = False,
              poll_seconds: float = POLL_SECONDS) -> None:
    """Create the deployments and run their flow runs from this process until interrupted."""
    try:
        asyncio.run(aserve_all(limit, block, simulated=simulated, poll_seconds=poll_seconds))
    except (KeyboardInterrupt, TerminationSignal) as exc:  # as prefect.serve does
        log.info("Received %s, shutting down...", type(exc).__name__)
