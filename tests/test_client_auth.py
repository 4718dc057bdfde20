"""Login fail-fast against the simulator: no re-login loop on 401, at most one login a minute after a refusal,
403 never retried, and no secret in any repr, message or log record.

The client's clock is injected (``clock=``) so that a minute of polling takes milliseconds; the simulator and
its request log are real.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from vaodrill.errors import VaoAuthError, VaoForbidden, VaoServerError
from vaodrill.simulator import create_app
from vaodrill.vao.client import VaoClient
from vaodrill.vao.retry import RetryPolicy

FAST = RetryPolicy(attempts=4, backoff=0.01, max_delay=0.05)
POLL = 2.0  # seconds of client time between two polls


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app() -> FastAPI:
    return create_app("demo", progression="tick")


@pytest.fixture
async def control(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        yield client


def client_of(app: FastAPI, clock: Clock, password: str = "demo") -> VaoClient:
    return VaoClient("http://sim", "demo", password, transport=httpx.ASGITransport(app=app), retry=FAST, clock=clock)


async def requests(control: httpx.AsyncClient, path: str) -> list[dict[str, object]]:
    response = await control.get("/_sim/requests", params={"path": path})
    response.raise_for_status()
    entries: list[dict[str, object]] = response.json()
    return entries


async def poll_for(vao: VaoClient, clock: Clock, seconds: float) -> list[str]:
    """Poll the plan list every POLL seconds of client time; the error message of every failed poll."""
    failures = []
    start = clock.now
    while clock.now <= start + seconds:
        try:
            await vao.list_plans()
        except VaoAuthError as exc:
            failures.append(str(exc))
        clock.now += POLL
    return failures


async def test_401_on_every_read_for_a_minute_of_polling_is_not_a_login_per_poll(
    app: FastAPI, control: httpx.AsyncClient
) -> None:
    clock = Clock()
    async with client_of(app, clock) as vao:
        await vao.list_plans()
        fault = {"method": "GET", "path": "/v2/FailoverPlans", "status": 401}  # every request, until deleted
        (await control.post("/_sim/faults", json=fault)).raise_for_status()
        await control.delete("/_sim/requests")
        failures = await poll_for(vao, clock, 60)
    assert len(failures) == 31  # every poll failed, and said so
    tokens = await requests(control, "/v2/Token")
    reads = await requests(control, "/v2/FailoverPlans")
    # t=0: the old token gets 401, one fresh token, 401 again: fail. t=60: one fresh token, 401: fail at once.
    assert len(tokens) == 2 and len(reads) == 3
    assert all(e["status"] == 200 for e in tokens)
    assert failures[0].startswith(
        "GET /v2/FailoverPlans: HTTP 401: Simulated fault fault-1: HTTP 401. "
        "(with a fresh login as 'demo'); no new login before "
    )
    assert all("no new login before" in f and "\n" not in f for f in failures)


async def test_after_a_refused_password_at_most_one_login_a_minute(app: FastAPI, control: httpx.AsyncClient) -> None:
    clock = Clock()
    async with client_of(app, clock, password="wrong-password") as vao:
        failures = await poll_for(vao, clock, 119)  # two minutes of polls every 2 s
    assert len(failures) == 60
    tokens = await requests(control, "/v2/Token")
    assert [e["status"] for e in tokens] == [400, 400]  # t=0 and t=60, nothing in between
    assert await requests(control, "/v2/FailoverPlans") == []
    assert failures[0].startswith("login as 'demo' refused by http://sim/v2/Token (HTTP 400)")
    assert "no new login before" in failures[1] and "(in 58 s)" in failures[1]
    assert "wrong-password" not in " ".join(failures)


async def test_concurrent_polls_on_a_refused_token_share_one_fresh_login(
    app: FastAPI, control: httpx.AsyncClient
) -> None:
    clock = Clock()
    async with client_of(app, clock) as vao:
        await vao.list_plans()
        (
            await control.post("/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "status": 401})
        ).raise_for_status()
        await control.delete("/_sim/requests")
        results = await asyncio.gather(*(vao.list_plans() for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, VaoAuthError) for r in results)
    assert len(await requests(control, "/v2/Token")) == 1


async def test_login_works_again_after_the_backoff(app: FastAPI, control: httpx.AsyncClient) -> None:
    clock = Clock()
    async with client_of(app, clock) as vao:
        fault = (
            await control.post("/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "status": 401})
        ).json()
        with pytest.raises(VaoAuthError):
            await vao.list_plans()
        (await control.delete(f"/_sim/faults/{fault['id']}")).raise_for_status()
        clock.now += 30
        with pytest.raises(VaoAuthError, match=r"no new login before .* \(in 30 s\)"):
            await vao.list_plans()  # the server is fine again, but the minute is not over: nothing is sent
        clock.now += 30
        assert await vao.list_plans()


async def test_403_is_never_retried_nor_a_reason_to_log_in(app: FastAPI, control: httpx.AsyncClient) -> None:
    async with client_of(app, Clock()) as vao:
        (
            await control.post("/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "status": 403})
        ).raise_for_status()
        with pytest.raises(VaoForbidden, match="HTTP 403"):
            await vao.list_plans()
        with pytest.raises(VaoForbidden):
            await vao.list_plans()
    assert [e["status"] for e in await requests(control, "/v2/FailoverPlans")] == [403, 403]
    assert len(await requests(control, "/v2/Token")) == 1


async def test_a_failing_token_endpoint_is_no_refusal(app: FastAPI, control: httpx.AsyncClient) -> None:
    """A 503 from the token endpoint did not judge the password: retried like any read, no backoff."""
    async with client_of(app, Clock()) as vao:
        (
            await control.post("/_sim/faults", json={"method": "POST", "path": "/v2/Token", "status": 503, "count": 2})
        ).raise_for_status()
        assert await vao.list_plans()
    assert [e["status"] for e in await requests(control, "/v2/Token")] == [503, 503, 200]


SECRETS = ("hunter2-password", "child-s3cret")


def echoing_server(request: httpx.Request) -> httpx.Response:
    """A server that quotes the credentials it got in its error messages (a real server might)."""
    body = request.content.decode()
    return httpx.Response(400, json={"error": "invalid_grant", "error_description": f"refused: {body}"})


async def test_secrets_never_in_repr_messages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    messages = []
    with caplog.at_level(logging.DEBUG):
        for credentials in (
            {"username": "u", "password": SECRETS[0]},
            {"client_id": "tool", "client_secret": SECRETS[1]},
        ):
            async with VaoClient("http://vao", transport=httpx.MockTransport(echoing_server), **credentials) as vao:  # type: ignore[arg-type]
                for _ in range(2):  # the refusal, then the backoff's message
                    with pytest.raises(VaoAuthError) as caught:
                        await vao.list_plans()
                    messages += [str(caught.value), repr(caught.value), caught.value.server_message or ""]
                messages += [repr(vao), repr(vao._auth), str(vao.__dict__)]
    assert "refused: grant_type=" in messages[0]  # the server's text is there, with the secret blanked
    text = " ".join(messages) + " ".join(r.getMessage() for r in caplog.records)
    for secret in SECRETS:
        assert secret not in text


async def test_server_error_messages_do_not_carry_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Token"):
            return httpx.Response(200, json={"access_token": "tok-abcdef123", "expires_in": 900})
        return httpx.Response(500, json={"Message": f"crashed on {request.headers['Authorization']}"})

    async with VaoClient(
        "http://vao", "u", "p", transport=httpx.MockTransport(handler), retry=RetryPolicy(attempts=1)
    ) as vao:
        with pytest.raises(VaoServerError) as caught:
            await vao.list_plans()
    assert "crashed on Bearer ********" in str(caught.value) and "tok-abcdef123" not in str(caught.value)
