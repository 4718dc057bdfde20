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

import asyncio
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from vaodrill.errors import VaoError, from_exception, one_line, parse_json, server_message
from vaodrill.spec.zones import timezone_warning
from vaodrill.vao.auth import Answer, wants_mfa
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.models import FailoverPlan, TokenResponse
from vaodrill.vao.orchestrator import Orchestrator
from vaodrill.vao.rules import not_runnable_because
from vaodrill.vao.vocabulary import Kind, classification

#: Clock difference beyond which restore-point rules (``latest``, ``ago``) ask VAO for the wrong moment.
MAX_CLOCK_SKEW = 300.0
#: A token shorter-lived than this means a login or refresh every few polls: worth knowing, not fatal.
SHORT_TOKEN = 120.0

#: The plan list of each API, probed without a token: anything but a 404 means the server offers that API.
API_PROBES = (("VAO v2", "/v2/FailoverPlans"), ("VRO v7.2", "/api/v7.2/Plans"), ("VRO v7.21", "/api/v7.21/Plans"),
              ("VRO v13", "/api/v13/Plans"))
CHILD_CLIENT_HINT = ("a child client (VAO_CLIENT_ID / VAO_CLIENT_SECRET) keeps drills from logging out people "
                     "who use the same account")


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


class _Stop(Exception):
    """Nothing further can be checked (the reason is already a check)."""


class _Doctor:
    """The checks, sharing one HTTP client (the vaodrill client's, so TLS and timeouts are the drill's)."""

    def __init__(self, settings: ConnectionSettings, client: Orchestrator, diagnosis: Diagnosis,
                 clock: Callable[[], float]) -> None:
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

    # -- plumbing ---------------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        secrets = [self.settings.password.get_secret_value(), self.access]
        if self.settings.client_secret is not None:
            secrets.append(self.settings.client_secret.get_secret_value())
        for secret in secrets:
            if len(secret) >= 3:
                text = text.replace(secret, "********")
        return text

    async def exchange(self, method: str, path: str, *, form: Mapping[str, str] | None = None,
                       params: Mapping[str, str] | None = None) -> Answer:
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
                            self.d.add("connection", False, f"{operation}: the answer is larger than "
                                       f"{self.limit // 1024:,} KiB")
                            raise _Stop
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            error = from_exception(exc, operation, sent=True, deadline=self.settings.timeout)
            tls = "TLS certificate" in str(error)
            self.d.unreachable = True
            self.d.add("TLS" if tls else "connection", False, self.redact(str(error)),
                       "export the server's certificate (or its CA) as PEM and pass --ca-bundle / VAO_CA_BUNDLE"
                       if tls else f"check the URL ({self.settings.url}), the port (VAO listens on 9899) and "
                       "any firewall between here and VAO")
            raise _Stop from None
        if self.server_date is None and (date := response.headers.get("date")):
            try:
                self.server_date = parsedate_to_datetime(date).timestamp()
                self.local_date = self.clock()
            except (TypeError, ValueError):
                pass
        return Answer(response.status_code, response.headers, bytes(body))

    async def get_json(self, name: str, path: str, params: Mapping[str, str] | None = None,
                       *, required: bool = True) -> Any:
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
            raise _Stop
        return None

    # -- checks -----------------------------------------------------------------------------------------

    async def api(self) -> None:
        """Which APIs the server offers (a plan list that is not a 404), and the one spoken; neither: exit 2."""
        offered = []
        for name, path in API_PROBES:
            if (await self.exchange("GET", path)).status != 404:
                offered.append(name)
        speaks = self.client.api
        if not offered:
            self.d.unreachable = True
            self.d.add("API", False, f"{self.client.base_url} offers neither VAO's REST API v2 (/v2) nor VRO's "
                       "(/api/v7.2, /api/v7.21, /api/v13): every plan list answered 404",
                       "check the URL and the port: VAO serves its API on 9899, VRO on 9898")
            raise _Stop
        if speaks not in offered:
            self.d.unreachable = True
            self.d.add("API", False, f"the URL asks for {speaks}, which this server does not offer; it offers "
                       f"{', '.join(offered)}", "end the URL with /api/v13 (or /api/v7.2, /api/v7.21) for VRO, "
                       "with /v2 or no API path for VAO v2")
            raise _Stop
        self.d.add("API", True, f"speaks {speaks}; the server offers {', '.join(offered)}")

    def tls(self) -> None:
        s = self.settings
        if not s.url.startswith("https://"):
            self.d.add("TLS", None, f"plain HTTP to {s.host}: nothing is encrypted",
                       "fine for the simulator on this machine; a real VAO serves HTTPS on port 9899")
        elif not s.verify_tls:
            self.d.add("TLS", None, "HTTPS, but certificate verification is OFF (VAO_VERIFY_TLS=false)",
                       "trust the server's certificate explicitly instead: --ca-bundle / VAO_CA_BUNDLE")
        elif s.ca_bundle:
            self.d.add("TLS", True, f"HTTPS, certificate verified against the CA bundle {s.ca_bundle}")
        else:
            self.d.add("TLS", True, "HTTPS, certificate verified against the system's trusted CAs")

    async def login(self) -> TokenResponse:
        s = self.settings
        if s.client_id and s.client_secret is not None:
            grant, who = "client_credentials", f"child client {s.client_id!r}"
            form = {"grant_type": grant, "client_id": s.client_id,
                    "client_secret": s.client_secret.get_secret_value()}
        else:
            grant, who = "password", repr(s.username)
            form = {"grant_type": grant, "username": s.username, "password": s.password.get_secret_value()}
        answer = await self.exchange("POST", self.token_url, form=form)
        if answer.status == 404:  # no token endpoint here: which API, if any, does this server offer?
            await self.api()
        if wants_mfa(answer):
            self.d.add("login", False, f"{grant} grant as {who}: the account needs multi-factor authentication (MFA), "
                       "which an unattended drill cannot answer",
                       "use an account without MFA for drills, or a client id and secret (VAO_CLIENT_ID)")
            raise _Stop
        if not answer.ok:
            message = server_message(answer.body)
            self.d.add("login", False, f"{grant} grant as {who} refused (HTTP {answer.status})"
                       + (f": {self.redact(message)}" if message else ""),
                       "check the user name (DOMAIN\\user) and the password, or the child client's id and secret")
            raise _Stop
        token = self._token(answer, "login")
        lifetime = token.expires_in
        hint = "" if grant == "client_credentials" else CHILD_CLIENT_HINT
        if lifetime < SHORT_TOKEN:
            hint = (f"tokens last only {lifetime:g} s: vaodrill renews them early, expect a token request "
                    "every minute or so")
        self.d.add("login", True, f"{grant} grant as {who}; the token is valid for {_duration(lifetime)}", hint)
        return token

    def _token(self, answer: Answer, name: str) -> TokenResponse:
        try:
            token = TokenResponse.model_validate_json(answer.body)
        except ValidationError:
            self.d.add(name, False, f"POST {self.token_url}: the token answer is not the expected JSON")
            raise _Stop from None
        self.access = token.access_token
        return token

    async def refresh(self, token: TokenResponse) -> None:
        if not token.refresh_token:
            self.d.add("token refresh", None, "the server gives no refresh token",
                       "vaodrill logs in again whenever the token expires")
            return
        login_token = token.access_token
        answer = await self.exchange("POST", self.token_url, form={
            "grant_type": "refresh_token", "refresh_token": token.refresh_token})
        if not answer.ok:
            self.d.add("token refresh", None, f"refused (HTTP {answer.status})",
                       "vaodrill logs in again instead of refreshing; that works, with one more login per token")
            return
        renewed = self._token(answer, "token refresh")
        probe = await self.exchange("GET", self.client.plans_path)
        if probe.status == 401:
            self.d.add("token refresh", False, "a refreshed token is refused (HTTP 401)",
                       "report this: vaodrill relies on refreshed tokens during long drills")
            raise _Stop
        same = " (same token)" if renewed.access_token == login_token else ""
        self.d.add("token refresh", True, f"works; the new token is valid for {_duration(renewed.expires_in)}{same}")

    async def plan_list(self) -> list[FailoverPlan]:
        if self.client.api != "VAO v2":  # the backend's own paged read: its envelope checks are the drill's
            try:
                plans = await self.client.list_plans()
            except VaoError as exc:
                self.d.add("plan list", False, self.redact(one_line(str(exc))))
                raise _Stop from None
            return self._listed(plans)
        data = await self.get_json("plan list", "/v2/FailoverPlans")
        if not isinstance(data, list):
            self.d.add("plan list", False, f"GET /v2/FailoverPlans: expected a JSON array, got {_kind(data)}")
            raise _Stop
        plans = []
        for index, item in enumerate(data):
            try:
                plans.append(FailoverPlan.parse(item, self.settings.vocabulary))
            except ValidationError:
                self.d.add("plan list", False, f"GET /v2/FailoverPlans: element {index} is not a failover plan")
                raise _Stop from None
        return self._listed(plans)

    def _listed(self, plans: list[FailoverPlan]) -> list[FailoverPlan]:
        if not plans:
            self.d.add("plan list", False, "no failover plans are visible to this account",
                       "give the account rights on the site or scope that holds the plans")
            raise _Stop
        self.d.add("plan list", True, f"{len(plans)} plan{'s' if len(plans) != 1 else ''}")
        return plans

    async def single_get(self, plan: FailoverPlan) -> None:
        if self.client.api != "VAO v2":
            try:
                same = (await self.client.get_plan(plan.id)).id == plan.id
            except VaoError as exc:
                self.d.add("single-plan GET", False, self.redact(one_line(str(exc))),
                           "vaodrill re-reads each plan (and its runtime details) before its failover")
                return
            self.d.add("single-plan GET", same, "the plan and its runtime details" if same else
                       f"GET {self.client.plans_path}/{plan.id} answers another plan")
            return
        data = await self.get_json("single-plan GET", f"/v2/FailoverPlans/{plan.id}")
        shape = ("an object" if isinstance(data, dict) else
                 "a one-element array" if isinstance(data, list) and len(data) == 1 else _kind(data))
        try:
            same = FailoverPlan.parse(data, self.settings.vocabulary).id == plan.id
        except ValidationError:
            same = False
        if same:
            self.d.add("single-plan GET", True, f"answers {shape}" + (" (accepted)" if shape != "an object" else ""))
        else:
            self.d.add("single-plan GET", False, f"GET /v2/FailoverPlans/{plan.id} answers {shape}, not the plan",
                       "vaodrill re-reads each plan before its Run with this request")

    def state_words(self, plans: Sequence[FailoverPlan]) -> None:
        """Each distinct state word the server showed, and how vaodrill reads it (a real server's vocabulary)."""
        seen: dict[str, int] = {}
        for plan in plans:
            words = plan.state_raw if plan.state_raw is not None else "(not a string)"
            seen[words] = seen.get(words, 0) + 1
        for words, count in seen.items():
            shown = one_line(repr(words), 80)
            unknown = self.settings.vocabulary.kind(words) is Kind.UNKNOWN
            self.d.add(f"state {shown}", None, f"on {count} plan{'s' if count != 1 else ''}; vaodrill reads it as "
                       f"{classification(words, self.settings.vocabulary)}",
                       'if you know what it means, add it to the connection settings: states / VAO_STATES, e.g. '
                       f'{{"{one_line(words, 40)}": "idle"}}' if unknown else "")

    def plan_states(self, plans: Sequence[FailoverPlan], wanted: Sequence[str] | None) -> None:
        for key in wanted or ():
            if not any(_named(plan, key) for plan in plans):
                self.d.add(f"plan {key!r}", False, "no such plan on this server (by name or id)",
                           "check the spelling: names are exact, ids are GUIDs")
        for plan in plans:
            reason = not_runnable_because(plan)
            state = plan.describe_state()
            name = f"plan {plan.name!r}"
            if reason is None:
                self.d.add(name, True, f"{state}: vaodrill would run it")
                continue
            # without a drill's plans, a disabled plan is a choice, not a problem
            counts = plan.kind is not Kind.DISABLED if wanted is None else any(_named(plan, key) for key in wanted)
            self.d.add(name, False if counts else None, f"{state}; vaodrill would not run it: {reason}",
                       _plan_hint(plan) if counts else "")

    async def odata(self, plan: FailoverPlan) -> None:
        if self.client.api != "VAO v2":
            return  # VRO pages with start/limit (the plan list above), there is no OData to check
        quoted = plan.name.replace("'", "''")
        answer = await self.exchange("GET", "/v2/FailoverPlans",
                                     params={"$filter": f"name eq '{quoted}'", "$top": "1"})
        try:
            data = parse_json(answer.body) if answer.ok else None
        except ValueError:
            data = None
        works = isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) \
            and data[0].get("name") == plan.name
        if works:
            self.d.add("OData", True, "$filter and $top work")
        else:
            what = f"HTTP {answer.status}" if not answer.ok else "an answer that ignores them"
            self.d.add("OData", None, f"$filter/$top give {what}", "vaodrill does not need OData: it lists all plans")

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
            self.d.add("server clock", False, detail,
                       "restore-point rules (latest, ago) are computed here and read by VAO: fix NTP on one side")

    def timezone(self, drill_zone: str | None) -> None:
        """Unset, the server's zone is UTC: a drill whose rules are read in another zone would send its dates
        in the wrong wall time, so that is flagged; without a drill it is information."""
        zone = self.settings.server_timezone
        if zone != "UTC" or os.environ.get("VAO_TIMEZONE"):
            self.d.add("server time zone", True, f"{zone} (VAO reads restore-point dates in it)")
        elif drill_zone is not None and (warning := timezone_warning(drill_zone, zone)):
            self.d.add("server time zone", False, warning.split(";")[0] + f" (the drill's zone is {drill_zone})",
                       f"set VAO_TIMEZONE (or --vao-timezone, or the block's server_timezone) to the VAO server's "
                       f"zone, e.g. VAO_TIMEZONE={drill_zone}; VAO_TIMEZONE=UTC if its clock really runs on UTC")
        else:
            self.d.add("server time zone", None, "not set: UTC assumed",
                       "set VAO_TIMEZONE (or the block's server_timezone) to the VAO server's zone, e.g. "
                       "Europe/Berlin, unless its clock runs on UTC: VAO reads restore-point dates as local time")


async def diagnose(settings: ConnectionSettings, *, plans: Sequence[str] | None = None,
                   clock: Callable[[], float] = time.time, drill_timezone: str | None = None) -> Diagnosis:
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
            listed = await doctor.plan_list()
            await doctor.single_get(listed[0])
            doctor.state_words(listed)
            doctor.plan_states(listed, plans)
            await doctor.odata(listed[0])
        except _Stop:
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
    verdict = {0: "[green]ready for a drill[/]", 1: "[bold red]something above would stop a drill[/]",
               2: "[bold red]cannot reach the VAO server[/]"}[diagnosis.exit_code]
    console.print(verdict)


def to_json(diagnosis: Diagnosis) -> dict[str, Any]:
    """The diagnosis for machines (``vaodrill doctor --json``)."""
    return {
        "exit_code": diagnosis.exit_code,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "hint": c.hint or None}
                   for c in diagnosis.checks],
    }


def _named(plan: FailoverPlan, key: str) -> bool:
    """``key`` names the plan: its exact name, or its id in any case."""
    return plan.name == key or plan.id.lower() == key.strip().lower()


def _plan_hint(plan: FailoverPlan) -> str:
    if plan.kind is Kind.DISABLED:
        return "enable the plan in VAO, or leave it out of the drill"
    if plan.kind is Kind.UNKNOWN:
        return "vaodrill refuses states it does not know: report the state's spelling, or map it (states)"
    return "a previous run may have left it failed over or running: check it in VAO before a drill"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "ever"
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600, 1):g} h"


def _kind(data: Any) -> str:
    if isinstance(data, list):
        return f"an array of {len(data)}"
    return {dict: "an object", str: "a string", type(None): "null"}.get(type(data), type(data).__name__)


__all__ = ["Check", "Diagnosis", "diagnose", "render", "to_json"]
