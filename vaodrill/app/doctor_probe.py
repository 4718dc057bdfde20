"""The doctor's plumbing: the diagnosis it builds, and raw exchanges with the server that become checks.

A transport failure, an oversized answer or a refused required read is a ✗ check and :class:`Stop`: nothing
further can be checked. Secrets are redacted from whatever the server echoes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from vaodrill.errors import from_exception, one_line, parse_json, server_message
from vaodrill.vao.auth import Answer
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.orchestrator import Orchestrator


@dataclass(frozen=True)
class Check:
    """One line of the diagnosis: ``ok`` True (fine), False (would stop a drill) or None (information)."""

    name: str
    ok: bool | None
    detail: str
    hint: str = ""


@dataclass
class Diagnosis:
    """The checks in the order they ran, and whether the server could be reached at all."""

    checks: list[Check] = field(default_factory=list)
    unreachable: bool = False

    @property
    def exit_code(self) -> int:
        """0 all good, 1 something would stop a drill, 2 cannot connect."""
        if self.unreachable:
            return 2
        return 1 if any(check.ok is False for check in self.checks) else 0

    def add(self, name: str, ok: bool | None, detail: str, hint: str = "") -> Check:
        check = Check(name, ok, detail, hint)
        self.checks.append(check)
        return check


class Stop(Exception):
    """Nothing further can be checked (the reason is already a check)."""


class Probe:
    """The doctor's one HTTP client (the vaodrill client's, so TLS and timeouts are the drill's), its token, and
    the diagnosis its checks add to."""

    def __init__(
        self, settings: ConnectionSettings, client: Orchestrator, diagnosis: Diagnosis, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.client = client
        self.http: httpx.AsyncClient = client.http  # raw answers: shapes and headers the client hides
        self.token_url = client.token_url
        self.limit = client.max_response_bytes
        self.d = diagnosis
        self.clock = clock
        self.access = ""
        self.server_date: float | None = None
        self.local_date = 0.0

    def redact(self, text: str) -> str:
        secrets = [self.settings.password.get_secret_value(), self.access]
        if self.settings.client_secret is not None:
            secrets.append(self.settings.client_secret.get_secret_value())
        for secret in secrets:
            if len(secret) >= 3:
                text = text.replace(secret, "********")
        return text

    async def exchange(
        self, method: str, path: str, *, form: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None
    ) -> Answer:
        """One request within the settings' deadline and the client's size cap; a transport failure is a ✗
        ``connection`` (or ``TLS``) check and stops the diagnosis."""
        operation = f"{method} {path}"
        headers = {"Authorization": f"Bearer {self.access}"} if form is None and self.access else None
        request = self.http.build_request(method, path, data=form, params=params, headers=headers)
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self.http.send(request, stream=True)
                try:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.limit:
                            self.d.add(
                                "connection",
                                False,
                                f"{operation}: the answer is larger than {self.limit // 1024:,} KiB",
                            )
                            raise Stop
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            error = from_exception(exc, operation, sent=True, deadline=self.settings.timeout)
            tls = "TLS certificate" in str(error)
            self.d.unreachable = True
            self.d.add(
                "TLS" if tls else "connection",
                False,
                self.redact(str(error)),
                "export the server's certificate (or its CA) as PEM and pass --ca-bundle / VAO_CA_BUNDLE"
                if tls
                else f"check the URL ({self.settings.url}), the port (VAO listens on 9899) and "
                "any firewall between here and VAO",
            )
            raise Stop from None
        if self.server_date is None and (date := response.headers.get("date")):
            try:
                self.server_date = parsedate_to_datetime(date).timestamp()
                self.local_date = self.clock()
            except (TypeError, ValueError):
                pass
        return Answer(response.status_code, response.headers, bytes(body))

    async def get_json(
        self, name: str, path: str, params: Mapping[str, str] | None = None, *, required: bool = True
    ) -> Any:
        """A GET's JSON; a refusal or non-JSON answer is a ✗ (``required``) or · check named ``name``."""
        answer = await self.exchange("GET", path, params=params)
        if not answer.ok:
            message = server_message(answer.body)
            problem = f"GET {path}: HTTP {answer.status}" + (f": {self.redact(message)}" if message else "")
        else:
            try:
                return parse_json(answer.body)
            except ValueError:
                problem = f"GET {path}: the answer is not JSON ({answer.headers.get('content-type', 'no type')})"
        self.d.add(name, False if required else None, one_line(problem))
        if required:
            raise Stop
        return None


__all__ = ["Check", "Diagnosis", "Probe", "Stop"]
