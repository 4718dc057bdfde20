"""The app factory, plus the outermost layer that logs API requests and injects faults.

:class:`SimulatorApp` wraps the whole FastAPI stack (it overrides ``__call__``), outside even Starlette's
``ServerErrorMiddleware``. That placement matters for dropped connections: an exception raised inside the
middleware stack would be turned into a 500 response, while one raised out here reaches the server, which
closes the socket (uvicorn) or re-raises it to the caller (``httpx.ASGITransport``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from . import api, control, vro
from .apps import install_apps
from .engine import Simulator
from .errors import SimError, no_route
from .scenario import Scenario
from .traffic import ConnectionDropped, Fault

Api = Literal["v2", "vro"]
TOKEN_PATHS = frozenset({"/Token", "/v2/Token", vro.TOKEN_PATH})


def is_api_path(path: str) -> bool:
    """Requests the simulated server answers (logged, subject to faults): VAO's ``/v2`` and VRO's ``/api``;
    ``/_sim`` and docs are not."""
    return path in TOKEN_PATHS or path == "/v2" or path.startswith(("/v2/", "/api/"))


def _loggable_body(method: str, path: str, body: bytes) -> Any:
    """The JSON body of a ``/v2`` POST for the log. Never the token form: it holds the password."""
    if method != "POST" or path in TOKEN_PATHS or not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:2000].decode("utf-8", errors="replace")


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole request body (to log it) and give the app a ``receive`` that replays it."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: replay that instead
            first: Message = message
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            first = {"type": "http.request", "body": body, "more_body": False}
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return body, replay


async def _drop(send: Send, where: Literal["before", "after"]) -> None:
    """Drop the connection: start a response (so no server turns this into a 500), then abort it.

    uvicorn closes the socket when the app raises after ``http.response.start``, so a client sees the headers
    and then an incomplete body: httpx raises ``RemoteProtocolError``. Through ``httpx.ASGITransport`` the
    :class:`ConnectionDropped` itself (a ``RemoteProtocolError``) is re-raised to the caller.
    """
    await send({"type": "http.response.start", "status": 502, "headers": [(b"x-vaosim-dropped", where.encode())]})
    raise ConnectionDropped(f"The simulator dropped the connection ({where} processing the request).")


class SimulatorApp(FastAPI):
    """FastAPI plus the traffic layer (request log, faults) in front of everything."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            await super().__call__(scope, receive, send)
            return
        sim: Simulator = self.state.sim
        method, path = scope["method"], scope["path"]
        body, receive = await _buffer(receive)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        fault, entry = sim.admit(method, path, query, _loggable_body(method, path, body))
        if fault is not None:
            if fault.spec.latency:
                await asyncio.sleep(fault.spec.latency)
            if fault.spec.drop == "before":
                await _drop(send, "before")
            if fault.spec.status is not None:
                entry["status"] = fault.spec.status
                await self._fault_response(fault)(scope, receive, send)
                return
        swallow = fault is not None and fault.spec.drop == "after"
        held = fault.spec.latency_after if fault is not None else None

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start" and held:
                await asyncio.sleep(held)  # handled already: the answer shows the state before the wait
            if message["type"] == "http.response.start" and not swallow:
                entry["status"] = message["status"]
            if not swallow:
                await send(message)

        await super().__call__(scope, receive, send_and_note)
        if swallow:
            await _drop(send, "after")

    @staticmethod
    def _fault_response(fault: Fault) -> JSONResponse:
        status = fault.spec.status
        assert status is not None
        headers = {"Retry-After": str(fault.spec.retry_after)} if fault.spec.retry_after is not None else None
        return JSONResponse(
            {"Message": f"Simulated fault {fault.id}: HTTP {status}."}, status_code=status, headers=headers
        )


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"Message": ...}``; bad input is never a 500."""

    async def sim_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SimError)
        return JSONResponse({"Message": exc.message}, status_code=exc.status, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"Message": f"The request is invalid: {'; '.join(parts)}."}, status_code=400)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = no_route(request.url.path).message
        elif exc.status_code == 405:
            message = f"The requested resource does not support http method '{request.method}'."
        else:
            message = str(exc.detail)
        return JSONResponse({"Message": message}, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"Message": "An error has occurred."}, status_code=500)

    app.add_exception_handler(SimError, sim_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)


def create_app(
    scenario: str | Path | Scenario | Mapping[str, Any] = "demo",
    *,
    time_scale: float = 1.0,
    progression: Literal["time", "tick"] = "time",
    username: str = "demo",
    password: str = "demo",
    access_token_ttl: int = 900,
    refresh_token_ttl: int = 7200,
    clock: Callable[[], float] | None = None,
    apis: Collection[Api] = ("v2", "vro"),
) -> FastAPI:
    """A fresh, independent simulator as an ASGI app; the :class:`Simulator` is ``app.state.sim``.

    ``apis``: the REST APIs served over the one state machine: VAO's ``v2`` (``/v2``) and VRO's ``vro``
    (``/api/token``, ``/api/v7.2``, ``/api/v7.21``, ``/api/v13``); both by default, on the same port.

    ``scenario`` is a built-in name (``"demo"``), a YAML/JSON path, a mapping or a :class:`Scenario`.
    ``clock`` returns epoch seconds (default ``time.time``); inject one to drive progression and token expiry
    deterministically. Raises :class:`~vaodrill.simulator.ScenarioError` for a bad scenario.
    """
    sim = Simulator(
        scenario,
        time_scale=time_scale,
        progression=progression,
        username=username,
        password=password,
        access_token_ttl=access_token_ttl,
        refresh_token_ttl=refresh_token_ttl,
        clock=clock,
    )
    app = SimulatorApp(
        title="VAO REST API v2 and VRO REST API simulator",
        summary="A stateful stand-in for Veeam Availability Orchestrator's /v2 API and Veeam Recovery "
        "Orchestrator's /api/v13 (vaodrill)",
        docs_url="/_sim/docs",
        redoc_url=None,
        openapi_url="/_sim/openapi.json",
    )
    app.state.sim = sim
    _install_error_handlers(app)
    if "v2" in apis:
        app.include_router(api.token_router)
        app.include_router(api.v2)
    if "vro" in apis:
        app.include_router(vro.token_router)
        for version in vro.VERSIONS:
            app.include_router(vro.router(version))
    app.include_router(control.router)
    install_apps(app, sim)
    return app
