"""The VRO backend: over the simulator's VRO API (real HTTP), and against VRO servers that misbehave
(:class:`ScriptedServer`): no envelope, pages that never end, a ``total`` that lies, a token endpoint that wants
MFA. Each ends in one error of the tree, in bounded time and memory; the CLI says it in one line, exit 2.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from tests.conftest import Sim
from tests.test_client_limits import Reply, ScriptedServer, endless
from vaodrill.errors import VaoAuthError, VaoProtocolError, VaoTimeoutError, VaoUsageError
from vaodrill.simulator.server import BackgroundServer
from vaodrill.vao.client import MAX_RESPONSE_BYTES, VaoClient
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.orchestrator import api_of, backend_for
from vaodrill.vao.retry import RetryPolicy
from vaodrill.vao.vocabulary import Condition
from vaodrill.vao.vro import MAX_PLANS, PAGE_SIZE, VroClient, VroPlan

ONCE = RetryPolicy(attempts=1)
TOKEN = {"access_token": "vro-token-1", "token_type": "bearer", "expires_in": 900, "refresh_token": "r-1"}
VAODRILL = str(Path(sys.executable).parent / "vaodrill")


def plan(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"00000000-0000-0000-0000-{i:012d}", "name": f"Plan {i}", "state": "Ready", **extra}


class VroServer(ScriptedServer):
    """A VRO server: ``/api/token`` answers ``token(form)`` (a token by default; the forms are kept in ``forms``),
    ``GET /api/v{N}/Plans`` answers ``pages(start, limit)``."""

    def __init__(self, pages: Callable[[int, int], Reply], token: Callable[[bytes], Reply] | None = None) -> None:
        super().__init__(self._answer)
        self.pages, self.token_reply = pages, token
        self.forms: list[dict[str, list[str]]] = []
        self._body, self._query = b"", (0, 0)

    def _answer(self, method: str, path: str) -> Reply:
        if path == "/api/token":
            self.forms.append(parse_qs(self._body.decode()))
            return self.token_reply(self._body) if self.token_reply else Reply.json(TOKEN)
        return self.pages(*self._query)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            query = parse_qs(scope.get("query_string", b"").decode())
            self._body = body
            self._query = (int(query.get("start", ["0"])[0]), int(query.get("limit", ["0"])[0]))
            replayed = False

            async def again() -> Any:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                return await receive()

            receive = again
        await super().__call__(scope, receive, send)


def client(server: VroServer, **options: Any) -> VroClient:
    options.setdefault("retry", ONCE)
    return VroClient(
        "http://vro/api/v13", "CORP\\drill", "secret", transport=httpx.ASGITransport(app=server), **options
    )


def envelope(items: list[Any], total: int | None) -> Reply:
    return Reply.json(
        {"data": items, "pagination": {"total": total, "count": len(items)}} if total is not None else {"data": items}
    )


@pytest.fixture
def served() -> Iterator[Callable[[ScriptedServer], str]]:
    servers: list[BackgroundServer] = []

    def serve(server: ScriptedServer) -> str:
        background = BackgroundServer(server)
        servers.append(background)
        return background.__enter__().url

    yield serve
    for background in servers:
        background.__exit__(None, None, None)


# -- the backend is chosen by the URL ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "api", "named"),
    [
        ("https://vro.corp:9898/api/v13", "vro", "VRO v13"),
        ("https://vro.corp:9898/api/v7.2/", "vro", "VRO v7.2"),
        ("https://vro.corp:9898/api/v7.21", "vro", "VRO v7.21"),
        ("https://vao.corp:9899/v2", "v2", "VAO v2"),
        ("https://vao.corp:9899", "v2", "VAO v2"),
    ],
)
def test_the_url_s_api_path_chooses_the_backend(url: str, api: str, named: str) -> None:
    assert api_of(url) == api
    backend = backend_for(url, username="u", password="p")
    assert isinstance(backend, VroClient if api == "vro" else VaoClient) and backend.api == named
    assert backend.base_url == ("https://vro.corp:9898" if api == "vro" else "https://vao.corp:9899")
    settings = ConnectionSettings(url=url, username="u", password=SecretStr("p"))
    assert settings.api == api and type(settings.client()) is type(backend)


def test_an_api_version_vaodrill_does_not_speak_is_refused_in_one_line() -> None:
    with pytest.raises(VaoUsageError, match=r"asks for API v5; vaodrill speaks VRO's /api/v7.2, /api/v7.21, "):
        api_of("https://vro.corp:9898/api/v5")
    with pytest.raises(ValueError, match="asks for API v5"):
        ConnectionSettings(url="https://vro.corp:9898/api/v5", username="u", password=SecretStr("p"))


# -- over the simulator's VRO API -----------------------------------------------------------------------------


async def test_plans_states_and_runtime_details_over_the_simulator(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory("demo", api="vro")
    async with VroClient(sim.api_url, "demo", "demo") as vro:
        plans = await vro.list_plans()
        assert [type(p) for p in plans] == [VroPlan] * 7
        assert {p.name: p.status().condition for p in plans if p.status().condition is not Condition.IDLE} == {
            "Legacy ERP": Condition.DISABLED
        }
        first = plans[0]
        assert first.target_rto is not None and first.kind.value == "idle"
        await vro.run_failover(first.id, restore_point="2026-12-06T02:00:00")
        read = await vro.get_plan(first.id)
        assert read.id == first.id and read.status().condition in (Condition.FAILING_OVER, Condition.FAILED_OVER)
    posts = sim.requests(method="POST")
    assert [(e["path"], e["body"]) for e in posts] == [
        ("/api/token", None),  # the form (password) is never logged
        (
            f"/api/v13/Plans/{first.id}/Failover",
            {"restorePointDate": "2026-12-06T02:00:00", "executeChainedPlans": False},
        ),
    ]
    assert [e["path"] for e in sim.requests(path="/api/token")] == ["/api/token"]
    gets = [e["path"] for e in sim.requests(method="GET")]
    assert gets == ["/api/v13/Plans", f"/api/v13/Plans/{first.id}", f"/api/v13/RuntimeDetails/Plans/{first.id}"]


async def test_a_running_plan_s_runtime_details_give_its_progress(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory("demo", time_scale=1, api="vro")
    async with VroClient(sim.api_url, "demo", "demo") as vro:
        target = (await vro.list_plans())[0]
        await vro.run_failover(target.id)
        shown = (await vro.get_plan(target.id)).status(stage="failover")
    assert shown.condition is Condition.FAILING_OVER and shown.running and shown.in_use
    assert shown.steps == 100 and shown.step is not None and 0 <= shown.step < 100
    assert [e["body"] for e in sim.requests(method="POST", path=sim.path("Run"))] == [
        {"restorePointDate": None, "executeChainedPlans": False}
    ]


async def test_the_list_is_read_page_by_page(sim_factory: Callable[..., Sim]) -> None:
    many = {"name": "many", "plans": [{"name": f"Plan {i:04d}", "state": "Enabled"} for i in range(PAGE_SIZE + 20)]}
    sim = sim_factory(many, api="vro")
    async with VroClient(sim.api_url, "demo", "demo") as vro:
        plans = await vro.list_plans()
    assert len(plans) == PAGE_SIZE + 20 and len({p.id for p in plans}) == PAGE_SIZE + 20
    assert [dict(e["query"]) for e in sim.requests(method="GET", path="/api/v13/Plans")] == [
        {"start": "0", "limit": str(PAGE_SIZE)},
        {"start": str(PAGE_SIZE), "limit": str(PAGE_SIZE)},
    ]


# -- logins -----------------------------------------------------------------------------------------------------


async def test_password_client_credentials_and_refresh_grants() -> None:
    server = VroServer(
        lambda start, limit: envelope([plan(1)], 1), token=lambda form: Reply.json({**TOKEN, "expires_in": 60})
    )
    now = [0.0]
    async with client(server, clock=lambda: now[0]) as vro:
        await vro.list_plans()
        now[0] += 59  # the token is about to expire: renewed with the refresh grant
        await vro.list_plans()
    forms = server.forms
    assert forms[0] == {"grant_type": ["password"], "username": ["CORP\\drill"], "password": ["secret"]}
    assert forms[1] == {"grant_type": ["refresh_token"], "refresh_token": ["r-1"]}
    child = VroServer(lambda start, limit: envelope([plan(1)], 1))
    async with VroClient(
        "http://vro/api/v7.2",
        client_id="drill-tool",
        client_secret="s3cret",
        retry=ONCE,
        transport=httpx.ASGITransport(app=child),
    ) as vro:
        assert vro.api == "VRO v7.2"
        await vro.list_plans()
    assert child.forms == [
        {"grant_type": ["client_credentials"], "client_id": ["drill-tool"], "client_secret": ["s3cret"]}
    ]
    assert ("GET", "/api/v7.2/Plans") in child.seen


@pytest.mark.parametrize(
    "answer",
    [
        Reply.json({"mfa_token": "abc", "expires_in": 300}),
        Reply.json({"error": "invalid_grant", "error_description": "MFA code is required for this account"}, 400),
    ],
)
async def test_an_account_that_wants_mfa_is_refused_in_one_line(answer: Reply) -> None:
    server = VroServer(lambda start, limit: envelope([plan(1)], 1), token=lambda form: answer)
    async with client(server) as vro:
        with pytest.raises(VaoAuthError, match=r"login as 'CORP\\\\drill' needs multi-factor authentication \(MFA\)"):
            await vro.list_plans()
        with pytest.raises(VaoAuthError, match="no new login before"):  # and not tried again at once
            await vro.list_plans()
    assert server.count("POST", "/api/token") == 1 and server.count("GET", "/Plans") == 0


# -- bad answers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        (lambda s, n: Reply.json([plan(1)]), r"expected the \{data, pagination\} envelope"),
        (lambda s, n: Reply.json({"items": [plan(1)]}), r"expected the \{data, pagination\} envelope"),
        (lambda s, n: envelope([plan(1)], 10**9), "a total of 1,000,000,000 plans is more than the limit of 100,000"),
        (lambda s, n: envelope([plan(i) for i in range(s, min(s + n, 3))], 5), "says 5 plans but its pages end at 3"),
        (lambda s, n: envelope([plan(i) for i in range(4)], 2), r"the pages hold more plans than the total"),
        (lambda s, n: envelope([plan(i) for i in range(n)], 10 * n), "is on two pages"),  # start ignored
        (lambda s, n: Reply.json({"data": [plan(1)], "pagination": {"total": "many"}}), "total is not a count"),
        (lambda s, n: envelope([{"name": "no id"}], 1), r"element 0 is not a plan \(id: Field required\)"),
    ],
)
async def test_a_collection_that_does_not_page_as_it_says_ends_in_one_line(
    pages: Callable[[int, int], Reply], message: str
) -> None:
    server = VroServer(pages)
    async with client(server) as vro:
        with pytest.raises(VaoProtocolError, match=message) as caught:
            await vro.list_plans()
    assert "\n" not in str(caught.value) and len(server.seen) <= 4


async def test_pages_that_never_end_stop_at_the_list_deadline_in_bounded_memory() -> None:
    """A server that always has one more full page of new plans (and no total) is cut at the deadline of the whole
    list read (the retry policy's ``deadline``), or at MAX_PLANS, whichever comes first."""
    counter = itertools.count()
    server = VroServer(lambda s, n: envelope([plan(next(counter)) for _ in range(n)], None))
    started = time.monotonic()
    tracemalloc.start()
    try:
        async with client(server, retry=RetryPolicy(attempts=1, deadline=2.0), timeout=2.0) as vro:
            with pytest.raises(VaoTimeoutError, match=r"the plan list was not read within \d+s \([\d,]+ plans in\)"):
                await vro.list_plans()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 1 < server.count("GET", "/Plans") <= MAX_PLANS // PAGE_SIZE + 1
    assert peak < 256 * 2**20 and time.monotonic() - started < 10


async def test_an_endless_page_stops_at_the_size_cap(served: Callable[[ScriptedServer], str]) -> None:
    url = served(VroServer(lambda s, n: Reply(chunks=endless())))
    async with VroClient(f"{url}/api/v13", "u", "p", retry=ONCE, timeout=20) as vro:
        started = time.monotonic()
        with pytest.raises(VaoProtocolError, match=f"larger than the limit of {MAX_RESPONSE_BYTES // 1024:,} KiB"):
            await vro.list_plans()
    assert time.monotonic() - started < 15


async def test_a_trickling_page_ends_at_the_deadline(served: Callable[[ScriptedServer], str]) -> None:
    url = served(VroServer(lambda s, n: Reply(chunks=endless(b" "), pause=0.1)))
    async with VroClient(f"{url}/api/v13", "u", "p", retry=ONCE, timeout=1.0) as vro:
        started = time.monotonic()
        with pytest.raises(VaoTimeoutError):
            await vro.list_plans()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("pages", "token", "fragment"),
    [
        (lambda s, n: Reply.json([plan(1)]), None, "envelope"),
        (
            lambda s, n: envelope([plan(i) for i in range(s, min(s + n, 1))], 50),
            None,
            "says 50 plans but its pages end at 1",
        ),
        (lambda s, n: envelope([plan(1)], 1), lambda form: Reply.json({"mfa_token": "x"}), "needs multi-factor"),
    ],
)
def test_the_cli_says_a_bad_vro_answer_in_one_line_and_exits_2(
    served: Callable[[ScriptedServer], str],
    pages: Callable[[int, int], Reply],
    token: Callable[[bytes], Reply] | None,
    fragment: str,
) -> None:
    url = served(VroServer(pages, token))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAO_")}
    env |= {"VAO_URL": f"{url}/api/v13", "VAO_USERNAME": "drill", "VAO_PASSWORD": "secret-pw", "COLUMNS": "160"}
    result = subprocess.run([VAODRILL, "plans"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "secret-pw" not in result.stdout + result.stderr


# -- the readiness check ----------------------------------------------------------------------------------------


async def test_the_readiness_check_is_vro_s_and_not_on_vao_v2(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory("demo")
    target = sim.plan_id("SQL Tier")
    async with VroClient(f"{sim.url}/api/v7.2", "demo", "demo") as vro:
        await vro.readiness_check(target)
    async with VaoClient(sim.url, "demo", "demo") as vao:
        with pytest.raises(VaoUsageError, match=r"a readiness check is not available on this server \(VAO v2"):
            await vao.readiness_check(target)
    assert [(e["path"], e["status"]) for e in sim.requests(method="POST") if e["path"] != "/api/token"] == [
        (f"/api/v7.2/Plans/{target}/ReadinessCheck", 200)
    ]
    assert sim.plans()["SQL Tier"]["run_requests"] == 0
