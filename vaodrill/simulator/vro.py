"""Veeam Recovery Orchestrator's REST surface (``/api/token``, ``/api/v7.2``, ``/api/v7.21``, ``/api/v13``) over
the same state machine as ``/v2``: one plan, one state, two ways to see and drive it.

A VRO plan is the v2 reading translated: ``state``/``stateName`` are the shown state word, ``resultName`` the
details; the plan list is the ``{data, pagination}`` envelope paged by ``start``/``limit``; the runtime flags
(``isRunningState``, ``isStableState``, ``totalProgress``) are served by ``/RuntimeDetails/Plans/{id}`` only, as
the public reference documents them. ``POST .../Failover`` is a ``FailoverNow`` Run of the engine (so it is
counted, logged and refused exactly as a Run); Halt, Continue and Undo are the engine's operations.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from .api import require_bearer, sim_of, token
from .bodies import parse_body
from .states import Op

VERSIONS = ("7.2", "7.21", "13")
TOKEN_PATH = "/api/token"
#: Plans per page when the client gives no ``limit`` (and the most one page holds).
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_STEP = re.compile(r"step (\d+) of (\d+)", re.IGNORECASE)


class FailoverBody(BaseModel):
    """``POST /Plans/{id}/Failover``: a restore point date (null: the latest) and whether chained plans run."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    restore_point_date: str | None = Field(None, alias="restorePointDate")
    execute_chained_plans: bool = Field(False, alias="executeChainedPlans")


def plan_view(v2: dict[str, Any], *, runtime: bool = False) -> dict[str, Any]:
    """A v2 plan as VRO shows it; ``runtime``: with the runtime flags of ``/RuntimeDetails/Plans/{id}``."""
    details = str(v2.get("planStateDetails") or "")
    view: dict[str, Any] = {
        "id": v2["id"],
        "name": v2["name"],
        "description": v2.get("description"),
        "planType": "Replica",
        "state": v2["planState"],
        "stateName": v2["planState"],
        "resultName": details,
        "enabled": v2["planState"] != "Disabled",
        "siteScopeId": v2.get("siteScopeId"),
        "targetRto": v2.get("targetRTO"),
        "targetRpo": v2.get("targetRPO"),
    }
    if runtime:
        running = details.lower().startswith("in progress")
        step = _STEP.search(details)
        progress = (
            100 * (int(step[1]) - 1) // int(step[2])
            if running and step
            else 100
            if details.lower().startswith("complete")
            else 0
        )
        view |= {
            "isRunningState": running,
            "isStableState": not running and not details.lower().startswith("halted"),
            "totalProgress": progress,
        }
    return view


def _one(data: dict[str, Any] | list[Any]) -> dict[str, Any]:
    shown = data[0] if isinstance(data, list) else data
    assert isinstance(shown, dict)
    return shown


def _count(request: Request, name: str, default: int, ceiling: int) -> int:
    raw = request.query_params.get(name, "")
    return min(int(raw), ceiling) if raw.isdigit() and len(raw) <= 9 else default


token_router = APIRouter(tags=["VRO authentication"])
token_router.add_api_route(TOKEN_PATH, token, methods=["POST"], summary="VRO login or refresh (form-encoded grant)")


def router(version: str) -> APIRouter:
    """The plan and runtime routes of one VRO API version."""
    api = APIRouter(prefix=f"/api/v{version}", dependencies=[Depends(require_bearer)], tags=[f"VRO v{version}"])

    @api.get("/Plans", summary="Plans, paged: {data, pagination}")
    async def plans(request: Request) -> dict[str, Any]:
        everything = sim_of(request).list_plans([])
        start = _count(request, "start", 0, len(everything))
        limit = _count(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        page = [plan_view(p) for p in everything[start : start + limit]]
        return {
            "data": page,
            "pagination": {"total": len(everything), "count": len(page), "start": start, "limit": limit},
        }

    @api.get("/Plans/{plan_id}", summary="One plan")
    async def plan(plan_id: str, request: Request) -> dict[str, Any]:
        return plan_view(_one(sim_of(request).read_plan(plan_id)))

    @api.get("/RuntimeDetails/Plans/{plan_id}", summary="One plan's runtime details")
    async def runtime(plan_id: str, request: Request) -> dict[str, Any]:
        return plan_view(_one(sim_of(request).read_plan(plan_id)), runtime=True)

    @api.post("/Plans/{plan_id}/Failover", summary="Run failover", response_class=Response)
    async def failover(plan_id: str, request: Request) -> Response:
        sim = sim_of(request)
        body = parse_body(await request.body(), FailoverBody, required=False)
        rule = {"date": body.restore_point_date} if body.restore_point_date is not None else None
        run = {
            "mode": "FailoverNow",
            "planlaunchOptions": {"restorePointRule": rule, "executeChainedPlans": body.execute_chained_plans},
        }
        sim.run(plan_id, json.dumps(run).encode())
        return Response(status_code=200)

    def operation(op: Op) -> Any:
        async def handler(plan_id: str, request: Request) -> Response:
            sim_of(request).operate(plan_id, op, await request.body(), path=request.url.path)
            return Response(status_code=200)

        handler.__name__ = f"vro_{op.value.lower()}"
        return handler

    for op in (Op.HALT, Op.CONTINUE, Op.UNDO, Op.ENABLE, Op.DISABLE):
        api.add_api_route(
            f"/Plans/{{plan_id}}/{op.value}", operation(op), methods=["POST"], summary=op.value, response_class=Response
        )

    @api.post("/Plans/{plan_id}/ReadinessCheck", summary="Run a readiness check", response_class=Response)
    async def readiness(plan_id: str, request: Request) -> Response:
        sim_of(request).readiness_check(plan_id)
        return Response(status_code=200)

    return api


__all__ = ["TOKEN_PATH", "VERSIONS", "plan_view", "router", "token_router"]
