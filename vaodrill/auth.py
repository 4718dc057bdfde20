"""Bearer-token authentication for VAO as an ``httpx.Auth`` flow.

One login per client, shared by every concurrent request: an ``asyncio.Lock`` makes 50 simultaneous calls
on a fresh client produce exactly one token request. The token is refreshed shortly before it expires; if
the refresh is refused we log in again; a 401 on a resource triggers one re-authentication and a replay
(safe even for writes: a 401 means the server refused the request before acting on it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass

import httpx
from pydantic import SecretStr, ValidationError

from vaodrill.errors import VaoAuthError, VaoProtocolError, from_response, server_message
from vaodrill.models import TokenResponse

#: Renew when this share of the token's lifetime is left, but never less than REFRESH_MIN_MARGIN seconds.
REFRESH_SHARE = 0.1
REFRESH_MIN_MARGIN = 30.0


@dataclass(frozen=True, repr=False)
class _Token:
    access: str
    refresh: str | None
    expires_at: float
    lifetime: float

    def fresh(self, now: float) -> bool:
        margin = min(max(REFRESH_MIN_MARGIN, self.lifetime * REFRESH_SHARE), self.lifetime / 2)
        return now < self.expires_at - margin


class VaoAuth(httpx.Auth):
    """Password login, refresh before expiry, one re-authentication and replay on 401."""

    def __init__(self, token_url: str, username: str, password: SecretStr,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._token_url = token_url
        self._username = username
        self._password = password
        self._clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"VaoAuth(token_url={self._token_url!r}, username={self._username!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("VaoAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        stale: _Token | None = None
        for _ in range(2):  # the request, then at most one replay after a 401
            async with self._lock:
                token = self._token
                if token is None or token is stale or not token.fresh(self._clock()):
                    renewed = None
                    if token is not None and token.refresh:
                        answer = yield self._grant(grant_type="refresh_token", refresh_token=token.refresh)
                        await answer.aread()
                        renewed = self._accept(answer, refused_ok=True)
                    if renewed is None:
                        answer = yield self._grant(grant_type="password", username=self._username,
                                                   password=self._password.get_secret_value())
                        await answer.aread()
                        renewed = self._accept(answer, refused_ok=False)
                    self._token = renewed
                token = self._token
            assert token is not None
            request.headers["Authorization"] = f"Bearer {token.access}"
            response = yield request
            if response.status_code != 401:
                return
            stale = token

    def _grant(self, **form: str) -> httpx.Request:
        return httpx.Request("POST", self._token_url, data=form, headers={"Accept": "application/json"})

    def _accept(self, response: httpx.Response, *, refused_ok: bool) -> _Token | None:
        """A token from a token response; a refusal is None when ``refused_ok`` (refresh), else an error."""
        status = response.status_code
        if status == 200:
            try:
                body = TokenResponse.model_validate_json(response.content)
            except ValidationError:
                raise VaoProtocolError(
                    f"POST {self._token_url}: the token response is not the expected JSON") from None
            lifetime = max(float(body.expires_in), 1.0)
            return _Token(body.access_token, body.refresh_token, self._clock() + lifetime, lifetime)
        if status in (400, 401) and refused_ok:
            return None
        if status in (400, 401):
            message = server_message(response)
            raise VaoAuthError(
                f"login as {self._username!r} refused by {self._token_url}" + (f": {message}" if message else ""),
                status_code=status, server_message=message, operation=f"POST {self._token_url}")
        raise from_response(response, f"POST {self._token_url}")
