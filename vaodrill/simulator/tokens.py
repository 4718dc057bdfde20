"""OAuth-style token issuing and checking for ``POST /v2/Token`` (docs/vao-api.md, sections 2 and 5).

Grants:

* ``password``: ``username`` must equal the configured username exactly (``DOMAIN\\user`` is just a string to
  compare) and ``password`` the configured password. Each login starts a new *session* of that account, with a
  new random ``client_id`` (contract), or the same ``client_id`` every time under the ``same_client_id`` login
  profile (Veeam's documented behaviour).
* ``refresh_token``: a live refresh token gives a new access *and* refresh token in the same session; the old
  refresh token is consumed (single use), as ASP.NET OWIN refresh providers commonly do.
* ``client_credentials``: a *child client* listed in the scenario's ``clients`` (its ``client_id`` and
  ``client_secret``) logs in as its own account, so it never ends a person's session. For compatibility, a
  ``client_id`` that a password login returned, with the password as secret, joins that login's session.

Under the ``single_session`` login profile, a new login of an account ends the account's previous session:
its access tokens get 401 and its refresh tokens are refused ("two sessions may log each other out").

Every failure is 400 ``{"error": "invalid_grant", "error_description": ...}`` as the contract says. Lifetimes
are measured on the simulator clock in plain seconds: ``time_scale`` speeds up plans, never token expiry.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .profiles import ChildClient, LoginProfile

CLIENT_ID_NAMESPACE = uuid.UUID("6f1d1c2e-3b9a-5c47-8e0d-2a7b4c9e1f35")
"""Namespace of the stable client ids of the ``same_client_id`` login profile (uuid5 of the user name)."""


class TokenError(Exception):
    """A refused grant; the message becomes ``error_description``."""


@dataclass
class _Issued:
    client_id: str
    account: str
    session: int
    expires_at: float


class TokenStore:
    """Issued access and refresh tokens of one simulator, and the sessions they belong to."""

    def __init__(
        self,
        *,
        now: Callable[[], float],
        username: str,
        password: str,
        access_ttl: int,
        refresh_ttl: int,
        login: LoginProfile | None = None,
        clients: Sequence[ChildClient] = (),
    ) -> None:
        self._now = now
        self._username = username
        self._password = password
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._login = login or LoginProfile()
        self._children = {c.client_id: c.client_secret.get_secret_value() for c in clients}
        self._access: dict[str, _Issued] = {}
        self._refresh: dict[str, _Issued] = {}
        self._session_ids = itertools.count(1)
        self._newest: dict[str, int] = {}  # account -> its newest session
        self._logins: dict[str, tuple[str, int]] = {}  # client_id of a password login -> (account, session)

    def grant(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Handle one token request (already form-decoded); :class:`TokenError` when refused."""
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            if "username" not in form or "password" not in form:
                raise TokenError("The password grant needs username and password.")
            if not (_same(form["username"], self._username) and _same(form["password"], self._password)):
                raise TokenError("The user name or password is incorrect.")
            account = f"user:{self._username}"
            client_id = (
                str(uuid.uuid5(CLIENT_ID_NAMESPACE, self._username))
                if self._login.same_client_id
                else str(uuid.uuid4())
            )
            session = self._new_session(account)
            self._logins[client_id] = (account, session)
            return self._issue(client_id, account, session)
        if grant_type == "refresh_token":
            issued = self._refresh.pop(form.get("refresh_token", ""), None)
            if issued is None or issued.expires_at <= self._now() or not self._live(issued):
                raise TokenError("The refresh token is invalid or expired.")
            return self._issue(issued.client_id, issued.account, issued.session)
        if grant_type == "client_credentials":
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            if client_id in self._children and _same(secret, self._children[client_id]):
                account = f"client:{client_id}"
                return self._issue(client_id, account, self._new_session(account))
            joined = self._logins.get(client_id)
            if joined is not None and _same(secret, self._password) and self._session_live(*joined):
                return self._issue(client_id, *joined)
            raise TokenError("The client id or client secret is incorrect.")
        if not grant_type:
            raise TokenError("grant_type is required (send a form-encoded body).")
        raise TokenError(f"The grant type '{grant_type}' is not supported.")

    def _new_session(self, account: str) -> int:
        session = next(self._session_ids)
        self._newest[account] = session
        return session

    def _session_live(self, account: str, session: int) -> bool:
        """False for a session ended by a newer login of its account (``single_session`` only)."""
        return not self._login.single_session or self._newest.get(account) == session

    def _live(self, issued: _Issued) -> bool:
        return self._session_live(issued.account, issued.session)

    def _issue(self, client_id: str, account: str, session: int) -> dict[str, Any]:
        now = self._now()
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._access[access] = _Issued(client_id, account, session, now + self.access_ttl)
        self._refresh[refresh] = _Issued(client_id, account, session, now + self.refresh_ttl)
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
        return issued is not None and issued.expires_at > self._now() and self._live(issued)

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
