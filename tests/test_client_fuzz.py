"""Fuzzing the client: generated statuses, headers and bodies (huge, trickling, deep, broken) from a real ASGI app.

Whatever the server sends, an operation ends in a parsed result or a :class:`VaoError` with a one-line message,
within its deadline, and never with another exception. ``benchmarks/fuzz_client.py`` runs the same cases by the
thousand and prints the counts.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_client_limits import PLAN_ID, Reply, ScriptedServer
from vaodrill.errors import VaoError
from vaodrill.vao.client import VaoClient
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.retry import RetryPolicy

DEADLINE = 0.25
CAP = 64 * 1024
#: Slack over the deadline for a loaded 2-core machine (parsing happens after the exchange).
SLACK = 1.0
OPERATIONS = ("list_plans", "get_plan", "undo", "continue_plan", "run_failover")


@dataclass(frozen=True)
class Case:
    """One generated server: how it answers the login and the operation, and which operation is called."""

    operation: str
    answer: Reply
    token: Reply | None  # None: a good token

    def describe(self) -> str:
        def one(reply: Reply) -> str:
            size = sum(len(c) for c in reply.chunks)
            headers = ", ".join(f"{k}: {v[:20]}" for k, v in reply.headers)
            return (
                f"{reply.status} [{headers}] {size} bytes in {len(tuple(reply.chunks))} chunks"
                f"{f' every {reply.pause:g} s' if reply.pause else ''}"
            )

        token = "good token" if self.token is None else f"token {one(self.token)}"
        return f"{self.operation}: {one(self.answer)}; {token}"


@dataclass(frozen=True)
class Outcome:
    kind: str  # "parsed" or the error class
    message: str
    seconds: float


def _dump(value: object) -> bytes:
    return json.dumps(value).encode()


_text = st.text(max_size=24)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=16,
)
_state = st.sampled_from(["Enabled", "Disabled", "Failover", "UNDO FAILOVER", "Halted", "Verified"]) | _text
_plan = st.fixed_dictionaries(
    {"id": st.uuids().map(str) | _text | st.integers(), "name": _text | st.none()},
    optional={
        "planState": _state | st.integers(),
        "planStateDetails": _text | st.none() | st.integers(),
        "planInUse": st.booleans() | st.none() | _text,
        "targetRTO": st.integers() | st.floats() | st.none(),
        "scheduleEnabled": st.booleans() | _json,
        "description": _text | _json,
    },
)
_good_plan = st.builds(lambda name, state: {"id": PLAN_ID, "name": name, "planState": state}, _text, _state)
_message = st.builds(
    lambda key, text: _dump({key: text}),
    st.sampled_from(["Message", "message", "error_description", "error"]),
    st.text(max_size=400),
)
bodies = st.one_of(
    st.lists(_good_plan, max_size=5).map(_dump),
    st.lists(_plan, max_size=5).map(_dump),
    _good_plan.map(_dump),
    _good_plan.map(lambda plan: _dump([plan])),
    _plan.map(_dump),
    _json.map(_dump),
    _message,
    st.binary(max_size=300),
    st.integers(1, 50_000).map(lambda depth: b"[" * depth),
    st.integers(CAP - 4, 3 * CAP).map(lambda size: b" " * size),  # around and above the cap
    st.lists(_good_plan, max_size=3).map(lambda plans: gzip.compress(_dump(plans))),
    st.just(b""),
)
_printable = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=40)
_header = st.one_of(
    st.tuples(st.just("content-type"), st.sampled_from(["application/json", "text/html", "application/xml"])),
    st.tuples(st.just("content-encoding"), st.sampled_from(["gzip", "deflate", "br", "identity", "x-junk"])),
    st.tuples(st.just("retry-after"), st.sampled_from(["0", "5", "-3", "nan", "inf", "1e309", "Wed, 21 Oct"])),
    st.tuples(st.just("content-length"), st.integers(0, 2**40).map(str)),
    st.tuples(st.sampled_from(["location", "www-authenticate", "x-anything"]), _printable),
)
statuses = st.sampled_from(
    [200, 200, 200, 204, 301, 302, 307, 400, 401, 403, 404, 409, 429, 500, 502, 503]
) | st.integers(200, 599)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    body = draw(bodies)
    pieces = draw(st.integers(1, 6))
    if draw(st.integers(0, 9)) == 0:  # a trickle: one byte at a time
        pieces, pause = min(len(body), 60) or 1, draw(st.sampled_from([0.005, 0.01, 0.02]))
    else:
        pause = draw(st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.05]))
    step = max(1, -(-len(body) // pieces))
    chunks = tuple(body[i : i + step] for i in range(0, len(body), step))
    return Reply(draw(statuses), draw(st.lists(_header, max_size=4)), chunks, pause)


cases = st.builds(Case, st.sampled_from(OPERATIONS), replies(), st.none() | st.none() | st.none() | replies())


async def run_case(case: Case) -> Outcome:
    """Call the operation against the generated server; the outcome, or an AssertionError for a broken promise."""
    token = case.token
    server = ScriptedServer(lambda method, path: case.answer, token=None if token is None else (lambda: token))
    started = time.monotonic()
    async with VaoClient(
        "http://vao",
        "u",
        "p",
        transport=httpx.ASGITransport(app=server),
        timeout=DEADLINE,
        max_response_bytes=CAP,
        retry=RetryPolicy(attempts=1),
    ) as vao:
        call: Callable[[], Awaitable[object]] = {
            "list_plans": lambda: vao.list_plans(),
            "get_plan": lambda: vao.get_plan(PLAN_ID),
            "undo": lambda: vao.undo(PLAN_ID),
            "continue_plan": lambda: vao.continue_plan(PLAN_ID, "RetryFailedStep"),
            "run_failover": lambda: vao.run_failover(PLAN_ID, restore_point="2026-11-27T02:00:00"),
        }[case.operation]
        try:
            result = await call()
        except VaoError as exc:
            outcome = Outcome(type(exc).__name__, str(exc), time.monotonic() - started)
        else:
            outcome = Outcome("parsed", "", time.monotonic() - started)
            if case.operation == "list_plans":
                assert isinstance(result, list) and all(isinstance(p, FailoverPlan) for p in result)
            elif case.operation == "get_plan":
                assert isinstance(result, FailoverPlan)
            else:
                assert result is None
    assert "\n" not in outcome.message and outcome.message.isprintable() and len(outcome.message) < 500, outcome
    exchanges = 2 if case.operation == "continue_plan" else 1  # Continue may try its second path
    assert outcome.seconds < exchanges * DEADLINE + SLACK, outcome
    return outcome


@pytest.mark.hypothesis  # its @given runs inside: the mark tells conftest to stop Prefect's websocket first
def test_any_server_answer_is_a_result_or_a_one_line_vao_error() -> None:
    """150 generated servers; also checks the generator is not stuck in one corner of the space."""
    kinds: set[str] = set()

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(cases)
    def check(case: Case) -> None:
        kinds.add(asyncio.run(run_case(case)).kind)

    check()
    assert {"parsed", "VaoProtocolError", "VaoServerError", "VaoTimeoutError", "VaoRedirected"} <= kinds, kinds
