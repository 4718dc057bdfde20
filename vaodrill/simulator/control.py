"""The control plane under ``/_sim``: reset, scenarios, per-plan behaviour, faults, tokens, log, clock.

Namespaced away from ``/v2`` (as moto does with ``/moto-api``) so it can never shadow a real endpoint, and
unauthenticated because it is a test harness, not part of the simulated server. Bodies are validated
strictly (unknown fields are a 400): a typo in a test's setup should fail loudly, not be ignored.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .api import sim_of
from .bodies import parse_json
from .errors import BadRequest
from .scenario import PlanPatch, ScenarioError, builtin_scenarios, parse_scenario, validation_message
from .traffic import FaultSpec

router = APIRouter(prefix="/_sim", tags=["simulator control"])

M = TypeVar("M", bound=BaseModel)


def _body(raw: bytes, model: type[M]) -> M:
    data = parse_json(raw)
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise BadRequest(f"Invalid body: {validation_message(exc)}.") from None


class ResetRequest(BaseModel):
    """``POST /_sim/reset``: every field optional; omitted ones keep the current setting."""

    model_config = ConfigDict(extra="forbid")

    scenario: str | dict[str, Any] | None = Field(None, description="a built-in name or a scenario object")
    progression: Literal["time", "tick"] | None = None
    time_scale: float | None = Field(None, gt=0)


class ExpireRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh: bool = False


class AdvanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, allow_inf_nan=False)


@router.get("", summary="Simulator settings and plans")
async def summary(request: Request) -> dict[str, Any]:
    return sim_of(request).summary()


@router.post("/reset", summary="Fresh state (optionally another scenario, progression, time scale)")
async def reset(request: Request) -> dict[str, Any]:
    body = _body(await request.body(), ResetRequest)
    if isinstance(body.scenario, str) and body.scenario not in builtin_scenarios():
        raise BadRequest(
            f"Unknown built-in scenario '{body.scenario}' (built-in: {', '.join(builtin_scenarios())}); "
            "POST a scenario object, or YAML to /_sim/scenario."
        )
    sim = sim_of(request)
    try:
        sim.reset(body.scenario, progression=body.progression, time_scale=body.time_scale)
    except ScenarioError as exc:
        raise BadRequest(str(exc)) from None
    return sim.summary()


@router.post("/scenario", summary="Load a scenario from a YAML or JSON body (a reset with that scenario)")
async def load(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        scenario = parse_scenario(raw.decode("utf-8", errors="replace"), "request body")
    except ScenarioError as exc:
        raise BadRequest(str(exc)) from None
    sim = sim_of(request)
    sim.reset(scenario)
    return sim.summary()


@router.get("/plans", summary="Internal records of all plans")
async def records(request: Request) -> list[dict[str, Any]]:
    return sim_of(request).records()


@router.get("/plans/{plan_id}", summary="Internal record of one plan: settings, stages, restore points used")
async def record(plan_id: str, request: Request) -> dict[str, Any]:
    return sim_of(request).record(plan_id)


@router.patch("/plans/{plan_id}", summary="Change a plan's settings or behaviour, or force its state")
async def patch(plan_id: str, request: Request) -> dict[str, Any]:
    body = _body(await request.body(), PlanPatch)
    return sim_of(request).patch_plan(plan_id, body)


@router.get("/faults", summary="Injected faults")
async def faults(request: Request) -> list[dict[str, Any]]:
    return sim_of(request).fault_list()


@router.post("/faults", summary="Inject a fault")
async def add_fault(request: Request) -> dict[str, Any]:
    spec = _body(await request.body(), FaultSpec)
    return {"id": sim_of(request).add_fault(spec)}


@router.delete("/faults", summary="Remove all faults")
async def clear_faults(request: Request) -> Response:
    sim_of(request).clear_faults()
    return Response(status_code=204)


@router.delete("/faults/{fault_id}", summary="Remove one fault")
async def remove_fault(fault_id: str, request: Request) -> Response:
    sim_of(request).remove_fault(fault_id)
    return Response(status_code=204)


@router.post("/tokens/expire", summary="Expire every access token (and refresh tokens with refresh: true)")
async def expire_tokens(request: Request) -> dict[str, Any]:
    body = _body(await request.body(), ExpireRequest)
    return {"expired": sim_of(request).expire_tokens(refresh=body.refresh)}


@router.get("/requests", summary="The request log (?method=POST&path=<glob>)")
async def requests(request: Request, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
    return sim_of(request).requests(method=method, path=path)


@router.delete("/requests", summary="Clear the request log")
async def clear_requests(request: Request) -> Response:
    sim_of(request).clear_requests()
    return Response(status_code=204)


@router.post("/clock/advance", summary="Move the simulator clock forward")
async def advance(request: Request) -> dict[str, Any]:
    body = _body(await request.body(), AdvanceRequest)
    sim = sim_of(request)
    sim.advance_clock(body.seconds)
    return sim.summary()
