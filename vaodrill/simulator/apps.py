"""The DR site's applications: what a drill's checks look at once a plan is failed over.

A scenario plan may have an ``app``::

    plans:
      - name: Web Tier
        app: {boot: 60, status: 200, body: "OK", delay: 0, fail: false, tcp: true}

It answers only while the plan is failed over (its last stage a completed Failover), and only ``boot`` simulated
seconds after the failover completed (divided by the time scale, like every duration). Before that, and after an
undo, HTTP answers 503 and the TCP port refuses connections. ``fail: true`` answers ``fail_status`` (500) and
never opens the port; ``delay`` makes every HTTP answer take that many real seconds (a slow application).

* HTTP: any path under ``/_apps/<plan name or id>/`` on the simulator's own port, e.g.
  ``GET /_apps/Web%20Tier/health``.
* TCP (``tcp: true``): a port of its own, chosen at start and shown by ``GET /_sim/apps``; bound but not
  listening while the application is down (a connection is refused), listening while it is up.
* ``GET /_sim/apps``: every application, whether it is up, since when (``up_since``, the simulator's clock) and
  what it answered; ``PATCH /_sim/apps/<plan>`` changes one (``{"fail": true}``) until the next reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BadRequest, NotFound

__all__ = ["AppSpec", "Apps", "install_apps"]

#: How often the TCP ports follow their plans' states (real seconds).
FOLLOW_INTERVAL = 0.05


class AppSpec(BaseModel):
    """A plan's application at the DR site."""

    model_config = ConfigDict(extra="forbid")

    boot: float = Field(0.0, ge=0, description="simulated seconds from failover complete to answering")
    status: int = Field(200, ge=100, le=599, description="HTTP status when up")
    body: str = Field("OK", max_length=10_000, description="HTTP body when up")
    delay: float = Field(0.0, ge=0, le=600, description="real seconds each HTTP answer takes")
    fail: bool = Field(False, description="answer fail_status, never accept TCP")
    fail_status: int = Field(500, ge=100, le=599)
    tcp: bool = Field(False, description="open a TCP port that accepts while the application is up")


class _Sim(Protocol):
    """What the applications read of the simulator (its engine imports the scenario, which imports this)."""

    scenario: Any
    time_scale: float

    def now(self) -> float: ...

    def record(self, plan_id: str) -> dict[str, Any]: ...


class _Port:
    """A TCP port of one application: bound while down (connections refused), listening while up."""

    def __init__(self) -> None:
        self.sock = self._bound(0)
        self.port: int = self.sock.getsockname()[1]
        self.server: asyncio.Server | None = None
        self.accepted = 0

    @staticmethod
    def _bound(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    async def follow(self, up: bool) -> None:
        if up and self.server is None:
            self.sock.listen(16)
            self.server = await asyncio.start_server(self._answer, sock=self.sock)
        elif not up and self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server, self.sock = None, self._bound(self.port)

    async def _answer(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.write(b"ok\n")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        await self.follow(False)
        self.sock.close()


class Apps:
    """The applications of the simulator's current scenario, their overrides, ports and what they answered."""

    def __init__(self, sim: _Sim) -> None:
        self.sim = sim
        self._scenario: object = None
        self._overrides: dict[str, AppSpec] = {}
        self._answers: dict[str, Counter[str]] = {}
        self._ports: dict[str, _Port] = {}
        #: Set once an application has a TCP port: only then do the ports need following (no timer otherwise).
        self._following = asyncio.Event()

    def _fresh(self) -> None:
        """A reset loaded another scenario: overrides and counts start again, TCP applications get their port
        (bound, refusing; kept per plan id across resets)."""
        if self.sim.scenario is not self._scenario:
            self._scenario = self.sim.scenario
            self._overrides, self._answers = {}, {}
            for spec in self.sim.scenario.plans:
                plan_id = self.sim.scenario.plan_id(spec)
                if spec.app is not None and spec.app.tcp and plan_id not in self._ports:
                    self._ports[plan_id] = _Port()
            if self._ports:
                self._following.set()

    def specs(self) -> dict[str, tuple[str, AppSpec]]:
        """Plan id -> (plan name, its application) for every plan that has one."""
        self._fresh()
        scenario = self.sim.scenario
        return {
            scenario.plan_id(p): (p.name, self._overrides.get(scenario.plan_id(p), p.app))
            for p in scenario.plans
            if p.app is not None
        }

    def find(self, ref: str) -> tuple[str, str, AppSpec]:
        spec = self.sim.scenario.find(ref)
        apps = self.specs()
        if spec is None or self.sim.scenario.plan_id(spec) not in apps:
            raise NotFound(f"No application for plan '{ref}'.")
        plan_id = self.sim.scenario.plan_id(spec)
        return plan_id, apps[plan_id][0], apps[plan_id][1]

    def up_since(self, plan_id: str, app: AppSpec) -> float | None:
        """When the application answers (simulator clock), None while its plan is not failed over."""
        stages = self.sim.record(plan_id)["stages"]
        last = stages[-1] if stages else None
        if last is None or last["kind"] != "Failover" or last["status"] != "completed" or not last["ended_at"]:
            return None
        return datetime.fromisoformat(last["ended_at"]).timestamp() + app.boot / self.sim.time_scale

    def is_up(self, plan_id: str, app: AppSpec) -> bool:
        since = self.up_since(plan_id, app)
        return since is not None and self.sim.now() >= since and not app.fail

    async def answer(self, ref: str) -> Response:
        plan_id, name, app = self.find(ref)
        if app.delay:
            await asyncio.sleep(app.delay)
        since = self.up_since(plan_id, app)
        if since is None:
            outcome, status, body = "down", 503, f"{name}: not failed over\n"
        elif self.sim.now() < since:
            outcome, status, body = "booting", 503, f"{name}: booting\n"
        elif app.fail:
            outcome, status, body = "failing", app.fail_status, f"{name}: failing\n"
        else:
            outcome, status, body = "up", app.status, app.body
        self._answers.setdefault(plan_id, Counter())[outcome] += 1
        return Response(body, status_code=status, media_type="text/plain")

    def patch(self, ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        plan_id, _, app = self.find(ref)
        try:
            self._overrides[plan_id] = AppSpec.model_validate({**app.model_dump(), **changes})
        except ValidationError as exc:
            raise BadRequest(f"Invalid application: {exc.errors(include_url=False)[0]['msg']}.") from None
        return self.describe(plan_id)

    def describe(self, plan_id: str) -> dict[str, Any]:
        name, app = self.specs()[plan_id]
        since = self.up_since(plan_id, app)
        port = self._ports.get(plan_id)
        return {
            "plan": name,
            "id": plan_id,
            "app": app.model_dump(),
            "up": self.is_up(plan_id, app),
            "up_since": since,
            "http_path": f"/_apps/{plan_id}/",
            "tcp_port": port.port if port else None,
            "tcp_accepted": port.accepted if port else 0,
            "answers": dict(self._answers.get(plan_id, {})),
        }

    async def follow(self) -> None:
        """Keep every TCP port in step with its plan (open while up), until cancelled; idle until there is one."""
        self._fresh()
        await self._following.wait()
        while True:
            apps = self.specs()
            for plan_id, port in self._ports.items():
                app = apps.get(plan_id, ("", None))[1]
                await port.follow(app is not None and app.tcp and self.is_up(plan_id, app))
            await asyncio.sleep(FOLLOW_INTERVAL)

    async def close(self) -> None:
        for port in self._ports.values():
            await port.close()


def _apps(request: Request) -> Apps:
    apps: Apps = request.app.state.apps
    return apps


router = APIRouter(tags=["DR site applications"])


@router.api_route("/_apps/{plan}/{path:path}", methods=["GET", "HEAD"], summary="A plan's application")
async def answer(plan: str, path: str, request: Request) -> Response:
    return await _apps(request).answer(plan)


@router.get("/_sim/apps", tags=["simulator control"], summary="The applications: up, since when, answers")
async def list_apps(request: Request) -> list[dict[str, Any]]:
    apps = _apps(request)
    return [apps.describe(plan_id) for plan_id in apps.specs()]


@router.patch("/_sim/apps/{plan}", tags=["simulator control"], summary="Change an application until the next reset")
async def patch_app(plan: str, request: Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise BadRequest("Invalid body: expected an object.")
    return _apps(request).patch(plan, body)


def install_apps(app: FastAPI, sim: _Sim) -> None:
    """Serve the applications of ``sim`` on ``app``; the TCP ports follow their plans while the server runs."""
    apps = app.state.apps = Apps(sim)
    apps._fresh()  # ports exist (refusing) from the start: GET /_sim/apps shows them at once
    app.include_router(router)
    inner: Callable[[Any], contextlib.AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(server: Any) -> AsyncIterator[Any]:
        async with inner(server) as state:
            follower = asyncio.get_running_loop().create_task(apps.follow(), name="vaodrill-sim-apps")
            try:
                yield state
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
                await apps.close()

    app.router.lifespan_context = lifespan
