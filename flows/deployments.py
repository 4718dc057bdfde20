"""The deployments of vaodrill, served from one machine by ``vaodrill serve``.

The same three are declared for ``prefect deploy`` in ``deployments/prefect.yaml`` (work pool + worker).
"""

from __future__ import annotations

from typing import Any, cast

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.drill import dr_drill, recover_drill
from flows.failover import real_failover
from tasks.blocks import block_ref

#: Two runs of the same drill never overlap: a second one is cancelled, not queued behind a failover.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


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


def serve_all(limit: int = 4, block: str | None = None, *, simulated: bool = False) -> None:
    """Create the deployments and run their flow runs from this process until interrupted."""
    serve(*deployments(block, simulated=simulated), limit=limit)
