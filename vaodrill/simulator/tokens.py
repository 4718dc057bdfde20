"""OAuth-style token issuing and checking for ``POST /v2/Token`` (contract section 2).

Grants:

* ``password``: ``username`` must equal the configured username exactly (``DOMAIN\\user`` is just a string to
  compare) and ``password`` the configured password. Each login starts a *session* with a new random
  ``client_id``.
* ``refresh_token``: a live refresh token gives a new access *and* refresh token in the same session; the old
  refresh token is consumed (single use), as ASP.NET OWIN refresh providers commonly do.
* ``client_credentials``: the contract documents it for "child clients" but not what a valid client is. The
  simulator decides: ``client_id`` must be one that a password login of this simulator returned, and
  ``client_secret`` must be the configured password. This lets a second process join a session it was handed
  the id of, while a made-up id is refused.

Every failure is 400 ``{"error": "invalid_grant", "error_description": ...}`` as the contract says. Lifetimes
are measured on the simulator clock in plain seconds: ``time_scale`` speeds up plans, never token expiry.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class TokenError(Exception):
    """A refused grant; the message becomes ``error_description``."""


@dataclass
class _Issued:
    client_id: str
    expires_at: float


class TokenStore:
    """Issued access and refresh tokens of one simulator."""

    def __init__(self, *, now: Callable[[], float], username: str, password: str, access_ttl: int,
                 refresh_ttl: int) -> None:
        self._now = now
        self._username = username
        self._password = password
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._access: dict[str, _Issued] = {}
        self._refresh: dict[str, _Issued] = {}
        self._clients: set[str] = set()

    def grant(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Handle one token request (already form-decoded); :class:`TokenError` when refused."""
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            if "username" not in form or "password" not in form:
                raise TokenError("The password grant needs username and password.")
            if not (_same(form["username"], self._username) and _same(form["password"], self._password)):
                raise TokenError("The user name or password is incorrect.")
            client_id = str(uuid.uuid4())
            self._clients.add(client_id)
            return self._issue(client_id)
        if grant_type == "refresh_token":
            issued = self._refresh.pop(form.get("refresh_token", ""), None)
            if issued is None or issued.expires_at <= self._now():
                raise TokenError("The refresh token is invalid or expired.")
            return self._issue(issued.client_id)
        if grant_type == "client_credentials":
            client_id = form.get("client_id", "")
            if client_id not in self._clients or not _same(form.get("client_secret", ""), self._password):
                raise TokenError("The client id or client secret is incorrect.")
            return self._issue(client_id)
        if not grant_type:
            raise TokenError("grant_type is required (send a form-encoded body).")
        raise TokenError(f"The grant type '{grant_type}' is not supported.")

    def _issue(self, client_id: str) -> dict[str, Any]:
        now = self._now()
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._access[access] = _Issued(client_id, now + self.access_ttl)
        self._refresh[refresh] = _Issued(client_id, now + self.refresh_ttl)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.access_ttl,
            "refresh_token": refresh,
            "client_id": client_id,
        }

    def is_valid(self, access_token: str) -> bool:
        """True when ``access_token`` was issued here and has not expired."""
        issued = self._access.get(access_token)
        return issued is not None and issued.expires_at > self._now()

    def expire_all(self, *, refresh: bool = False) -> int:
        """Expire every access token (and every refresh token with ``refresh``); returns how many."""
        count = len(self._access)
        for issued in self._access.values():
            issued.expires_at = float("-inf")
        if refresh:
            count += len(self._refresh)
            for issued in self._refresh.values():
                issued.expires_at = float("-inf")
        return count


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
