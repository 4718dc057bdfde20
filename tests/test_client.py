"""VaoClient against the simulator: in-process (ASGI) and through uvicorn on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from vaodrill.errors import (
    VaoAuthError,
    VaoBadRequest,
    VaoConflict,
    VaoConnectError,
    VaoNotFound,
    VaoProtocolError,
    VaoRateLimited,
    VaoResponseError,
    VaoResponseLost,
    VaoServerError,
    VaoTLSError,
    VaoUsageError,
)
from vaodrill.simulator import create_app
from vaodrill.simulator.profiles import ChildClient
from vaodrill.simulator.scenario import load_scenario
from vaodrill.simulator.server import BackgroundServer
from vaodrill.vao.client import VaoClient
from vaodrill.vao.models import FailoverPlan, PlanState
from vaodrill.vao.retry import RetryPolicy, patience

FAST = RetryPolicy(attempts=4, backoff=0.01, max_delay=0.05)


@pytest.fixture
def app() -> FastAPI:
    return create_app("demo", progression="tick")


@pytest.fixture
async def sim(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        yield client


@pytest.fixture
async def vao(app: FastAPI) -> AsyncIterator[VaoClient]:
    async with VaoClient("http://sim", "demo", "demo", transport=httpx.ASGITransport(app=app), retry=FAST) as c:
        yield c


async def log(sim: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    response = await sim.get("/_sim/requests", params=filters)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


async def plan_named(vao: VaoClient, name: str) -> FailoverPlan:
    return next(p for p in await vao.list_plans() if p.name == name)


async def until(vao: VaoClient, plan_id: str, state: PlanState, complete: bool = True) -> FailoverPlan:
    """Read (each read is a tick) until the plan reaches ``state``; bounded."""
    for _ in range(50):
        plan = await vao.get_plan(plan_id)
        if plan.state is state and (not complete or not plan.running):
            return plan
    raise AssertionError(f"{plan_id} never reached {state}: {plan.describe_state()}")


# -- operations ---------------------------------------------------------------------------------------------


async def test_list_and_get(vao: VaoClient) -> None:
    plans = await vao.list_plans()
    names = {p.name for p in plans}
    assert {"Core Network", "SQL Tier", "Legacy ERP"} <= names
    legacy = next(p for p in plans if p.name == "Legacy ERP")
    assert legacy.state is PlanState.DISABLED
    same = await vao.get_plan(legacy.id)
    assert same.id == legacy.id and same.name == "Legacy ERP"
    enabled = await vao.list_plans(filter="planState eq 'Enabled'", orderby="name desc", top=2)
    assert len(enabled) == 2 and all(p.state is PlanState.ENABLED for p in enabled)
    assert [p.name for p in enabled] == sorted((p.name for p in enabled), reverse=True)


async def test_failover_undo_cycle(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    plan = await plan_named(vao, "Core Network")
    await vao.run_failover(plan.id, restore_point="2099-01-01T00:00:00")
    done = await until(vao, plan.id, PlanState.FAILOVER)
    assert done.stage_complete and done.state_details.startswith("Complete")
    run = (await log(sim, method="POST", path="*/Run"))[0]
    assert run["body"] == {
        "mode": "FailoverNow",
        "planlaunchOptions": {"restorePointRule": {"date": "2099-01-01T00:00:00"}, "executeChainedPlans": False},
    }
    await vao.undo(plan.id)
    back = await until(vao, plan.id, PlanState.ENABLED)
    assert not back.in_use


async def test_enable_disable_halt_continue_reset_schedule(vao: VaoClient) -> None:
    legacy = await plan_named(vao, "Legacy ERP")
    await vao.enable(legacy.id)
    assert (await vao.get_plan(legacy.id)).state is PlanState.ENABLED
    await vao.disable(legacy.id)
    assert (await vao.get_plan(legacy.id)).state is PlanState.DISABLED

    plan = await plan_named(vao, "SQL Tier")
    await vao.run_failover(plan.id)
    await vao.halt(plan.id, fullstop=False)
    assert (await vao.get_plan(plan.id)).state is PlanState.HALTED
    await vao.continue_plan(plan.id, "RetryFailedStep")
    await until(vao, plan.id, PlanState.FAILOVER)
    await vao.permanent_failover(plan.id)
    assert (await until(vao, plan.id, PlanState.PERMANENT_FAILOVER)).state is PlanState.PERMANENT_FAILOVER
    await vao.reset(plan.id)
    assert (await vao.get_plan(plan.id)).state in (PlanState.ENABLED, PlanState.DISABLED)

    await vao.schedule(plan.id, start_time="2099-01-01T02:00:00")
    assert (await vao.get_plan(plan.id)).schedule_enabled
    await vao.disable_schedule(plan.id)
    assert not (await vao.get_plan(plan.id)).schedule_enabled


async def test_failback_and_commit(vao: VaoClient) -> None:
    plan = await plan_named(vao, "Web Tier")
    await vao.run_failover(plan.id)
    await until(vao, plan.id, PlanState.FAILOVER)
    await vao.failback(plan.id)
    await until(vao, plan.id, PlanState.FAILBACK)
    await vao.commit_failback(plan.id)
    plan_after = await until(vao, plan.id, PlanState.COMMIT_FAILBACK)
    assert plan_after.state is PlanState.COMMIT_FAILBACK


# -- auth ---------------------------------------------------------------------------------------------------


async def test_fifty_concurrent_calls_share_one_login(app: FastAPI, sim: httpx.AsyncClient) -> None:
    async with VaoClient("http://sim", "demo", "demo", transport=httpx.ASGITransport(app=app)) as fresh:
        plan_id = (await plan_named(fresh, "Core Network")).id
        await sim.delete("/_sim/requests")
    async with VaoClient("http://sim", "demo", "demo", transport=httpx.ASGITransport(app=app)) as fresh:
        plans = await asyncio.gather(*(fresh.get_plan(plan_id) for _ in range(50)))
    assert {p.id for p in plans} == {plan_id}
    entries = await log(sim)
    assert sum(1 for e in entries if e["path"].endswith("/Token")) == 1
    assert sum(1 for e in entries if e["method"] == "GET") == 50


async def test_401_reauthenticates_once_and_replays(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    await vao.list_plans()
    (await sim.post("/_sim/tokens/expire", json={})).raise_for_status()
    await sim.delete("/_sim/requests")
    assert await vao.list_plans()
    entries = await log(sim)
    assert [e["status"] for e in entries if e["path"] == "/v2/FailoverPlans"] == [401, 200]
    assert sum(1 for e in entries if e["path"].endswith("/Token")) == 1  # the refresh grant


async def test_refused_refresh_falls_back_to_login(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    await vao.list_plans()
    (await sim.post("/_sim/tokens/expire", json={"refresh": True})).raise_for_status()
    await sim.delete("/_sim/requests")
    assert await vao.list_plans()
    tokens = [e for e in await log(sim) if e["path"].endswith("/Token")]
    assert [e["status"] for e in tokens] == [400, 200]  # refresh refused, then password login


async def test_token_is_refreshed_shortly_before_expiry(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    now = [1000.0]
    vao._auth._clock = lambda: now[0]
    await vao.list_plans()
    now[0] += 60  # well inside the 900 s lifetime: no new token
    await vao.list_plans()
    now[0] += 800  # within the refresh margin before expiry
    await vao.list_plans()
    tokens = [e for e in await log(sim) if e["path"].endswith("/Token")]
    assert len(tokens) == 2


async def test_wrong_password_is_one_clear_line_without_secrets(app: FastAPI) -> None:
    async with VaoClient("http://sim", "demo", "hunter2", transport=httpx.ASGITransport(app=app)) as bad:
        with pytest.raises(VaoAuthError) as caught:
            await bad.list_plans()
    message = str(caught.value)
    assert "refused" in message and "\n" not in message and "hunter2" not in message
    assert "hunter2" not in repr(bad) and "hunter2" not in repr(bad._auth)


# -- errors -------------------------------------------------------------------------------------------------


async def test_error_mapping(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    with pytest.raises(VaoNotFound, match="was not found"):
        await vao.get_plan("00000000-0000-0000-0000-000000000000")
    legacy = await plan_named(vao, "Legacy ERP")
    with pytest.raises(VaoConflict) as conflict:
        await vao.run_failover(legacy.id)
    assert conflict.value.status_code == 409 and "Legacy ERP" in str(conflict.value)
    assert conflict.value.server_message and conflict.value.server_message in str(conflict.value)
    with pytest.raises(VaoBadRequest, match="restore point"):
        await vao.run_failover((await plan_named(vao, "Core Network")).id, restore_point="1990-01-01T00:00:00")
    await sim.post("/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "status": 500, "count": 10})
    with pytest.raises(VaoServerError, match="HTTP 500"):
        await vao.list_plans()


async def test_unknown_state_and_wrapped_plan_parse() -> None:
    plan = FailoverPlan.model_validate([{"id": "x", "name": "P", "planState": "SOMETHING NEW"}])
    assert plan.state is PlanState.UNKNOWN and plan.state_raw == "SOMETHING NEW"
    assert PlanState.parse("UNDO FAILOVER") is PlanState.parse("undo_failover") is PlanState.UNDO_FAILOVER


async def test_non_json_body_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 900})
        return httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"})

    async with VaoClient("http://vao", "u", "p", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(VaoProtocolError, match="non-JSON"):
            await client.list_plans()


async def test_unreachable_host_is_a_connect_error() -> None:
    async with VaoClient("http://127.0.0.1:9", "u", "p", retry=FAST) as client:
        with pytest.raises(VaoConnectError) as caught:
            await client.list_plans()
    assert "cannot connect" in str(caught.value) and "\n" not in str(caught.value)


# -- retries ------------------------------------------------------------------------------------------------


async def test_reads_retry_5xx_and_429(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    await sim.post("/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "status": 503, "count": 2})
    await sim.post("/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans/*", "retry_after": 0, "count": 1})
    plans = await vao.list_plans()
    await vao.get_plan(plans[0].id)
    entries = await log(sim, method="GET")
    assert [e["status"] for e in entries if e["path"] == "/v2/FailoverPlans"] == [503, 503, 200]
    assert [e["status"] for e in entries if e["path"] != "/v2/FailoverPlans"] == [429, 200]


async def test_a_post_refused_for_now_is_resent_after_retry_after_and_runs_once(
    vao: VaoClient, sim: httpx.AsyncClient
) -> None:
    """429 or 503 with Retry-After: VAO says it did nothing, so the one policy sends the write again."""
    plan = await plan_named(vao, "Core Network")
    await sim.post(
        "/_sim/faults", json={"method": "POST", "path": "/v2/FailoverPlans/*/Run", "retry_after": 0, "count": 1}
    )
    await sim.post(
        "/_sim/faults",
        json={"method": "POST", "path": "/v2/FailoverPlans/*/Run", "status": 503, "retry_after": 0, "count": 1},
    )
    await vao.run_failover(plan.id)
    assert [e["status"] for e in await log(sim, method="POST", path="*/Run")] == [429, 503, 200]
    assert (await until(vao, plan.id, PlanState.FAILOVER)).state == PlanState.FAILOVER


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (VaoConnectError("never sent"), True),
        (VaoResponseLost("sent, no answer"), False),
        (VaoTLSError("untrusted"), False),
        (VaoRateLimited("429", status_code=429, retry_after=1), True),
        (VaoRateLimited("429", status_code=429), False),
        (VaoServerError("503", status_code=503, retry_after=5), True),
        (VaoServerError("503", status_code=503), False),
        (VaoServerError("500", status_code=500, retry_after=5), False),
        (VaoBadRequest("400", status_code=400), False),
    ],
    ids=str,
)
def test_what_a_write_may_be_resent_after(error: Exception, retried: bool) -> None:
    assert RetryPolicy.retryable(error, write=True) is retried
    assert RetryPolicy(attempts=2).should_retry(error, write=True, attempt=2) is False  # attempts used up


async def test_patience_outlasts_the_attempts_and_announces_each_retry(
    vao: VaoClient, sim: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Inside a drill (patience), the policy's deadline is the drill's: six 503s in a row are borne, each retry
    one line; a command (no patience) gives up after its attempts."""
    await sim.post("/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "status": 503, "count": 6})
    with pytest.raises(VaoServerError):
        await vao.list_plans()  # FAST: 4 attempts
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vaodrill.client"), patience(30):
        plans = await vao.list_plans()
    assert plans
    statuses = [e["status"] for e in await log(sim, method="GET", path="/v2/FailoverPlans")]
    assert statuses == [503] * 6 + [200]
    retries = [r.getMessage() for r in caplog.records if "; retry " in r.getMessage()]
    assert [m.split("; retry ")[1].split(" in ")[0] for m in retries] == ["2", "3"], retries
    assert all("503" in m for m in retries), retries


async def test_rate_limit_without_retries_left_is_named(app: FastAPI) -> None:
    async with (
        VaoClient(
            "http://sim", "demo", "demo", transport=httpx.ASGITransport(app=app), retry=RetryPolicy(attempts=1)
        ) as client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as control,
    ):
        await control.post(
            "/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "retry_after": 7, "count": 1}
        )
        with pytest.raises(VaoRateLimited) as caught:
            await client.list_plans()
    assert caught.value.retry_after == 7


async def test_a_post_that_got_a_5xx_is_never_resent(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    plan = await plan_named(vao, "Core Network")
    await sim.post(
        "/_sim/faults", json={"method": "POST", "path": "/v2/FailoverPlans/*/Run", "status": 503, "count": 1}
    )
    with pytest.raises(VaoServerError):
        await vao.run_failover(plan.id)
    assert len(await log(sim, method="POST", path="*/Run")) == 1


class FailFirstConnect(httpx.AsyncBaseTransport):
    """A transport whose first connection attempt fails before anything is sent (as a refused connect)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.failed = inner, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.failed and request.method == "POST" and request.url.path.endswith("/Run"):
            self.failed = True
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_post_that_never_left_is_resent_once(app: FastAPI, sim: httpx.AsyncClient) -> None:
    async with VaoClient(
        "http://sim", "demo", "demo", retry=FAST, transport=FailFirstConnect(httpx.ASGITransport(app=app))
    ) as client:
        plan = await plan_named(client, "Core Network")
        await client.run_failover(plan.id)
    assert len(await log(sim, method="POST", path="*/Run")) == 1  # only the attempt that reached the server


# -- over real HTTP (uvicorn on loopback) ---------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app("demo", progression="tick")) as server:
        yield server


async def test_over_uvicorn_a_lost_response_is_never_resent(served: BackgroundServer) -> None:
    async with (
        httpx.AsyncClient(base_url=served.url) as control,
        VaoClient(served.url, "demo", "demo", retry=FAST) as client,
    ):
        plan = await plan_named(client, "SQL Tier")
        await control.post(
            "/_sim/faults", json={"method": "POST", "path": "/v2/FailoverPlans/*/Run", "drop": "after", "count": 1}
        )
        with pytest.raises(VaoResponseLost):
            await client.run_failover(plan.id)
        runs = (await control.get("/_sim/requests", params={"method": "POST", "path": "*/Run"})).json()
        assert len(runs) == 1
        assert (await client.get_plan(plan.id)).state is PlanState.FAILOVER  # it did reach VAO


async def test_over_uvicorn_all_operations_and_token_sharing(served: BackgroundServer) -> None:
    async with VaoClient(served.url, "demo", "demo") as client:
        plans = await client.list_plans()
        await asyncio.gather(*(client.get_plan(p.id) for p in plans))
        plan = next(p for p in plans if p.name == "Reporting")
        await client.run_failover(plan.id)
        await until(client, plan.id, PlanState.FAILOVER)
        await client.undo(plan.id)
        await until(client, plan.id, PlanState.ENABLED)
    async with httpx.AsyncClient(base_url=served.url) as control:
        entries = (await control.get("/_sim/requests")).json()
    assert sum(1 for e in entries if e["path"].endswith("/Token")) == 1


# -- TLS ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    base = tmp_path_factory.mktemp("tls")
    ca_file, cert_file, key_file = base / "ca.pem", base / "cert.pem", base / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with BackgroundServer(create_app("demo"), ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as server:
        assert server.url.startswith("https://")
        yield server.url, str(ca_file)


async def test_tls_trusted_through_a_ca_bundle(tls: tuple[str, str]) -> None:
    url, ca_file = tls
    async with VaoClient(url, "demo", "demo", ca_bundle=ca_file) as client:
        assert await client.list_plans()


async def test_tls_rejected_without_the_ca(tls: tuple[str, str]) -> None:
    url, _ = tls
    async with VaoClient(url, "demo", "demo", retry=FAST) as client:
        with pytest.raises(VaoTLSError, match="not trusted"):
            await client.list_plans()


async def test_insecure_opt_out_warns_every_time(tls: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    url, _ = tls
    with caplog.at_level(logging.WARNING, logger="vaodrill.client"):
        for _ in range(2):
            async with VaoClient(url, "demo", "demo", verify=False) as client:
                assert await client.list_plans()
    assert sum("verification is OFF" in r.message for r in caplog.records) == 2


# -- what a real VAO may do differently (contract section 5) ------------------------------------------------


async def halted(vao: VaoClient, name: str) -> str:
    plan = await plan_named(vao, name)
    await vao.run_failover(plan.id)
    await vao.halt(plan.id)
    assert (await vao.get_plan(plan.id)).state is PlanState.HALTED
    return plan.id


async def test_continue_falls_back_to_run_continue_once_and_remembers(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    first, second = await halted(vao, "SQL Tier"), await halted(vao, "Web Tier")
    for plan_id in (first, second):
        (await sim.patch(f"/_sim/plans/{plan_id}", json={"continue_path": "Run/Continue"})).raise_for_status()
    await sim.delete("/_sim/requests")
    await vao.continue_plan(first, "RetryFailedStep")
    await vao.continue_plan(second, "ProceedToNextStep")
    posts = [
        (e["path"].removeprefix("/v2/FailoverPlans/"), e["status"])
        for e in await log(sim, method="POST", path="/v2/FailoverPlans/*")
    ]
    assert posts == [(f"{first}/Continue", 404), (f"{first}/Run/Continue", 200), (f"{second}/Run/Continue", 200)]
    await until(vao, first, PlanState.FAILOVER)


async def test_continue_on_the_documented_path_sends_one_post(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    plan_id = await halted(vao, "SQL Tier")
    await sim.delete("/_sim/requests")
    await vao.continue_plan(plan_id, "RetryFailedStep")
    posts = await log(sim, method="POST", path="/v2/FailoverPlans/*")
    assert [e["path"] for e in posts] == [f"/v2/FailoverPlans/{plan_id}/Continue"]


async def test_continue_of_an_unknown_plan_tries_each_path_once(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(VaoNotFound, match=r"Run/Continue.*was not found"):
        await vao.continue_plan(unknown, "RetryFailedStep")
    posts = await log(sim, method="POST", path="/v2/FailoverPlans/*")
    assert [e["path"].split("/", 4)[4] for e in posts] == ["Continue", "Run/Continue"]


async def test_continue_refused_in_the_wrong_state_is_not_retried_elsewhere(
    vao: VaoClient, sim: httpx.AsyncClient
) -> None:
    plan = await plan_named(vao, "Core Network")  # Enabled, not Halted: Continue is illegal, not unknown
    with pytest.raises(VaoConflict):
        await vao.continue_plan(plan.id, "RetryFailedStep")
    assert len(await log(sim, method="POST", path="/v2/FailoverPlans/*")) == 1


@pytest.mark.parametrize("status", [400, 500])
async def test_a_refusal_is_its_message_whatever_the_status(
    vao: VaoClient, sim: httpx.AsyncClient, status: int
) -> None:
    legacy = await plan_named(vao, "Legacy ERP")  # Disabled: Run is illegal
    (await sim.patch(f"/_sim/plans/{legacy.id}", json={"illegal_status": status})).raise_for_status()
    with pytest.raises(VaoResponseError) as caught:
        await vao.run_failover(legacy.id)
    refusal = caught.value
    assert refusal.status_code == status and refusal.server_message and "Legacy ERP" in refusal.server_message
    assert str(refusal).endswith(refusal.server_message)
    assert len(await log(sim, method="POST", path="*/Run")) == 1  # a refusal is never resent, not even a 500


async def test_child_client_login(sim: httpx.AsyncClient) -> None:
    scenario = load_scenario("demo").model_copy(
        update={"clients": [ChildClient(client_id="drill-tool", client_secret=SecretStr("s3cret-child"))]}
    )
    app = create_app(scenario, progression="tick")
    transport = httpx.ASGITransport(app=app)
    async with VaoClient(
        "http://sim", client_id="drill-tool", client_secret="s3cret-child", transport=transport
    ) as child:
        assert {p.name for p in await child.list_plans()} >= {"Core Network"}
        assert "s3cret-child" not in repr(child)
    async with VaoClient(
        "http://sim", client_id="drill-tool", client_secret="wrong-secret", transport=transport
    ) as wrong:
        with pytest.raises(VaoAuthError, match="login as client 'drill-tool' refused") as caught:
            await wrong.list_plans()
    assert "wrong-secret" not in str(caught.value)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as control:
        tokens = (await control.get("/_sim/requests", params={"path": "/v2/Token"})).json()
    assert [e["status"] for e in tokens] == [200, 400]


async def test_plan_ids_that_are_not_ids_are_refused_before_sending(vao: VaoClient, sim: httpx.AsyncClient) -> None:
    for bad in ("../Token", "a/b", "", "x?y=1", "a" * 200):
        with pytest.raises(VaoUsageError, match="not a plan id"):
            await vao.get_plan(bad)
    assert await log(sim) == []


def test_the_error_tree_keeps_every_class_name() -> None:
    """Others catch these by name: the tree may grow, never lose one."""
    from vaodrill import errors

    names = [
        "VaoError",
        "VaoConnectionError",
        "VaoConnectError",
        "VaoTLSError",
        "VaoTimeoutError",
        "VaoResponseLost",
        "VaoResponseError",
        "VaoBadRequest",
        "VaoAuthError",
        "VaoForbidden",
        "VaoNotFound",
        "VaoConflict",
        "VaoRateLimited",
        "VaoServerError",
        "VaoProtocolError",
        "DrillError",
        "PreconditionFailed",
        "UnknownPlans",
        "PlanHalted",
        "PlanTimedOut",
        "PlanFailed",
        "CleanupNotVerified",
    ]
    for name in names:
        assert issubclass(getattr(errors, name), errors.VaoError), name
