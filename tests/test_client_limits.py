"""Client limits against servers that misbehave: size cap, total deadline, redirects, every httpx exception.

The misbehaving servers are real ASGI apps (:class:`ScriptedServer`), served by uvicorn on loopback where
streaming matters (trickling and endless bodies) and in process otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from vaodrill.errors import (
    DrillError,
    RedirectStopped,
    VaoAuthError,
    VaoBadRequest,
    VaoConnectError,
    VaoConnectionError,
    VaoError,
    VaoForbidden,
    VaoNotFound,
    VaoProtocolError,
    VaoRateLimited,
    VaoRedirected,
    VaoResponseLost,
    VaoServerError,
    VaoTimeoutError,
    VaoTLSError,
    VaoUsageError,
    from_exception,
)
from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer
from vaodrill.vao.client import MAX_RESPONSE_BYTES, VaoClient
from vaodrill.vao.retry import RetryPolicy, is_transient

ONCE = RetryPolicy(attempts=1)
FAST = RetryPolicy(attempts=3, backoff=0.01, max_delay=0.02)
PLAN = {"id": "b8517d70-028d-4740-a130-787e164a3d83", "name": "SQL Tier", "planState": "Enabled"}
PLAN_ID = PLAN["id"]
TOKEN = {"access_token": "token-1", "token_type": "bearer", "expires_in": 900}
Message = MutableMapping[str, Any]


@dataclass
class Reply:
    """One scripted answer: status, headers, the body in chunks, and a pause before each chunk."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: Iterable[bytes] = (b"[]",)
    pause: float = 0.0

    @classmethod
    def json(cls, data: object, status: int = 200, **kwargs: Any) -> Reply:
        return cls(status, [("content-type", "application/json")], (json.dumps(data).encode(),), **kwargs)


class ScriptedServer:
    """An ASGI app answering the token endpoint with a token and everything else as ``script`` says.

    It stops sending when the client goes away, so endless and trickling bodies end with the exchange.
    """

    def __init__(self, script: Callable[[str, str], Reply], token: Callable[[], Reply] | None = None) -> None:
        self.script = script
        self.token = token or (lambda: Reply.json(TOKEN))
        self.seen: list[tuple[str, str]] = []

    def count(self, method: str, suffix: str) -> int:
        return sum(1 for m, p in self.seen if m == method and p.endswith(suffix))

    async def __call__(
        self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        method, path = scope["method"], scope["path"]
        self.seen.append((method, path))
        reply = self.token() if path.endswith("/Token") else self.script(method, path)
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        try:
            headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in reply.headers]
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            for chunk in reply.chunks:
                await asyncio.sleep(reply.pause)  # also lets the watcher see a disconnect: writes to a closed
                if gone.is_set():  # socket do not fail, they only log a warning each
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


def endless(chunk: bytes = b"x" * 65536) -> Iterator[bytes]:
    return itertools.repeat(chunk)


def in_process(server: ScriptedServer, **options: Any) -> VaoClient:
    options.setdefault("retry", ONCE)
    return VaoClient("http://vao", "u", "p", transport=httpx.ASGITransport(app=server), **options)


@pytest.fixture
def served() -> Iterator[Callable[[ScriptedServer], str]]:
    servers: list[BackgroundServer] = []

    def serve(app: ScriptedServer) -> str:
        server = BackgroundServer(app)
        servers.append(server)
        return server.__enter__().url

    yield serve
    for server in servers:
        server.__exit__(None, None, None)


# -- response size ------------------------------------------------------------------------------------------


async def test_ten_thousand_simulator_plans_fit_with_room_to_spare() -> None:
    scenario = {
        "name": "big",
        "plans": [
            {
                "name": f"Plan number {i:05d} of a rather long name",
                "state": "Enabled",
                "failover_duration": 60,
                "description": "A plan description of moderate length, as administrators tend to write them.",
            }
            for i in range(10_000)
        ],
    }
    app = create_app(scenario)
    transport = httpx.ASGITransport(app=app)
    async with VaoClient("http://sim", "demo", "demo", transport=transport) as vao:
        plans = await vao.list_plans()
    assert len(plans) == 10_000 and plans[-1].name.startswith("Plan number 09999")
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as raw:
        token = (
            await raw.post("/v2/Token", data={"grant_type": "password", "username": "demo", "password": "demo"})
        ).json()["access_token"]
        size = len((await raw.get("/v2/FailoverPlans", headers={"Authorization": f"Bearer {token}"})).content)
    assert size * 4 < MAX_RESPONSE_BYTES  # about 5.9 MB against 32 MiB


async def test_an_endless_body_stops_at_the_cap_in_bounded_memory(served: Callable[[ScriptedServer], str]) -> None:
    url = served(ScriptedServer(lambda m, p: Reply(chunks=endless())))
    async with VaoClient(url, "u", "p", retry=ONCE, timeout=20) as vao:
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(VaoProtocolError, match="larger than the limit of 32,768 KiB"):
                await vao.list_plans()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert time.monotonic() - started < 15
    assert peak < MAX_RESPONSE_BYTES + 8 * 2**20, f"peak {peak / 2**20:.0f} MiB"


async def test_a_declared_length_above_the_cap_is_refused_unread() -> None:
    server = ScriptedServer(lambda m, p: Reply(headers=[("content-length", str(2**40))], chunks=()))
    async with in_process(server, max_response_bytes=1024) as vao:
        with pytest.raises(VaoProtocolError, match="larger than the limit of 1 KiB"):
            await vao.get_plan(PLAN_ID)


async def test_a_huge_error_body_keeps_the_status() -> None:
    server = ScriptedServer(lambda m, p: Reply(status=503, chunks=[b"{" * 1024] * 1024))
    async with in_process(server) as vao:
        with pytest.raises(VaoServerError, match=r"HTTP 503$"):
            await vao.list_plans()


# -- deadline -----------------------------------------------------------------------------------------------


async def test_a_trickling_body_cannot_stretch_the_deadline(served: Callable[[ScriptedServer], str]) -> None:
    """One byte every 0.1 s never trips the read timeout; the total deadline ends it."""
    url = served(ScriptedServer(lambda m, p: Reply(chunks=endless(b" "), pause=0.1)))
    async with VaoClient(url, "u", "p", retry=ONCE, timeout=1.0) as vao:
        started = time.monotonic()
        with pytest.raises(VaoTimeoutError, match="no complete answer within 1 s"):
            await vao.list_plans()
    # at its deadline, not before; the ceiling is generous (without the deadline it would never end)
    assert 0.9 < time.monotonic() - started < 10.0


async def test_a_trickling_answer_to_a_post_may_have_reached_the_server_and_is_not_resent(
    served: Callable[[ScriptedServer], str],
) -> None:
    server = ScriptedServer(lambda m, p: Reply(chunks=endless(b" "), pause=0.1))
    async with VaoClient(served(server), "u", "p", retry=FAST, timeout=1.0) as vao:
        with pytest.raises(VaoTimeoutError) as caught:
            await vao.undo(PLAN_ID)
    assert caught.value.may_have_reached_server
    assert server.count("POST", "/Undo") == 1


async def test_a_login_that_trickles_means_the_post_never_left(served: Callable[[ScriptedServer], str]) -> None:
    """The deadline hit during the login: the Run was never sent, so resending it is safe (and done once)."""
    logins = itertools.count()
    server = ScriptedServer(
        lambda m, p: Reply(status=200, chunks=()),
        token=lambda: Reply(chunks=endless(b" "), pause=0.1) if next(logins) == 0 else Reply.json(TOKEN),
    )
    async with VaoClient(served(server), "u", "p", retry=FAST, timeout=1.0) as vao:
        await vao.undo(PLAN_ID)
    assert server.count("POST", "/Token") == 2 and server.count("POST", "/Undo") == 1


async def test_reads_retry_within_one_deadline_each(
    served: Callable[[ScriptedServer], str], caplog: pytest.LogCaptureFixture
) -> None:
    server = ScriptedServer(lambda m, p: Reply(chunks=endless(b" "), pause=0.1))
    async with VaoClient(served(server), "u", "p", retry=FAST, timeout=0.4) as vao:
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="vaodrill.client"), pytest.raises(VaoTimeoutError):
            await vao.list_plans()
    elapsed = time.monotonic() - started
    retries = [
        r.getMessage()
        for r in caplog.records
        if "no complete answer within" in r.getMessage() and "; retry" in r.getMessage()
    ]
    assert len(retries) == 2  # three attempts, each ended by its own deadline
    assert elapsed < 10 * 3 * 0.4  # a generous ceiling: a deadline stretched by the trickle would never end


class InFlight:
    """Counts the plan requests the wrapped app is answering at once (the token endpoint aside)."""

    def __init__(self, app: ScriptedServer) -> None:
        self.app = app
        self.now = self.peak = 0

    async def __call__(
        self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http" or scope["path"].endswith("/Token"):
            return await self.app(scope, receive, send)
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


async def test_a_wave_of_calls_queues_in_the_client_not_on_the_server_nor_against_its_deadline() -> None:
    """Three waves of plans read at once, each answer taking 1 s: at most MAX_IN_FLIGHT reach the server together,
    and the last ones, which wait 2 s for a slot, still get their own 2.5 s deadline (3 s from the call: a deadline
    counted from the call would fail them). 1.5 s of headroom per exchange: 0.5 s with 0.2 s answers was used up
    once beside two CPU hogs."""
    from vaodrill.vao.client import MAX_IN_FLIGHT

    server = InFlight(ScriptedServer(lambda m, p: Reply.json(PLAN, pause=1.0)))
    with BackgroundServer(server) as background:
        async with VaoClient(background.url, "u", "p", retry=ONCE, timeout=2.5) as vao:
            plans = await asyncio.gather(*(vao.get_plan(PLAN_ID) for _ in range(3 * MAX_IN_FLIGHT)))
    assert [p.name for p in plans] == ["SQL Tier"] * 3 * MAX_IN_FLIGHT
    assert server.peak == MAX_IN_FLIGHT


# -- redirects ----------------------------------------------------------------------------------------------


async def test_a_redirect_is_not_followed_and_names_its_target() -> None:
    location = "https://admin:pa55word@elsewhere.example:9443/v2/FailoverPlans?token=abc123"
    server = ScriptedServer(lambda m, p: Reply(status=302, headers=[("location", location)], chunks=()))
    async with in_process(server, retry=FAST) as vao:
        with pytest.raises(VaoRedirected) as caught:
            await vao.list_plans()
    message = str(caught.value)
    assert "redirect to 'https://elsewhere.example:9443/v2/FailoverPlans' not followed" in message
    assert "pa55word" not in message and "abc123" not in message
    assert caught.value.location == location and caught.value.status_code == 302
    assert server.seen == [("POST", "/v2/Token"), ("GET", "/v2/FailoverPlans")]


async def test_a_redirected_login_is_not_followed() -> None:
    server = ScriptedServer(
        lambda m, p: Reply.json([]),
        token=lambda: Reply(status=307, headers=[("location", "/elsewhere/Token")], chunks=()),
    )
    async with in_process(server) as vao:
        with pytest.raises(VaoRedirected, match=r"POST http://vao/v2/Token: HTTP 307: redirect to '/elsewhere/Token'"):
            await vao.list_plans()


# -- every httpx exception ----------------------------------------------------------------------------------


class Raising(httpx.AsyncBaseTransport):
    """Answers the token request, then raises ``exc`` for every plan request (as httpx's transports do)."""

    def __init__(self, exc: Exception) -> None:
        self.exc, self.plan_requests = exc, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Token"):
            return httpx.Response(200, json=TOKEN)
        self.plan_requests += 1
        raise self.exc


def _exc(cls: type[Exception]) -> Exception:
    return cls("boom")


# (exception, error class, may the POST have reached the server)
HTTPX_ERRORS: list[tuple[Exception, type[VaoError], bool | None]] = [
    (_exc(httpx.ConnectError), VaoConnectError, False),
    (_exc(httpx.ConnectTimeout), VaoConnectError, False),
    (_exc(httpx.PoolTimeout), VaoConnectError, False),
    (_exc(httpx.ProxyError), VaoConnectError, False),
    (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), VaoTLSError, False),
    (_exc(httpx.ReadTimeout), VaoTimeoutError, True),
    (_exc(httpx.WriteTimeout), VaoTimeoutError, True),
    (_exc(httpx.ReadError), VaoResponseLost, True),
    (_exc(httpx.WriteError), VaoResponseLost, True),
    (_exc(httpx.CloseError), VaoResponseLost, True),
    (_exc(httpx.RemoteProtocolError), VaoResponseLost, True),
    (_exc(httpx.LocalProtocolError), VaoResponseLost, True),
    (_exc(httpx.NetworkError), VaoResponseLost, True),
    (_exc(httpx.TransportError), VaoResponseLost, True),
    (_exc(httpx.RequestError), VaoResponseLost, True),
    (_exc(httpx.HTTPError), VaoResponseLost, True),
    (httpx.StreamClosed(), VaoResponseLost, True),
    (httpx.StreamConsumed(), VaoResponseLost, True),
    (httpx.ResponseNotRead(), VaoResponseLost, True),
    (httpx.RequestNotRead(), VaoResponseLost, True),
    (_exc(httpx.DecodingError), VaoProtocolError, None),
    (_exc(httpx.TooManyRedirects), VaoProtocolError, None),
    (_exc(httpx.UnsupportedProtocol), VaoUsageError, None),
    (_exc(httpx.InvalidURL), VaoUsageError, None),
]


@pytest.mark.parametrize(("exc", "expected", "reached"), HTTPX_ERRORS, ids=lambda v: type(v).__name__)
async def test_every_httpx_exception_is_an_error_of_the_tree(
    exc: Exception, expected: type[VaoError], reached: bool | None
) -> None:
    transport = Raising(exc)
    async with VaoClient("http://vao", "u", "p", transport=transport, retry=FAST) as vao:
        with pytest.raises(VaoError) as caught:
            await vao.undo(PLAN_ID)
    error = caught.value
    assert type(error) is expected and "\n" not in str(error) and str(error).startswith("POST /v2/FailoverPlans/")
    if reached is not None:
        assert isinstance(error, VaoConnectionError) and error.may_have_reached_server is reached
    # A write is resent only when it provably never reached the server (and a certificate stays untrusted).
    assert transport.plan_requests == (3 if reached is False and expected is not VaoTLSError else 1)


async def test_a_broken_content_encoding_is_a_protocol_error() -> None:
    server = ScriptedServer(lambda m, p: Reply(headers=[("content-encoding", "gzip")], chunks=(b"not gzip",)))
    async with in_process(server) as vao:
        with pytest.raises(VaoProtocolError, match="content encoding is broken"):
            await vao.list_plans()


async def test_a_bad_url_is_a_usage_error() -> None:
    with pytest.raises(VaoUsageError):
        VaoClient("http://[::1", "u", "p")
    async with VaoClient("ftp://vao.example", "u", "p") as vao:
        with pytest.raises(VaoUsageError, match="URL cannot be used"):
            await vao.list_plans()


# -- hostile bodies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"[" * 200_000, VaoProtocolError),
        (200, json.dumps([PLAN, {"id": PLAN_ID, "name": 5}]).encode(), VaoProtocolError),
        (200, json.dumps({"plans": [PLAN]}).encode(), VaoProtocolError),
        (200, b"\xff\xfe\x00garbage", VaoProtocolError),
        (500, b"[" * 200_000, VaoServerError),
        (500, json.dumps({"Message": "line one\nline two\x1b[31m red " + "x" * 5000}).encode(), VaoServerError),
    ],
)
async def test_hostile_bodies_give_one_line_errors(status: int, body: bytes, expected: type[VaoError]) -> None:
    server = ScriptedServer(lambda m, p: Reply(status=status, chunks=(body,)))
    async with in_process(server) as vao:
        with pytest.raises(VaoError) as caught:
            await vao.list_plans()
    message = str(caught.value)
    assert type(caught.value) is expected
    assert message.isprintable() and len(message) < 400


@pytest.mark.parametrize(
    "token",
    [
        {"access_token": "two words"},
        {"access_token": "x" * 20000},
        {"access_token": "t", "expires_in": "NaN"},
        {"access_token": "t", "expires_in": -5},
        {"token": "t"},
        [TOKEN],
    ],
)
async def test_a_broken_token_answer_is_a_protocol_error(token: object) -> None:
    server = ScriptedServer(lambda m, p: Reply.json([PLAN]), token=lambda: Reply.json(token))
    async with in_process(server) as vao:
        with pytest.raises(VaoProtocolError, match="token response is not the expected JSON"):
            await vao.list_plans()


# -- the one classification of transient errors -------------------------------------------------------------


def _status(cls: type[VaoError], status: int) -> VaoError:
    return cls(f"HTTP {status}", status_code=status)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (VaoConnectError("x"), True),
        (VaoTimeoutError("x"), True),
        (VaoResponseLost("x"), True),
        (VaoTLSError("x"), False),
        (_status(VaoRateLimited, 429), True),
        (_status(VaoServerError, 503), True),
        (_status(VaoServerError, 500), True),
        (_status(VaoBadRequest, 400), False),
        (_status(VaoAuthError, 401), False),
        (_status(VaoForbidden, 403), False),
        (_status(VaoNotFound, 404), False),
        (VaoProtocolError("x"), False),
        (VaoUsageError("x"), False),
        (DrillError("x"), False),
        (RuntimeError("x"), False),
        (asyncio.CancelledError(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient
    assert RetryPolicy().should_retry(error, write=False, attempt=1) is transient


@pytest.mark.parametrize("location", ["ftp://elsewhere/x", "http://[::1", "https://:0/x", "\x7f", ""])
async def test_a_hostile_location_is_still_a_named_redirect(location: str) -> None:
    server = ScriptedServer(lambda m, p: Reply(status=301, headers=[("location", location)], chunks=()))
    async with in_process(server) as vao:
        with pytest.raises(VaoRedirected, match=r"^POST /v2/FailoverPlans/.*/Undo: HTTP 301: redirect") as caught:
            await vao.undo(PLAN_ID)
    assert str(caught.value).isprintable()


async def test_a_redirect_on_the_raw_http_client_maps_to_the_named_error() -> None:
    """Code that sends through the client's httpx client (vaodrill.app.doctor) gets the same error from the map."""
    server = ScriptedServer(lambda m, p: Reply(status=308, headers=[("location", "https://other:9899/v2")], chunks=()))
    async with in_process(server) as vao:
        with pytest.raises(RedirectStopped) as caught:
            await vao._http.get("/v2/FailoverPlans")
    error = from_exception(caught.value, "GET /v2/FailoverPlans", sent=True)
    assert isinstance(error, VaoRedirected) and "redirect to 'https://other:9899/v2' not followed" in str(error)
