"""The Veeam Recovery Orchestrator backend: REST API v7.2, v7.21 and v13 (docs/vao-api.md, "VRO").

    async with VroClient("https://vro.example:9898/api/v13", "CORP\\\\drill", "secret") as vro:
        plans = await vro.list_plans()

Same plumbing as the v2 client (:class:`~vaodrill.vao.client.HttpApi`): login at ``POST /api/token`` (password,
refresh and ``client_credentials`` grants; an account that wants MFA is refused in one line), one error tree,
one retry policy, size caps and deadlines. What differs is the API: plans under ``/api/v{N}/Plans`` in a
``{data, pagination: {total}}`` envelope read page by page, the failover at ``.../Failover`` with
``restorePointDate``, and progress in ``GET /RuntimeDetails/Plans/{id}`` (``isRunningState``, ``isStableState``,
``totalProgress``). VRO has no batched runtime read: the poller's one read per interval is the plan list, whose
items carry ``state`` and ``resultName``; a plan's runtime details are read when one plan is read.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from pydantic import Field, ValidationError

from vaodrill.errors import VaoProtocolError, VaoTimeoutError, one_line
from vaodrill.vao.client import HttpApi, _plan_path
from vaodrill.vao.models import ContinueOption, FailoverPlan
from vaodrill.vao.vocabulary import DEFAULT, Kind, Stage, StateRecord, Vocabulary

#: The API versions of VRO this backend speaks (``/api/v{N}``).
VRO_VERSIONS = ("7.2", "7.21", "13")
#: Plans asked for per page (``limit``); a small installation is one request.
PAGE_SIZE = 500
#: More plans than this in one list is not a VRO server (as for v2).
MAX_PLANS = 100_000
_API_PATH = re.compile(r"/api/v(\d+(?:\.\d+)?)$", re.IGNORECASE)


class VroPlan(FailoverPlan):
    """A VRO plan, read into the same reading as a v2 plan: ``state`` is the state word (``stateName`` when the
    word is one vaodrill does not know), ``resultName`` the details. The runtime flags, when the server sends
    them, decide running and complete; without them the words and details do, as on v2."""

    running_flag: bool | None = Field(None, alias="isRunningState")
    stable: bool | None = Field(None, alias="isStableState")
    progress: int | None = Field(None, alias="totalProgress")

    @classmethod
    def parse(cls, data: Any, vocabulary: Vocabulary = DEFAULT) -> VroPlan:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        shown = dict(data)
        words = data.get("state")
        if vocabulary.kind(words) is Kind.UNKNOWN and vocabulary.kind(data.get("stateName")) is not Kind.UNKNOWN:
            words = data.get("stateName")
        shown["planState"] = words
        shown["planStateDetails"] = data.get("resultName") if isinstance(data.get("resultName"), str) else ""
        running = data.get("isRunningState")
        shown["planInUse"] = running if isinstance(running, bool) else None
        for ours, theirs in (("targetRTO", ("targetRto", "rto")), ("targetRPO", ("targetRpo", "rpo"))):
            shown.setdefault(ours, next((data[k] for k in theirs if k in data), None))
        for flag in ("isRunningState", "isStableState"):
            if not isinstance(shown.get(flag), bool):
                shown.pop(flag, None)
        progress = shown.get("totalProgress")
        if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
            shown.pop("totalProgress", None)
        plan = cls.model_validate(shown, context={"vocabulary": vocabulary})
        enabled = data.get("enabled", data.get("isEnabled"))
        if enabled is False and plan.kind in (Kind.IDLE, Kind.UNKNOWN):
            plan = plan.model_copy(update={"kind": Kind.DISABLED})
        return plan

    @property
    def running(self) -> bool:
        if self.running_flag is not None:
            return self.running_flag and self.kind is not Kind.HALTED
        return super().running

    @property
    def stage_complete(self) -> bool:
        if self.stable is not None and not self.running:
            return self.stable and not self.state_details.lower().startswith("in progress")
        return super().stage_complete

    def status(self, stage: Stage | None = None) -> StateRecord:
        record = super().status(stage)
        if self.progress is not None and record.running:
            return StateRecord(
                record.name,
                record.condition,
                record.words,
                record.details,
                record.in_use,
                record.running,
                self.progress,
                100,
            )
        return record


class VroClient(HttpApi):
    """The drill's operations on VRO's REST API; the URL names the version (``https://vro:9898/api/v13``)."""

    version = "13"
    api = "VRO v13"

    def _locate(self, url: str) -> tuple[str, str]:
        """``https://vro:9898/api/v7.21`` -> root ``https://vro:9898``, version 7.21 (no API path: v13)."""
        match = _API_PATH.search(url)
        if match is not None and match[1] in VRO_VERSIONS:
            self.version, self.api = match[1], f"VRO v{match[1]}"
            url = url[: match.start()]
        return url, f"{url}/api/token"

    @property
    def prefix(self) -> str:
        return f"/api/v{self.version}"

    @property
    def plans_path(self) -> str:
        return f"{self.prefix}/Plans"

    def _path(self, plan_id: str, operation: str = "", *, under: str = "/Plans") -> str:
        _plan_path(plan_id)  # the id must look like an id, never like a path
        return f"{self.prefix}{under}/{plan_id}" + (f"/{operation}" if operation else "")

    # -- reads ------------------------------------------------------------------------------------------

    async def list_plans(self) -> list[FailoverPlan]:
        """Every plan, page by page (``start``/``limit``), as one read within one deadline.

        A server that does not page as it says ends in one line: no envelope, a ``total`` beyond
        :data:`MAX_PLANS` or not matching what its pages hold, the same plan on two pages (``start`` ignored).
        """
        path = self.plans_path
        deadline = max(self.retry.deadline, self.timeout)
        plans: list[FailoverPlan] = []
        seen: set[str] = set()
        started = time.monotonic()
        try:
            async with asyncio.timeout(deadline):
                while True:
                    page, total = _page(await self._get_json(path, {"start": len(plans), "limit": PAGE_SIZE}), path)
                    if total is not None and total > MAX_PLANS:
                        raise VaoProtocolError(
                            f"GET {path}: a total of {total:,} plans is more than the limit of {MAX_PLANS:,}"
                        )
                    for index, item in enumerate(page):
                        plan = _plan(item, f"GET {path}: element {len(plans) + index}", self.vocabulary)
                        if plan.id.lower() in seen:
                            raise VaoProtocolError(
                                f"GET {path}: plan {plan.id} is on two pages (the server ignores start)"
                            )
                        seen.add(plan.id.lower())
                        plans.append(plan)
                    if len(plans) > (MAX_PLANS if total is None else total):
                        raise VaoProtocolError(
                            f"GET {path}: the pages hold more plans than the total the server "
                            f"gives ({total if total is not None else MAX_PLANS:,})"
                        )
                    if (total is not None and len(plans) == total) or (total is None and len(page) < PAGE_SIZE):
                        return plans
                    if not page:
                        raise VaoProtocolError(
                            f"GET {path}: the server says {total:,} plans but its pages end at {len(plans):,}"
                        )
        except TimeoutError:
            raise VaoTimeoutError(
                f"GET {path}: the plan list was not read within {time.monotonic() - started:.0f}s "
                f"({len(plans):,} plans in)"
            ) from None

    async def get_plan(self, plan_id: str) -> FailoverPlan:
        """One plan: its data (``GET /Plans/{id}``) with its runtime details (``GET /RuntimeDetails/Plans/{id}``)."""
        path = self._path(plan_id)
        data = await self._get_json(path)
        runtime_path = self._path(plan_id, under="/RuntimeDetails/Plans")
        runtime = await self._get_json(runtime_path)
        if not isinstance(data, dict) or not isinstance(runtime, dict):
            raise VaoProtocolError(
                f"GET {path if not isinstance(data, dict) else runtime_path}: expected a JSON object"
            )
        merged = data | {k: v for k, v in runtime.items() if k in _RUNTIME}
        return _plan(merged, f"GET {path}: the answer", self.vocabulary)

    # -- operations -------------------------------------------------------------------------------------

    def failover_request(
        self, plan_id: str, *, restore_point: str | None = None, execute_chained_plans: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """``POST /Plans/{id}/Failover``: ``restorePointDate`` (null: the latest) and ``executeChainedPlans``."""
        return self._path(plan_id, "Failover"), {
            "restorePointDate": restore_point,
            "executeChainedPlans": execute_chained_plans,
        }

    async def run_failover(
        self, plan_id: str, *, restore_point: str | None = None, execute_chained_plans: bool = False
    ) -> None:
        path, body = self.failover_request(
            plan_id, restore_point=restore_point, execute_chained_plans=execute_chained_plans
        )
        await self._post(path, body)

    def undo_path(self, plan_id: str) -> str:
        return self._path(plan_id, "Undo")

    async def undo(self, plan_id: str) -> None:
        await self._post(self.undo_path(plan_id))

    async def halt(self, plan_id: str, *, fullstop: bool = False) -> None:
        await self._post(self._path(plan_id, "Halt"), {"fullStop": fullstop})

    async def continue_plan(self, plan_id: str, option: ContinueOption | str) -> None:
        await self._post(self._path(plan_id, "Continue"), {"executionContinueOptions": ContinueOption(option).value})

    def readiness_request(self, plan_id: str) -> tuple[str, dict[str, Any]]:
        """``POST /Plans/{id}/ReadinessCheck`` with ``generateReport: false`` (VAO 3.0's documented body; no
        report file is written on the server: the drill's own report is the record)."""
        return self._path(plan_id, "ReadinessCheck"), {"generateReport": False}

    async def readiness_check(self, plan_id: str) -> None:
        path, body = self.readiness_request(plan_id)
        await self._post(path, body)


#: The runtime-detail fields a single read takes from ``/RuntimeDetails/Plans/{id}`` over the plan's own.
_RUNTIME = frozenset({"state", "stateName", "resultName", "isRunningState", "isStableState", "totalProgress"})


def _page(data: Any, path: str) -> tuple[list[Any], int | None]:
    """One page's items and the collection's total (``pagination.total`` or ``total``; None when not given)."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise VaoProtocolError(f"GET {path}: expected the {{data, pagination}} envelope of a VRO collection")
    pagination = data.get("pagination")
    total = pagination.get("total") if isinstance(pagination, dict) else data.get("total")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise VaoProtocolError(f"GET {path}: the collection's total is not a count ({one_line(repr(total), 40)})")
    return data["data"], total


def _plan(data: Any, where: str, vocabulary: Vocabulary) -> VroPlan:
    try:
        return VroPlan.parse(data, vocabulary)
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            detail = f"{field}: {first['msg']}" if field else first["msg"]
        else:
            detail = str(exc)
        raise VaoProtocolError(f"{where} is not a plan ({one_line(detail, 120)})") from None


__all__ = ["MAX_PLANS", "PAGE_SIZE", "VRO_VERSIONS", "VroClient", "VroPlan"]
