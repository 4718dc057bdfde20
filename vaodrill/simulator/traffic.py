"""What happens on the wire around the API: injected faults and the request log.

Faults (``POST /_sim/faults``) model a flaky network or an overloaded server so a client's retry, timeout and
idempotency logic can be tested: an error status (e.g. 503, or 429 with ``Retry-After``), added latency, or a
dropped connection before or after the request is processed. A fault fires for a burst of ``count`` requests,
with probability ``rate`` (seeded, so a test run is reproducible), or for every matching request until deleted.

The request log records every ``/v2`` and ``/Token`` request *without secrets*: the token form is never stored,
and credentials in a query string are redacted.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
from collections import deque
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised by the app to drop a connection on purpose.

    It subclasses ``httpx.RemoteProtocolError`` so a drop looks the same to a client on both transports: through
    ``httpx.ASGITransport`` the exception itself reaches the caller (the transport re-raises app exceptions),
    and through uvicorn the server closes the socket mid-response, which httpx reports as the same class.
    """


class FaultSpec(BaseModel):
    """Body of ``POST /_sim/faults``."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field("*", description="GET, POST, ... or * for any")
    path: str = Field("*", description="fnmatch glob on the request path, e.g. /v2/FailoverPlans*")
    status: int | None = Field(None, ge=400, le=599)
    count: int | None = Field(None, ge=1, description="fire for this many matching requests, then be spent")
    rate: float | None = Field(None, ge=0, le=1, description="probability of firing per matching request")
    seed: int | None = Field(None, description="seed of the rate's RNG (default 0: reproducible)")
    retry_after: int | None = Field(None, ge=0, description="seconds; adds Retry-After, status defaults to 429")
    latency: float | None = Field(None, ge=0, le=300, description="seconds of delay before handling")
    latency_after: float | None = Field(
        None, ge=0, le=300, description="seconds of delay after handling, before the answer leaves (a slow way back)"
    )
    drop: Literal["before", "after"] | None = Field(None, description="drop the connection before/after handling")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        self.method = self.method.upper()
        if self.retry_after is not None and self.status is None:
            self.status = 429
        if self.status is None and self.drop is None and self.latency is None and self.latency_after is None:
            raise ValueError("a fault needs at least one of status, retry_after, latency, latency_after or drop")
        if self.status is not None and self.drop is not None:
            raise ValueError("status and drop exclude each other: a dropped connection has no status")
        if self.status is not None and self.latency_after is not None:
            raise ValueError("status and latency_after exclude each other: a faulted request is never handled")
        return self


class Fault:
    """An active fault: its spec plus how often it fired and its own RNG."""

    def __init__(self, fault_id: str, spec: FaultSpec) -> None:
        self.id = fault_id
        self.spec = spec
        self.fired = 0
        self._rng = random.Random(spec.seed if spec.seed is not None else 0)

    @property
    def spent(self) -> bool:
        return self.spec.count is not None and self.fired >= self.spec.count

    def matches(self, method: str, path: str) -> bool:
        return (
            not self.spent and self.spec.method in ("*", method.upper()) and fnmatch.fnmatchcase(path, self.spec.path)
        )

    def roll(self) -> bool:
        """Decide whether the fault fires for one matching request (and count it if so)."""
        if self.spec.rate is not None and self._rng.random() >= self.spec.rate:
            return False
        self.fired += 1
        return True

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec.model_dump(exclude_none=True), "fired": self.fired, "spent": self.spent}


class FaultRegistry:
    """The faults of one simulator, tried in the order they were added; at most one fires per request."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(f"fault-{next(self._ids)}", spec)
        self._faults[fault.id] = fault
        return fault

    def pick(self, method: str, path: str) -> Fault | None:
        for fault in self._faults.values():
            if fault.matches(method, path) and fault.roll():
                return fault
        return None

    def remove(self, fault_id: str) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        self._faults.clear()

    def to_json(self) -> list[dict[str, Any]]:
        return [fault.to_json() for fault in self._faults.values()]


SENSITIVE_QUERY_KEYS = frozenset({"access_token", "refresh_token", "password", "client_secret", "token"})


class RequestLog:
    """The last ``maxlen`` API requests, as plain JSON-able dicts."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def add(
        self, *, method: str, path: str, query: list[tuple[str, str]], at: str, fault: str | None, body: Any
    ) -> dict[str, Any]:
        """Append an entry (status still ``None``) and return it so the caller can fill in the status."""
        entry = {
            "method": method,
            "path": path,
            "query": {k: ("***" if k.lower() in SENSITIVE_QUERY_KEYS else v) for k, v in query},
            "status": None,
            "at": at,
            "fault": fault,
            "body": body,
        }
        self._entries.append(entry)
        return entry

    def select(self, *, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """Entries, oldest first, optionally only one method and/or paths matching an fnmatch glob."""
        return [
            entry
            for entry in self._entries
            if (method is None or entry["method"] == method.upper())
            and (path is None or fnmatch.fnmatchcase(entry["path"], path))
        ]

    def clear(self) -> None:
        self._entries.clear()
