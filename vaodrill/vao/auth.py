"""Bearer-token login for VAO, shared by every request of one client, and careful with the account.

One login per client: an ``asyncio.Lock`` makes 50 simultaneous calls on a fresh client produce exactly one
token request. The token is refreshed shortly before it expires; a refused refresh falls back to a login. The
login is a password grant, or a ``client_credentials`` grant for a child client (what Veeam recommends for
tools: a drill then never logs out a person using the same account).

Fail fast instead of locking the account: a login the server refuses (400/401/403 from the token endpoint), or
a 401 on a token obtained moments ago, stops all logins of this client for :data:`LOGIN_BACKOFF` seconds; every
call meanwhile raises :class:`VaoAuthError` at once, saying when the next login will be tried. The HTTP
exchanges themselves are the client's (size cap, deadline, error mapping); this module decides what to send.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr, ValidationError

from vaodrill.errors import VaoAuthError, VaoProtocolError, VaoUsageError, from_status, server_message
from vaodrill.vao.models import TokenResponse

#: Renew when this share of the token's lifetime is left, but never less than REFRESH_MIN_MARGIN seconds.
REFRESH_SHARE = 0.1
REFRESH_MIN_MARGIN = 30.0
#: After a refused login, no new login for this many seconds (account lockout policies count failures).
LOGIN_BACKOFF = 60.0
#: Of a token answer, only this much is looked at for an MFA challenge.
ERROR_BODY_BYTES = 64 * 1024
#: Longest token lifetime believed (a server saying "forever" still gets its token renewed now and then).
MAX_LIFETIME = 86400.0


@dataclass(frozen=True)
class Answer:
    """A complete answer whose body was read under the client's size cap."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


#: Sends one form-encoded POST to the token endpoint and returns the answer.
TokenExchange = Callable[[Mapping[str, str]], Awaitable[Answer]]


@dataclass(frozen=True, repr=False)
class _Token:
    access: str
    refresh: str | None
    expires_at: float
    lifetime: float

    def fresh(self, now: float) -> bool:
        margin = min(max(REFRESH_MIN_MARGIN, self.lifetime * REFRESH_SHARE), self.lifetime / 2)
        return now < self.expires_at - margin


class VaoAuth:
    """Login (password or child client), refresh before expiry, and the login backoff."""

    def __init__(
        self,
        token_url: str,
        *,
        username: str = "",
        password: SecretStr | None = None,
        client_id: str | None = None,
        client_secret: SecretStr | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bool(client_id) != bool(client_secret and client_secret.get_secret_value()):
            raise VaoUsageError("a child client needs both a client id and a client secret")
        if not client_id and not username:
            raise VaoUsageError("no VAO credentials: give a username and password, or a client id and secret")
        self.token_url = token_url
        self.username = username
        self.client_id = client_id or None
        self._password = password or SecretStr("")
        self._client_secret = client_secret
        self._clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self._refused_until = float("-inf")
        self._refusal: VaoAuthError | None = None

    def __repr__(self) -> str:
        return f"VaoAuth(token_url={self.token_url!r}, login={self.who})"

    @property
    def who(self) -> str:
        """Whose login this is, for messages: the user name or the child client id (never a secret)."""
        return f"client {self.client_id!r}" if self.client_id else repr(self.username)

    def redact(self, text: str) -> str:
        """``text`` without the password, the client secret or a token (a server may echo them)."""
        secrets = [self._password.get_secret_value()]
        if self._client_secret is not None:
            secrets.append(self._client_secret.get_secret_value())
        if self._token is not None:
            secrets += [self._token.access, self._token.refresh or ""]
        for secret in secrets:
            if len(secret) >= 3:
                text = text.replace(secret, "********")
        return text

    async def token(self, exchange: TokenExchange) -> tuple[str, bool]:
        """A usable access token, and whether it was obtained while this call waited (a fresh login)."""
        async with self._lock:
            self._raise_if_refused()
            token = self._token
            if token is not None and token.fresh(self._clock()):
                return token.access, False
            renewed = None
            if token is not None and token.refresh:
                renewed = self._accept(
                    await exchange({"grant_type": "refresh_token", "refresh_token": token.refresh}), login=False
                )
            if renewed is None:
                renewed = self._login(await exchange(self._login_form()))
            self._token = renewed
            return renewed.access, True

    def rejected(self, access: str) -> None:
        """The server answered 401 to ``access``: the next call renews it (refresh first, then login)."""
        if self._token is not None and self._token.access == access:
            self._token = replace(self._token, expires_at=float("-inf"))

    def refuse(self, error: VaoAuthError) -> VaoAuthError:
        """Stop logging in for a while after ``error`` (a refused login or a 401 on a fresh token)."""
        self._refusal = error
        self._refused_until = self._clock() + LOGIN_BACKOFF
        if self._token is not None:
            self._token = replace(self._token, expires_at=float("-inf"))
        return self._refused_error()

    def _raise_if_refused(self) -> None:
        if self._refusal is not None and self._clock() < self._refused_until:
            raise self._refused_error()

    def _refused_error(self) -> VaoAuthError:
        assert self._refusal is not None
        wait = max(0.0, self._refused_until - self._clock())
        at = (datetime.now(UTC) + timedelta(seconds=wait)).strftime("%H:%M:%S UTC")
        cause = self._refusal
        return VaoAuthError(
            f"{cause}; no new login before {at} (in {wait:.0f} s)",
            status_code=cause.status_code,
            server_message=cause.server_message,
            operation=cause.operation,
        )

    def _login_form(self) -> dict[str, str]:
        if self.client_id and self._client_secret is not None:
            return {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret.get_secret_value(),
            }
        return {"grant_type": "password", "username": self.username, "password": self._password.get_secret_value()}

    def _accept(self, answer: Answer, *, login: bool) -> _Token | None:
        """A token from a token answer; a refused refresh is None, a refused login starts the backoff."""
        operation = f"POST {self.token_url}"
        if wants_mfa(answer):  # a second factor no unattended drill can give: refused, never retried in a loop
            raise self.refuse(
                VaoAuthError(
                    f"login as {self.who} needs multi-factor authentication (MFA), which an unattended drill cannot "
                    "answer: use an account without MFA, or a client id and secret",
                    status_code=answer.status,
                    operation=operation,
                )
            )
        if answer.ok:
            try:
                body = TokenResponse.model_validate_json(answer.body)
            except ValidationError:
                raise VaoProtocolError(f"{operation}: the token response is not the expected JSON") from None
            lifetime = min(body.expires_in, MAX_LIFETIME)
            return _Token(body.access_token, body.refresh_token, self._clock() + lifetime, lifetime)
        if answer.status not in (400, 401, 403):
            raise from_status(answer.status, answer.headers, answer.body, operation, redact=self.redact)
        if not login:
            return None
        message = server_message(answer.body)
        message = message and self.redact(message)
        text = f"login as {self.who} refused by {self.token_url} (HTTP {answer.status})"
        raise self.refuse(
            VaoAuthError(
                text + (f": {message}" if message else ""),
                status_code=answer.status,
                server_message=message,
                operation=operation,
            )
        )

    def _login(self, answer: Answer) -> _Token:
        token = self._accept(answer, login=True)
        assert token is not None  # a refused login raises
        return token


_MFA = re.compile(r"\bmfa\b|multi-?factor|two-?factor|\b2fa\b|one-?time (?:pass|code)", re.IGNORECASE)


def wants_mfa(answer: Answer) -> bool:
    """The token endpoint asks for a second factor: a success body carrying an MFA token instead of an access
    token (VRO's MFA flow), or a refusal whose message says so."""
    if answer.ok:
        try:
            body = json.loads(answer.body[:ERROR_BODY_BYTES])
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False
        return (
            isinstance(body, dict)
            and not body.get("access_token")
            and any(isinstance(key, str) and "mfa" in key.lower() for key in body)
        )
    message = server_message(answer.body) if answer.status in (400, 401, 403) else None
    return bool(message and _MFA.search(message))
