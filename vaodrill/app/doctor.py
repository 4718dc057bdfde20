"""``vaodrill doctor``: read-only checks of a VAO server before the first drill on it.

A drill should never be where a user learns that the certificate is not trusted, that the server shows idle
plans as ``Verified`` or that a plan was left failed over. This module asks the server only what it can
answer without acting: it sends the token requests (a login, then one refresh) and GETs, and never POSTs to a
plan. Everything else is read with the one token of that login, so the check opens a single session.

Each check is a line with ✓ (fine), ✗ (would stop a drill) or · (information), and a hint when there is
something to do. Exit code: 0 all good, 1 something would stop a drill, 2 cannot connect (or unusable
settings).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from vaodrill.app.doctor_plans import odata, plan_list, plan_states, single_get, state_words
from vaodrill.app.doctor_probe import Check, Diagnosis, Probe, Stop
from vaodrill.errors import VaoError, server_message
from vaodrill.spec.zones import timezone_warning
from vaodrill.vao.auth import Answer, wants_mfa
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.models import TokenResponse

#: Clock difference beyond which restore-point rules (``latest``, ``ago``) ask VAO for the wrong moment.
MAX_CLOCK_SKEW = 300.0
#: A token shorter-lived than this means a login or refresh every few polls: worth knowing, not fatal.
SHORT_TOKEN = 120.0

#: The plan list of each API, probed without a token: anything but a 404 means the server offers that API.
API_PROBES = (
    ("VAO v2", "/v2/FailoverPlans"),
    ("VRO v7.2", "/api/v7.2/Plans"),
    ("VRO v7.21", "/api/v7.21/Plans"),
    ("VRO v13", "/api/v13/Plans"),
)
CHILD_CLIENT_HINT = (
    "a child client (VAO_CLIENT_ID / VAO_CLIENT_SECRET) keeps drills from logging out people who use the same account"
)


class _Doctor(Probe):
    """The checks of the connection, the login and the clocks (the plan checks: :mod:`.doctor_plans`)."""

    async def api(self) -> None:
        """Which APIs the server offers (a plan list that is not a 404), and the one spoken; neither: exit 2."""
        offered = []
        for name, path in API_PROBES:
            if (await self.exchange("GET", path)).status != 404:
                offered.append(name)
        speaks = self.client.api
        if not offered:
            self.d.unreachable = True
            self.d.add(
                "API",
                False,
                f"{self.client.base_url} offers neither VAO's REST API v2 (/v2) nor VRO's "
                "(/api/v7.2, /api/v7.21, /api/v13): every plan list answered 404",
                "check the URL and the port: VAO serves its API on 9899, VRO on 9898",
            )
            raise Stop
        if speaks not in offered:
            self.d.unreachable = True
            self.d.add(
                "API",
                False,
                f"the URL asks for {speaks}, which this server does not offer; it offers {', '.join(offered)}",
                "end the URL with /api/v13 (or /api/v7.2, /api/v7.21) for VRO, with /v2 or no API path for VAO v2",
            )
            raise Stop
        self.d.add("API", True, f"speaks {speaks}; the server offers {', '.join(offered)}")

    def tls(self) -> None:
        s = self.settings
        if not s.url.startswith("https://"):
            self.d.add(
                "TLS",
                None,
                f"plain HTTP to {s.host}: nothing is encrypted",
                "fine for the simulator on this machine; a real VAO serves HTTPS on port 9899",
            )
        elif not s.verify_tls:
            self.d.add(
                "TLS",
                None,
                "HTTPS, but certificate verification is OFF (VAO_VERIFY_TLS=false)",
                "trust the server's certificate explicitly instead: --ca-bundle / VAO_CA_BUNDLE",
            )
        elif s.ca_bundle:
            self.d.add("TLS", True, f"HTTPS, certificate verified against the CA bundle {s.ca_bundle}")
        else:
            self.d.add("TLS", True, "HTTPS, certificate verified against the system's trusted CAs")

    async def login(self) -> TokenResponse:
        s = self.settings
        if s.client_id and s.client_secret is not None:
            grant, who = "client_credentials", f"child client {s.client_id!r}"
            form = {"grant_type": grant, "client_id": s.client_id, "client_secret": s.client_secret.get_secret_value()}
        else:
            grant, who = "password", repr(s.username)
            form = {"grant_type": grant, "username": s.username, "password": s.password.get_secret_value()}
        answer = await self.exchange("POST", self.token_url, form=form)
        if answer.status == 404:  # no token endpoint here: which API, if any, does this server offer?
            await self.api()
        if wants_mfa(answer):
            self.d.add(
                "login",
                False,
                f"{grant} grant as {who}: the account needs multi-factor authentication (MFA), "
                "which an unattended drill cannot answer",
                "use an account without MFA for drills, or a client id and secret (VAO_CLIENT_ID)",
            )
            raise Stop
        if not answer.ok:
            message = server_message(answer.body)
            self.d.add(
                "login",
                False,
                f"{grant} grant as {who} refused (HTTP {answer.status})"
                + (f": {self.redact(message)}" if message else ""),
                "check the user name (DOMAIN\\user) and the password, or the child client's id and secret",
            )
            raise Stop
        token = self._token(answer, "login")
        lifetime = token.expires_in
        hint = "" if grant == "client_credentials" else CHILD_CLIENT_HINT
        if lifetime < SHORT_TOKEN:
            hint = (
                f"tokens last only {lifetime:g} s: vaodrill renews them early, expect a token request "
                "every minute or so"
            )
        self.d.add("login", True, f"{grant} grant as {who}; the token is valid for {_duration(lifetime)}", hint)
        return token

    def _token(self, answer: Answer, name: str) -> TokenResponse:
        try:
            token = TokenResponse.model_validate_json(answer.body)
        except ValidationError:
            self.d.add(name, False, f"POST {self.token_url}: the token answer is not the expected JSON")
            raise Stop from None
        self.access = token.access_token
        return token

    async def refresh(self, token: TokenResponse) -> None:
        if not token.refresh_token:
            self.d.add(
                "token refresh",
                None,
                "the server gives no refresh token",
                "vaodrill logs in again whenever the token expires",
            )
            return
        login_token = token.access_token
        answer = await self.exchange(
            "POST", self.token_url, form={"grant_type": "refresh_token", "refresh_token": token.refresh_token}
        )
        if not answer.ok:
            self.d.add(
                "token refresh",
                None,
                f"refused (HTTP {answer.status})",
                "vaodrill logs in again instead of refreshing; that works, with one more login per token",
            )
            return
        renewed = self._token(answer, "token refresh")
        probe = await self.exchange("GET", self.client.plans_path)
        if probe.status == 401:
            self.d.add(
                "token refresh",
                False,
                "a refreshed token is refused (HTTP 401)",
                "report this: vaodrill relies on refreshed tokens during long drills",
            )
            raise Stop
        same = " (same token)" if renewed.access_token == login_token else ""
        self.d.add("token refresh", True, f"works; the new token is valid for {_duration(renewed.expires_in)}{same}")

    def server_clock(self) -> None:
        if self.server_date is None:
            self.d.add("server clock", None, "the server sends no Date header: its clock cannot be compared")
            return
        skew = self.server_date - self.local_date  # Date has whole seconds
        if abs(skew) < 2:
            self.d.add("server clock", True, "agrees with this machine's (within a second or two)")
            return
        side = "ahead of" if skew > 0 else "behind"
        detail = f"{_duration(abs(skew))} {side} this machine's"
        if abs(skew) <= MAX_CLOCK_SKEW:
            self.d.add("server clock", True, detail)
        else:
            self.d.add(
                "server clock",
                False,
                detail,
                "restore-point rules (latest, ago) are computed here and read by VAO: fix NTP on one side",
            )

    def timezone(self, drill_zone: str | None) -> None:
        """Unset, the server's zone is UTC: a drill whose rules are read in another zone would send its dates
        in the wrong wall time, so that is flagged; without a drill it is information."""
        zone = self.settings.server_timezone
        if zone != "UTC" or os.environ.get("VAO_TIMEZONE"):
            self.d.add("server time zone", True, f"{zone} (VAO reads restore-point dates in it)")
        elif drill_zone is not None and (warning := timezone_warning(drill_zone, zone)):
            self.d.add(
                "server time zone",
                False,
                warning.split(";")[0] + f" (the drill's zone is {drill_zone})",
                f"set VAO_TIMEZONE (or --vao-timezone, or the block's server_timezone) to the VAO server's "
                f"zone, e.g. VAO_TIMEZONE={drill_zone}; VAO_TIMEZONE=UTC if its clock really runs on UTC",
            )
        else:
            self.d.add(
                "server time zone",
                None,
                "not set: UTC assumed",
                "set VAO_TIMEZONE (or the block's server_timezone) to the VAO server's zone, e.g. "
                "Europe/Berlin, unless its clock runs on UTC: VAO reads restore-point dates as local time",
            )


async def diagnose(
    settings: ConnectionSettings,
    *,
    plans: Sequence[str] | None = None,
    clock: Callable[[], float] = time.time,
    drill_timezone: str | None = None,
) -> Diagnosis:
    """Check the server behind ``settings`` without changing anything on it.

    ``plans`` (names or ids, e.g. a drill's) must all be runnable; without it every plan is shown, and only a
    plan that is neither runnable nor Disabled (in use, halted, failed over, unknown state) fails the check.
    ``drill_timezone`` (a drill's zone) makes an unset server zone a failed check when the two differ.
    """
    diagnosis = Diagnosis()
    try:
        client = settings.client()
    except VaoError as exc:  # an unusable CA bundle or URL: nothing can be sent
        diagnosis.unreachable = True
        diagnosis.add("TLS" if "CA bundle" in str(exc) else "connection", False, str(exc))
        return diagnosis
    async with client:
        doctor = _Doctor(settings, client, diagnosis, clock)
        doctor.tls()
        try:
            token = await doctor.login()
            await doctor.api()
            await doctor.refresh(token)
            listed = await plan_list(doctor)
            await single_get(doctor, listed[0])
            state_words(doctor, listed)
            plan_states(doctor, listed, plans)
            await odata(doctor, listed[0])
        except Stop:
            pass
        if not diagnosis.unreachable:
            doctor.server_clock()
        doctor.timezone(drill_timezone)
    return diagnosis


def render(diagnosis: Diagnosis, console: Console) -> None:
    """One line per check: ✓ / ✗ / ·, the name, the detail, and the hint below it."""
    marks = {True: "[green]✓[/]", False: "[bold red]✗[/]", None: "[blue]·[/]"}
    for check in diagnosis.checks:
        console.print(f"{marks[check.ok]} [bold]{escape(check.name)}[/]: {escape(check.detail)}", highlight=False)
        if check.hint:
            console.print(f"    [dim]→ {escape(check.hint)}[/]", highlight=False)
    verdict = {
        0: "[green]ready for a drill[/]",
        1: "[bold red]something above would stop a drill[/]",
        2: "[bold red]cannot reach the VAO server[/]",
    }[diagnosis.exit_code]
    console.print(verdict)


def to_json(diagnosis: Diagnosis) -> dict[str, Any]:
    """The diagnosis for machines (``vaodrill doctor --json``)."""
    return {
        "exit_code": diagnosis.exit_code,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "hint": c.hint or None} for c in diagnosis.checks],
    }


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "ever"
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600, 1):g} h"


__all__ = ["Check", "Diagnosis", "diagnose", "render", "to_json"]
