"""Helpers shared by the simulator tests (no tests here; named test_* only to live beside them)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from vaodrill.simulator import create_app

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on the hour
PASSWORD = "s3cr3t-Pa55word"

DEMO_IDS = {
    "Core Network": "20e20e7d-9f4e-421a-b099-0a3583dac9f5",
    "Active Directory": "44756234-92a9-408a-8c10-5ab6b180fdf8",
    "SQL Tier": "b8517d70-028d-4740-a130-787e164a3d83",
    "App Tier": "0a782692-ad0a-47d6-b0ac-4dc4c5eeaf79",
    "Web Tier": "833a4c17-68ee-41f5-9228-197cde86fad5",
    "Reporting": "1f25c463-b096-4fe4-a4e3-82def074a585",
    "Legacy ERP": "b71c4c79-53eb-4ab8-a927-991ce36414f9",
}


class FakeClock:
    """An injectable clock: tests move time explicitly instead of sleeping."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Api:
    """An in-process client of one simulator app (``httpx.ASGITransport``), logged in on demand."""

    def __init__(self, app: FastAPI, password: str = PASSWORD, username: str = "demo") -> None:
        self.app = app
        self.sim = app.state.sim
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")
        self.username = username
        self.password = password
        self.token: str | None = None

    async def login(self) -> dict[str, Any]:
        response = await self.http.post(
            "/v2/Token", data={"grant_type": "password", "username": self.username, "password": self.password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        self.token = body["access_token"]
        return body

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        if self.token is None:
            await self.login()
        return await self.http.get(path, headers=self.auth, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        if self.token is None:
            await self.login()
        return await self.http.post(path, headers=self.auth, **kwargs)

    async def plan(self, plan_id: str) -> dict[str, Any]:
        """``GET /v2/FailoverPlans/{id}`` (ticks in tick progression)."""
        response = await self.get(f"/v2/FailoverPlans/{plan_id}")
        assert response.status_code == 200, response.text
        plan: dict[str, Any] = response.json()
        return plan

    async def op(self, plan_id: str, op: str, body: Any = None) -> httpx.Response:
        return await self.post(f"/v2/FailoverPlans/{plan_id}/{op}", json=body)

    async def record(self, plan_id: str) -> dict[str, Any]:
        """``GET /_sim/plans/{id}``: never ticks."""
        response = await self.http.get(f"/_sim/plans/{plan_id}")
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        return record

    async def aclose(self) -> None:
        await self.http.aclose()


def one_plan_scenario(**plan: Any) -> dict[str, Any]:
    """A scenario with one plan ``P`` (2 steps, explicit restore points) plus any overrides."""
    return {
        "name": "one",
        "plans": [
            {
                "name": "P",
                "id": P_ID,
                "steps": 2,
                "failover_duration": 100,
                "undo_duration": 50,
                "restore_points": ["2027-01-15T08:00:00Z", "2027-01-15T04:00:00Z", "2027-01-15T00:00:00Z"],
                **plan,
            }
        ],
    }


P_ID = "3b0f2a52-6a0e-4c38-9a3f-3d5a8a1f0c11"


def app_for(scenario: Any = "demo", **kwargs: Any) -> FastAPI:
    kwargs.setdefault("password", PASSWORD)
    return create_app(scenario, **kwargs)
