"""Async client of the VAO REST API v2 (contract: docs/vao-api.md), on the plumbing every backend shares.

    async with VaoClient("https://vao.example:9899", "CORP\\\\drill", "secret") as vao:
        plan = await vao.get_plan(plan_id)
        await vao.run_failover(plan_id, restore_point="2026-11-27T02:00:00")

One client means one login, one token and one connection pool: share it across a drill.

Nothing a server sends can hang or exhaust this client: every exchange (login included) has a total deadline
that a trickling body cannot stretch, bodies are read under a size cap, redirects are never followed, and every
failure is a :class:`~vaodrill.errors.VaoError` with a one-line message. :class:`HttpApi` holds all of that;
:class:`VaoClient` (here) and :class:`~vaodrill.vao.vro.VroClient` add only what their API sends and reads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import SecretStr, ValidationError

from vaodrill.errors import (
    RedirectStopped,
    VaoAuthError,
    VaoNotFound,
    VaoProtocolError,
    VaoTLSError,
    VaoUsageError,
    from_exception,
    from_status,
    one_line,
    parse_json,
)
from vaodrill.vao.auth import Answer, VaoAuth
from vaodrill.vao.models import (
    ContinueOption,
    FailoverPlan,
    PlanLaunchOptions,
    ResetRequest,
    RestorePointRule,
    RunMode,
    RunRequest,
    ScheduleRequest,
)
from vaodrill.vao.retry import RetryPolicy
from vaodrill.vao.vocabulary import DEFAULT, Vocabulary

log = logging.getLogger("vaodrill.client")

#: Seconds one exchange (login, request and the whole body) may take.
DEFAULT_TIMEOUT = 30.0
#: Largest answer accepted: 10,000 plans as the simulator shapes them take about 5.9 MB (585 bytes a plan).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Exchanges one client has in flight at once: a wave of a hundred Runs or Undos waits here, in order, rather
#: than on the VAO server or in the connection pool (whose bookkeeping grows with its queue). Waiting for a slot
#: does not count against an exchange's deadline.
MAX_IN_FLIGHT = 10
#: Of an error answer only this much is read (for its ``Message``); the rest is ignored.
ERROR_BODY_BYTES = 64 * 1024
#: More plans than this in one list is not a VAO server.
MAX_PLANS = 100_000
PLANS = "/v2/FailoverPlans"
CONTINUE_PATHS = ("Continue", "Run/Continue")
_PLAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: Exceptions of one exchange that become errors of the tree (the deadline raises TimeoutError).
_EXCHANGE_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, TimeoutError)


def tls_context(*, verify: bool = True, ca_bundle: str | Path | None = None) -> ssl.SSLContext:
    """Verified TLS by default; a CA bundle for VAO's usual self-signed certificate; insecure only on request."""
    if ca_bundle is not None:
        path = Path(ca_bundle).expanduser()
        if not path.is_file():
            raise VaoTLSError(f"CA bundle not found: {path}")
        try:
            return ssl.create_default_context(cafile=str(path))
        except ssl.SSLError as exc:
            raise VaoTLSError(f"CA bundle {path} is not a usable PEM file ({exc.reason})") from None
    if verify:
        return _system_context()
    log.warning("TLS certificate verification is OFF for this VAO client: use a CA bundle instead")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def _system_context() -> ssl.SSLContext:
    """The system's trust store, loaded once per process (loading it takes tens of milliseconds)."""
    return ssl.create_default_context()


async def _stop_redirects(response: httpx.Response) -> None:
    """Take a 3xx answer out before httpx parses its Location (a hostile one makes httpx raise)."""
    if response.is_redirect:
        raise RedirectStopped(response)


@dataclass
class _Exchange:
    """Whether the request itself was handed to the transport (before that, the server cannot have acted)."""

    sent: bool = False


async def _read(response: httpx.Response, limit: int, operation: str, *, strict: bool) -> bytes:
    """The body, read in chunks up to ``limit`` bytes; beyond it an error (``strict``) or an empty body."""
    declared = response.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    if not too_large:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                too_large = True
                break
            chunks.append(chunk)
    if too_large and strict:
        raise VaoProtocolError(f"{operation}: the answer is larger than the limit of {limit // 1024:,} KiB")
    return b"" if too_large else b"".join(chunks)


class HttpApi:
    """What every backend shares: login, TLS, size caps, deadlines, redaction and the one retry policy.

    Log in with ``username`` and ``password``, or as a child client with ``client_id`` and ``client_secret``
    (used when given). ``timeout`` is the total deadline of one exchange in seconds. ``vocabulary`` reads plan
    states (the known spellings plus an administrator's ``states``). A backend says where its API lives
    (:meth:`_locate`: the server's root and the token endpoint) and what its operations send.
    """

    #: The API this backend speaks, for messages (``VAO v2``, ``VRO v13``).
    api = "?"

    def __init__(
        self,
        base_url: str,
        username: str = "",
        password: str | SecretStr = "",
        *,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        verify: bool = True,
        ca_bundle: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        vocabulary: Vocabulary = DEFAULT,
    ) -> None:
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise VaoUsageError(f"the VAO timeout must be a positive number of seconds (got {timeout!r})")
        self.base_url, token_url = self._locate(base_url.strip().rstrip("/"))
        self.username = username
        self.retry = retry or RetryPolicy()
        self.timeout = float(timeout)
        self.max_response_bytes = max_response_bytes
        self.vocabulary = vocabulary
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._auth = VaoAuth(
            token_url,
            username=username,
            password=_secret(password),
            client_id=client_id,
            client_secret=_secret(client_secret),
            clock=clock,
        )
        try:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                verify=tls_context(verify=verify, ca_bundle=ca_bundle),
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                transport=transport,
                headers={"Accept": "application/json", "User-Agent": "vaodrill"},
                follow_redirects=False,
                event_hooks={"response": [_stop_redirects]},
                limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT),
            )
        except httpx.InvalidURL as exc:
            raise VaoUsageError(f"not a usable VAO URL: {one_line(str(exc))}") from None

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying httpx client (TLS, base URL, auth, no redirects), for raw reads such as ``doctor``'s."""
        return self._http

    @property
    def token_url(self) -> str:
        return self._auth.token_url

    def _locate(self, url: str) -> tuple[str, str]:
        """The server's root URL (paths are relative to it) and the token endpoint, from the URL given."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, login={self._auth.who})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, *, json: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None
    ) -> Answer:
        """Send one operation under the retry policy, within its overall deadline; every failure is an error of
        the tree. Each retry is announced (what failed, when the next try is)."""
        operation = f"{method} {path}"

        async def attempt(left: float) -> Answer:
            return await self._attempt(
                method, path, operation, json=json, params=params, timeout=min(self.timeout, left)
            )

        return await self.retry.run(
            attempt,
            retryable=functools.partial(self.retry.retryable, write=method != "GET"),
            log=log,
            floor=self.timeout,
        )

    async def _attempt(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        json: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        timeout: float,
    ) -> Answer:
        """One exchange (with its login, and one replay after a 401 on an old token) within ``timeout``."""
        exchange = _Exchange()
        try:
            async with self._in_flight, asyncio.timeout(timeout):
                access, fresh = await self._auth.token(self._token_exchange)
                answer = await self._send(method, path, operation, access, exchange, json=json, params=params)
                if answer.status == 401 and not fresh:  # an old token: renew it once and replay (nothing ran)
                    self._auth.rejected(access)
                    access, fresh = await self._auth.token(self._token_exchange)
                    answer = await self._send(method, path, operation, access, exchange, json=json, params=params)
        except _EXCHANGE_ERRORS as exc:
            raise from_exception(exc, operation, sent=exchange.sent, deadline=timeout) from None
        log.debug("%s -> %s", operation, answer.status)
        if answer.ok:
            return answer
        error = from_status(answer.status, answer.headers, answer.body, operation, redact=self._auth.redact)
        if isinstance(error, VaoAuthError):  # a 401 even on a fresh token: stop logging in for a while
            raise self._auth.refuse(
                VaoAuthError(
                    f"{error} (with a fresh login as {self._auth.who})",
                    status_code=error.status_code,
                    server_message=error.server_message,
                    operation=operation,
                )
            )
        raise error

    async def _send(
        self,
        method: str,
        path: str,
        operation: str,
        access: str,
        exchange: _Exchange,
        *,
        json: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
    ) -> Answer:
        request = self._http.build_request(
            method, path, json=json, params=params, headers={"Authorization": f"Bearer {access}"}
        )
        exchange.sent = True
        return await self._receive(request, operation)

    async def _token_exchange(self, form: Mapping[str, str]) -> Answer:
        request = self._http.build_request("POST", self._auth.token_url, data=dict(form))
        return await self._receive(request, f"POST {self._auth.token_url}")

    async def _receive(self, request: httpx.Request, operation: str) -> Answer:
        try:
            response = await self._http.send(request, stream=True)
        except RedirectStopped as redirect:
            return Answer(redirect.status_code, redirect.headers, b"")
        try:
            success = response.is_success
            limit = self.max_response_bytes if success else ERROR_BODY_BYTES
            body = await _read(response, limit, operation, strict=success)
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, body)

    async def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        answer = await self._call("GET", path, params=params)
        try:
            return parse_json(answer.body)
        except ValueError:
            kind = one_line(answer.headers.get("content-type", "no content type"), 80)
            raise VaoProtocolError(f"GET {path}: the server answered with a non-JSON body ({kind})") from None

    async def _post(self, path: str, body: Mapping[str, Any] | None = None) -> None:
        await self._call("POST", path, json=body)


class VaoClient(HttpApi):
    """Every operation of the VAO v2 failover-plan API (``/v2``), on the shared plumbing of :class:`HttpApi`."""

    api = "VAO v2"
    plans_path = PLANS
    #: The Continue path that worked on this server (learnt at the first Continue).
    _continue_path: str | None = None

    def _locate(self, url: str) -> tuple[str, str]:
        root = url.removesuffix("/v2")
        return root, f"{root}/v2/Token"

    # -- reads ----------------------------------------------------------------------------------------

    async def list_plans(
        self, *, filter: str | None = None, orderby: str | None = None, top: int | None = None, skip: int | None = None
    ) -> list[FailoverPlan]:
        """All failover plans (OData ``$filter``/``$orderby``/``$top``/``$skip`` passed through)."""
        params = {
            k: v
            for k, v in {"$filter": filter, "$orderby": orderby, "$top": top, "$skip": skip}.items()
            if v is not None
        }
        data = await self._get_json(PLANS, params or None)
        if not isinstance(data, list):
            raise VaoProtocolError(f"GET {PLANS}: expected a JSON array of plans")
        if len(data) > MAX_PLANS:
            raise VaoProtocolError(f"GET {PLANS}: {len(data):,} plans is more than the limit of {MAX_PLANS:,}")
        return [_plan(item, f"GET {PLANS}: element {index}", self.vocabulary) for index, item in enumerate(data)]

    async def get_plan(self, plan_id: str) -> FailoverPlan:
        """One plan (accepted bare or wrapped in a one-element array, as some servers do)."""
        path = _plan_path(plan_id)
        return _plan(await self._get_json(path), f"GET {path}: the answer", self.vocabulary)

    # -- Run modes ------------------------------------------------------------------------------------

    def failover_request(
        self, plan_id: str, *, restore_point: str | None = None, execute_chained_plans: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """The path and exact body :meth:`run_failover` sends (the dry run shows them)."""
        rule = RestorePointRule(date=restore_point) if restore_point is not None else None
        return _plan_path(plan_id, "Run"), RunRequest(
            mode=RunMode.FAILOVER_NOW,
            plan_launch_options=PlanLaunchOptions(restore_point_rule=rule, execute_chained_plans=execute_chained_plans),
        ).to_json()

    def undo_path(self, plan_id: str) -> str:
        return _plan_path(plan_id, "Undo")

    def readiness_request(self, plan_id: str) -> tuple[str, dict[str, Any]]:
        """VAO v2 has no readiness check for failover plans (only ``/v2/RestorePlans/{id}/RunReadinessCheck``, for
        restore plans): asked for one, it says so before anything is sent."""
        raise VaoUsageError(
            f"a readiness check is not available on this server ({self.api} has no readiness check "
            "for failover plans; VRO's API v7.2 or v13 has one)"
        )

    async def readiness_check(self, plan_id: str) -> None:
        self.readiness_request(plan_id)

    async def run(self, plan_id: str, request: RunRequest) -> None:
        """``POST .../Run``: asynchronous, returns as soon as the plan starts. Never resent once sent."""
        await self._post(_plan_path(plan_id, "Run"), request.to_json())

    async def run_failover(
        self, plan_id: str, *, restore_point: str | None = None, execute_chained_plans: bool = False
    ) -> None:
        """Fail over to the restore point nearest before ``restore_point`` (server wall time, no offset)."""
        path, body = self.failover_request(
            plan_id, restore_point=restore_point, execute_chained_plans=execute_chained_plans
        )
        await self._post(path, body)

    async def permanent_failover(self, plan_id: str) -> None:
        await self.run(plan_id, RunRequest(mode=RunMode.PERMANENT_FAILOVER_NOW))

    async def failback(
        self, plan_id: str, *, recovery_location_id: str | None = None, restore_vm_tags: bool | None = None
    ) -> None:
        options = PlanLaunchOptions(recovery_location_id=recovery_location_id, failback_restore_vm_tags=restore_vm_tags)
        await self.run(plan_id, RunRequest(mode=RunMode.FAILBACK, plan_launch_options=options))

    async def commit_failback(self, plan_id: str) -> None:
        await self.run(plan_id, RunRequest(mode=RunMode.COMMIT_FAILBACK))

    # -- other operations -----------------------------------------------------------------------------

    async def undo(self, plan_id: str) -> None:
        await self._post(self.undo_path(plan_id))

    async def enable(self, plan_id: str) -> None:
        await self._post(_plan_path(plan_id, "Enable"))

    async def disable(self, plan_id: str) -> None:
        await self._post(_plan_path(plan_id, "Disable"))

    async def halt(self, plan_id: str, *, fullstop: bool = False) -> None:
        await self._post(_plan_path(plan_id, "Halt"), {"fullstop": fullstop})

    async def continue_plan(self, plan_id: str, option: ContinueOption | str) -> None:
        """Resume a Halted plan: ``.../Continue``, or ``.../Run/Continue`` as v1-style servers name it.

        A 404 means nothing ran, so the other path is tried exactly once, also after a path that worked for
        another plan (plans of one server may differ); the path that worked last is tried first next time.
        """
        body = {"executionContinueOptions": ContinueOption(option).value}
        first = self._continue_path or CONTINUE_PATHS[0]
        fallback = next(path for path in CONTINUE_PATHS if path != first)
        try:
            await self._post(_plan_path(plan_id, first), body)
        except VaoNotFound:
            log.info("POST .../%s answered 404: trying .../%s", first, fallback)
            await self._post(_plan_path(plan_id, fallback), body)
            first = fallback
        self._continue_path = first

    async def reset(
        self,
        plan_id: str,
        *,
        reset_state: bool = True,
        reset_change_log: bool = False,
        reset_configuration: bool = False,
    ) -> None:
        body = ResetRequest(
            reset_state=reset_state, reset_change_log=reset_change_log, reset_configuration=reset_configuration
        )
        await self._post(_plan_path(plan_id, "Reset"), body.to_json())

    async def schedule(
        self, plan_id: str, *, start_time: str | None = None, previous_plan_id: str | None = None
    ) -> None:
        """Schedule a plan at a time (server wall time) or after another plan (which wins if both given)."""
        if start_time is None and previous_plan_id is None:
            raise VaoUsageError("schedule() needs start_time or previous_plan_id")
        body = ScheduleRequest(start_time=start_time or None, previous_plan_id=previous_plan_id)
        await self._post(_plan_path(plan_id, "Schedule"), body.to_json())

    async def disable_schedule(self, plan_id: str) -> None:
        await self._post(_plan_path(plan_id, "DisableSchedule"))


def _secret(value: str | SecretStr | None) -> SecretStr | None:
    return value if value is None or isinstance(value, SecretStr) else SecretStr(value)


def _plan_path(plan_id: str, operation: str = "") -> str:
    """The path of a plan (and an operation): the id must look like an id, never like a path."""
    if not isinstance(plan_id, str) or not _PLAN_ID.fullmatch(plan_id):
        raise VaoUsageError(f"not a plan id: {one_line(repr(plan_id), 80)}")
    return f"{PLANS}/{plan_id}/{operation}" if operation else f"{PLANS}/{plan_id}"


def _plan(data: Any, where: str, vocabulary: Vocabulary) -> FailoverPlan:
    try:
        return FailoverPlan.parse(data, vocabulary)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        detail = f"{field}: {first['msg']}" if field else first["msg"]
        raise VaoProtocolError(f"{where} is not a failover plan ({one_line(detail, 120)})") from None
