"""Async client of the VAO REST API v2 (contract: shared/vao-v2-api.md).

    async with VaoClient("https://vao.example:9899", "CORP\\\\drill", "secret") as vao:
        plan = await vao.get_plan(plan_id)
        await vao.run_failover(plan_id, restore_point="2026-11-27T02:00:00")

One client means one login, one token and one connection pool: share it across a drill.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from vaodrill.auth import VaoAuth
from vaodrill.errors import (
    VaoConnectError,
    VaoError,
    VaoProtocolError,
    VaoResponseLost,
    VaoTimeoutError,
    VaoTLSError,
    from_response,
)
from vaodrill.models import (
    ContinueOption,
    FailoverPlan,
    PlanLaunchOptions,
    ResetRequest,
    RestorePointRule,
    RunMode,
    RunRequest,
    ScheduleRequest,
)
from vaodrill.restore_points import to_server_wall_time
from vaodrill.retry import RetryPolicy

log = logging.getLogger("vaodrill.client")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
PLANS = "/v2/FailoverPlans"


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
    context = ssl.create_default_context()
    if not verify:
        log.warning("TLS certificate verification is OFF for this VAO client: use a CA bundle instead")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _transport_error(exc: httpx.TransportError, operation: str) -> VaoError:
    """Classify a transport failure by whether the request may have reached the server."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in reason:
        return VaoTLSError(f"{operation}: the server's TLS certificate is not trusted (use a CA bundle)")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return VaoConnectError(f"{operation}: cannot connect to the server ({_one_line(reason)})")
    if isinstance(exc, httpx.TimeoutException):
        return VaoTimeoutError(f"{operation}: no answer in time ({type(exc).__name__})")
    return VaoResponseLost(f"{operation}: connection lost before the answer ({_one_line(reason)})")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


class VaoClient:
    """Every operation of the VAO v2 failover-plan API, with shared auth and one retry policy."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str | SecretStr,
        *,
        verify: bool = True,
        ca_bundle: str | Path | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        server_timezone: str = "UTC",
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v2")
        self.username = username
        self.server_timezone = server_timezone
        self.retry = retry or RetryPolicy()
        secret = password if isinstance(password, SecretStr) else SecretStr(password)
        self._auth = VaoAuth(f"{self.base_url}/v2/Token", username, secret)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=self._auth,
            verify=tls_context(verify=verify, ca_bundle=ca_bundle),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "vaodrill"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"VaoClient(base_url={self.base_url!r}, username={self.username!r})"

    async def __aenter__(self) -> VaoClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, json: Mapping[str, Any] | None = None,
                    params: Mapping[str, Any] | None = None) -> httpx.Response:
        """Send one operation under the retry policy and map every failure onto the error tree."""
        operation = f"{method} {path}"
        write = method != "GET"
        attempt = 0
        while True:
            attempt += 1
            error: VaoError
            try:
                response = await self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                error = _transport_error(exc, operation)
            else:
                log.debug("%s -> %s", operation, response.status_code)
                if response.is_success:
                    return response
                error = from_response(response, operation)
            if not self.retry.should_retry(error, write=write, attempt=attempt):
                raise error
            delay = self.retry.delay(error, attempt)
            log.info("%s failed (%s); retry %d in %.1fs", operation, type(error).__name__, attempt, delay)
            await asyncio.sleep(delay)

    async def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = await self._call("GET", path, params=params)
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise VaoProtocolError(f"GET {path}: the server answered with a non-JSON body ({kind})") from None

    async def _post(self, path: str, body: Mapping[str, Any] | None = None) -> None:
        await self._call("POST", path, json=body)

    # -- reads ----------------------------------------------------------------------------------------

    async def list_plans(self, *, filter: str | None = None, orderby: str | None = None,
                         top: int | None = None, skip: int | None = None) -> list[FailoverPlan]:
        """All failover plans (OData ``$filter``/``$orderby``/``$top``/``$skip`` passed through)."""
        params = {k: v for k, v in {"$filter": filter, "$orderby": orderby, "$top": top, "$skip": skip}.items()
                  if v is not None}
        return self._plans(await self._get_json(PLANS, params or None), PLANS)

    async def list_scope_plans(self, site_id: str, scope_id: str) -> list[FailoverPlan]:
        path = f"/v2/Sites/{site_id}/Scopes/{scope_id}/FailoverPlans"
        return self._plans(await self._get_json(path), path)

    async def get_plan(self, plan_id: str) -> FailoverPlan:
        """One plan (accepted bare or wrapped in a one-element array, as some servers do)."""
        path = f"{PLANS}/{plan_id}"
        data = await self._get_json(path)
        try:
            return FailoverPlan.model_validate(data)
        except ValidationError:
            raise VaoProtocolError(f"GET {path}: the answer is not a failover plan") from None

    @staticmethod
    def _plans(data: Any, path: str) -> list[FailoverPlan]:
        if not isinstance(data, list):
            raise VaoProtocolError(f"GET {path}: expected a JSON array of plans")
        try:
            return [FailoverPlan.model_validate(item) for item in data]
        except ValidationError:
            raise VaoProtocolError(f"GET {path}: an element is not a failover plan") from None

    # -- Run modes ------------------------------------------------------------------------------------

    async def run(self, plan_id: str, request: RunRequest) -> None:
        """``POST .../Run``: asynchronous, returns as soon as the plan starts. Never resent once sent."""
        await self._post(f"{PLANS}/{plan_id}/Run", request.to_json())

    async def run_failover(self, plan_id: str, *, restore_point: str | datetime | None = None,
                           execute_chained_plans: bool = False) -> None:
        """Fail over to the restore point nearest before ``restore_point`` (server wall time, or aware)."""
        rule = RestorePointRule(date=self.server_wall_time(restore_point)) if restore_point is not None else None
        await self.run(plan_id, RunRequest(mode=RunMode.FAILOVER_NOW, plan_launch_options=PlanLaunchOptions(
            restore_point_rule=rule, execute_chained_plans=execute_chained_plans)))

    async def permanent_failover(self, plan_id: str) -> None:
        await self.run(plan_id, RunRequest(mode=RunMode.PERMANENT_FAILOVER_NOW))

    async def failback(self, plan_id: str, *, recovery_location_id: str | None = None,
                       restore_vm_tags: bool | None = None) -> None:
        options = PlanLaunchOptions(recovery_location_id=recovery_location_id,
                                    failback_restore_vm_tags=restore_vm_tags)
        await self.run(plan_id, RunRequest(mode=RunMode.FAILBACK, plan_launch_options=options))

    async def commit_failback(self, plan_id: str) -> None:
        await self.run(plan_id, RunRequest(mode=RunMode.COMMIT_FAILBACK))

    # -- other operations -----------------------------------------------------------------------------

    async def undo(self, plan_id: str) -> None:
        await self._post(f"{PLANS}/{plan_id}/Undo")

    async def enable(self, plan_id: str) -> None:
        await self._post(f"{PLANS}/{plan_id}/Enable")

    async def disable(self, plan_id: str) -> None:
        await self._post(f"{PLANS}/{plan_id}/Disable")

    async def halt(self, plan_id: str, *, fullstop: bool = False) -> None:
        await self._post(f"{PLANS}/{plan_id}/Halt", {"fullstop": fullstop})

    async def continue_plan(self, plan_id: str, option: ContinueOption | str) -> None:
        await self._post(f"{PLANS}/{plan_id}/Continue", {"executionContinueOptions": ContinueOption(option).value})

    async def reset(self, plan_id: str, *, reset_state: bool = True, reset_change_log: bool = False,
                    reset_configuration: bool = False) -> None:
        body = ResetRequest(reset_state=reset_state, reset_change_log=reset_change_log,
                            reset_configuration=reset_configuration)
        await self._post(f"{PLANS}/{plan_id}/Reset", body.to_json())

    async def schedule(self, plan_id: str, *, start_time: str | datetime | None = None,
                       previous_plan_id: str | None = None) -> None:
        """Schedule a plan at a time (server wall time) or after another plan (which wins if both given)."""
        if start_time is None and previous_plan_id is None:
            raise ValueError("schedule() needs start_time or previous_plan_id")
        body = ScheduleRequest(start_time=self.server_wall_time(start_time) if start_time else None,
                               previous_plan_id=previous_plan_id)
        await self._post(f"{PLANS}/{plan_id}/Schedule", body.to_json())

    async def disable_schedule(self, plan_id: str) -> None:
        await self._post(f"{PLANS}/{plan_id}/DisableSchedule")

    # -- helpers --------------------------------------------------------------------------------------

    def server_wall_time(self, moment: str | datetime | None) -> str | None:
        """The server's local wall time with no offset, as VAO reads dates; strings are sent as given."""
        if moment is None or isinstance(moment, str):
            return moment
        if moment.tzinfo is None:
            return moment.replace(microsecond=0).isoformat()
        return to_server_wall_time(moment, self.server_timezone)
