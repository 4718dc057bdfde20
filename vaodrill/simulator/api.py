"""The VAO REST API v2 surface: thin routes that parse HTTP and call the :class:`Simulator`.

Every route is a few lines on purpose: behaviour lives in the engine, where one table decides legality, so
these handlers cannot drift from it. Successful operations answer 200 with an *empty* body (contract 4.3).
Continue is routed at both ``.../Continue`` and ``.../Run/Continue``; the engine answers 404 on the one a
plan's profile does not serve.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from .engine import Simulator
from .states import Op
from .tokens import TokenError


def sim_of(request: Request) -> Simulator:
    """The simulator behind this app (``app.state.sim``): routes never reach for module state."""
    sim: Simulator = request.app.state.sim
    return sim


async def require_bearer(request: Request) -> None:
    """Every ``/v2`` resource except Token needs ``Authorization: Bearer <live token>``."""
    sim_of(request).authorize(request.headers.get("authorization"))


token_router = APIRouter(tags=["authentication"])
v2 = APIRouter(prefix="/v2", dependencies=[Depends(require_bearer)], tags=["failover plans"])


@token_router.post("/v2/Token", summary="Log in or refresh (form-encoded OAuth grant)")
@token_router.post("/Token", include_in_schema=False)
async def token(request: Request) -> JSONResponse:
    """Grants ``password``, ``refresh_token`` and ``client_credentials`` (see :mod:`.tokens`)."""
    raw = await request.body()
    form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    try:
        payload = sim_of(request).issue_token(form)
    except TokenError as exc:
        return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
    return JSONResponse(payload, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@v2.get("/FailoverPlans", summary="List failover plans ($filter, $orderby, $top, $skip, $select, $format)")
async def list_plans(request: Request) -> list[dict[str, Any]]:
    return sim_of(request).list_plans(request.query_params.multi_items())


@v2.get("/FailoverPlans/{plan_id}", summary="One failover plan (an object, or a one-element array)")
async def get_plan(plan_id: str, request: Request) -> dict[str, Any] | list[Any]:
    return sim_of(request).read_plan(plan_id, request.query_params.multi_items())


@v2.get("/Sites/{site_id}/Scopes/{scope_id}/FailoverPlans", summary="One scope's failover plans")
async def list_scope_plans(site_id: str, scope_id: str, request: Request) -> list[dict[str, Any]]:
    return sim_of(request).list_plans(request.query_params.multi_items(), site_id=site_id, scope_id=scope_id)


@v2.post("/FailoverPlans/{plan_id}/Run", summary="Run: FailoverNow, PermanentFailoverNow, Failback, CommitFailBack")
async def run(plan_id: str, request: Request) -> Response:
    sim_of(request).run(plan_id, await request.body())
    return Response(status_code=200)


def _operation(op: Op, name: str) -> Any:
    async def handler(plan_id: str, request: Request) -> Response:
        sim_of(request).operate(plan_id, op, await request.body(), path=request.url.path)
        return Response(status_code=200)

    handler.__name__ = name
    return handler


for _op in (Op.ENABLE, Op.DISABLE, Op.HALT, Op.CONTINUE, Op.UNDO, Op.RESET, Op.SCHEDULE, Op.DISABLE_SCHEDULE):
    v2.add_api_route(
        f"/FailoverPlans/{{plan_id}}/{_op.value}",
        _operation(_op, f"plan_{_op.value.lower()}"),
        methods=["POST"],
        summary=_op.value,
        response_class=Response,
    )
v2.add_api_route(
    "/FailoverPlans/{plan_id}/Run/Continue",
    _operation(Op.CONTINUE, "plan_run_continue"),
    methods=["POST"],
    summary="Continue (the v1 path; served per the plan's continue_path)",
    response_class=Response,
)
