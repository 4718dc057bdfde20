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
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy, FlowRun, StateType
from prefect.deployments.runner import RunnerDeployment
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.exceptions import TerminationSignal
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from vaodrill.spec.loader import load_spec
from vaodrill_prefect.flows.drill import dr_drill, recover_drill
from vaodrill_prefect.flows.failover import real_failover
from vaodrill_prefect.tasks.blocks import block_ref, register_block_types

log = logging.getLogger("vaodrill.serve")

#: Two runs of the same drill never overlap: a second one is cancelled, not queued behind a failover.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)

#: How often ``serve`` asks for runs to start: from pressing Run in the UI to the flow run's start is at most this
#: plus the process start (Prefect's default, 10 s, made a manual drill wait up to 11 s for its first Run).
POLL_SECONDS = 1


def deployments(block: str | None = None, *, simulated: bool = False) -> list[RunnerDeployment]:
    """The served deployments; ``block`` names the 'VAO Server' block their runs use (default: VAO_* variables).
    Their entrypoints are module paths (``vaodrill_prefect.flows.drill:dr_drill``): they resolve from a checkout
    and from an installed vaodrill alike, whatever the working directory.

    The manual drill defaults to the demo drill only against the simulator: against a real VAO its run form asks
    for a drill file, so a Quick Run never fails over production plans with the demo's spec.
    """

    def request(drill_file: str | None) -> dict[str, Any]:
        return {
            "request": {
                **({"drill_file": drill_file} if drill_file else {}),
                **({"vao_block": block_ref(block)} if block else {}),
            }
        }

    return cast(
        list[RunnerDeployment],
        [
            dr_drill.to_deployment(
                entrypoint_type=EntrypointType.MODULE_PATH,
                name="app-stack-monthly",
                description="Monthly DR test of the ordering application: first Saturday, 02:00 Berlin time.",
                schedules=[Cron("0 2 1-7 * 6", day_or=False, timezone="Europe/Berlin")],
                parameters=request("deployments/drills/app-stack-monthly.yaml"),
                concurrency_limit=ONE_AT_A_TIME,
                tags=["dr", "scheduled"],
            ),
            dr_drill.to_deployment(
                entrypoint_type=EntrypointType.MODULE_PATH,
                name="manual-drill",
                description="A drill on demand (e.g. before a change window): pick the drill file in the form.",
                parameters=request("deployments/drills/demo.yaml" if simulated else None),
                concurrency_limit=ONE_AT_A_TIME,
                tags=["dr", "manual"],
            ),
            # No deployment concurrency limit here: Prefect gives the slot back while a run is paused for approval
            # and then crashes the paused run; the flow itself refuses to run beside another real failover.
            real_failover.to_deployment(
                entrypoint_type=EntrypointType.MODULE_PATH,
                name="real-failover",
                description="REAL failover (no undo) after typed approval in the UI; times out with nothing done.",
                parameters=request("deployments/drills/real-failover.yaml"),
                tags=["dr", "real"],
            ),
            recover_drill.to_deployment(
                entrypoint_type=EntrypointType.MODULE_PATH,
                name="recover-crashed",
                description="Undo and verify what a crashed drill run left failed over (the crashed-run automation).",
                tags=["dr", "recovery"],
            ),
        ],
    )


def unstarted_run_name(parameters: dict[str, Any], at: datetime) -> str:
    """``<drill name> · <time>Z``, as the flow names its run when it starts, for a run that has not started."""
    request = parameters.get("request") or {}
    drill_file = str(request.get("drill_file") or "") if isinstance(request, dict) else ""
    try:
        name = load_spec(drill_file).name
    except Exception:  # a missing or bad drill file: the file's name is all there is to show
        name = Path(drill_file).stem or "no drill file"
    return f"{name} · {at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


async def name_unstarted_runs(flows: set[str]) -> None:
    """Name the deployment runs of ``flows`` after their drill from their creation, not only once they start.

    Prefect gives a run created from the UI or by a schedule a random name; the flow renames it when it starts. A
    scheduled run waiting for its time, or one cancelled before it started (by a deployment's concurrency limit:
    a second run of a drill that is running), would otherwise show a name that says nothing about its drill.
    Runs created through the API are named as their creation event arrives; the scheduler's, which come with no
    event, every 10 s.
    """
    async with get_client() as client:
        await asyncio.gather(_name_on_events(client, flows), _name_scheduled(client, flows))


async def _name_on_events(client: Any, flows: set[str]) -> None:
    events = EventFilter(event=EventNameFilter(name=["prefect.flow-run.Scheduled", "prefect.flow-run.Cancelled"]))
    async with get_events_subscriber(filter=events) as subscriber:
        async for event in subscriber:
            if any(r.role == "flow" and r.name in flows for r in event.related):
                with contextlib.suppress(Exception):  # a name is a convenience; serving goes on without it
                    await _name(
                        client, await client.read_flow_run(event.resource.prefect_object_id("prefect.flow-run"))
                    )


async def _name_scheduled(client: Any, flows: set[str]) -> None:
    scheduled = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        deployment_id=FlowRunFilterDeploymentId(is_null_=False),
    )
    while True:
        with contextlib.suppress(Exception):
            for run in await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=sorted(flows))), flow_run_filter=scheduled, limit=200
            ):
                await _name(client, run)
        await asyncio.sleep(10)


async def _name(client: Any, run: FlowRun) -> None:
    name = unstarted_run_name(run.parameters, run.expected_start_time or run.created or datetime.now(UTC))
    if run.deployment_id and run.run_count == 0 and run.name != name:  # the flow names the runs that ran
        await client.update_flow_run(run.id, name=name)


async def _serve(served: list[RunnerDeployment], limit: int, poll_seconds: float) -> None:
    """Register the block types the run forms need, then serve ``served`` until cancelled."""
    await register_block_types()
    namer = asyncio.create_task(name_unstarted_runs({dr_drill.name, real_failover.name}))
    try:
        await aserve(*served, limit=limit, query_seconds=poll_seconds)
    finally:
        namer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await namer


def serve_all(
    limit: int = 4, block: str | None = None, *, simulated: bool = False, poll_seconds: float = POLL_SECONDS
) -> None:
    """Create the deployments and run their flow runs from this process until interrupted."""
    served = deployments(block, simulated=simulated)  # outside the event loop: to_deployment is sync there
    try:
        asyncio.run(_serve(served, limit, poll_seconds))
    except (KeyboardInterrupt, TerminationSignal) as exc:  # as prefect.serve does
        log.info("Received %s, shutting down...", type(exc).__name__)
