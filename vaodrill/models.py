"""Typed models of the VAO v2 wire format (contract sections 4.1-4.4).

Liberal in what we accept (unknown fields ignored, states compared loosely, unknown states kept), strict in
what we send (exact key spellings of Veeam's Run Failover page).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _state_key(value: str) -> str:
    return re.sub(r"[\s_\-]+", "", value).lower()


class PlanState(StrEnum):
    """A failover plan's ``planState``, in the project's spelling (contract 4.2)."""

    DISABLED = "Disabled"
    ENABLED = "Enabled"
    VERIFIED = "Verified"
    NOT_VERIFIED = "NotVerified"
    FAILOVER = "Failover"
    HALTED = "Halted"
    UNDO_FAILOVER = "UndoFailover"
    PERMANENT_FAILOVER = "PermanentFailover"
    FAILBACK = "Failback"
    UNDO_FAILBACK = "UndoFailback"
    COMMIT_FAILBACK = "CommitFailback"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, value: object) -> PlanState:
        """Map any spelling (``UNDO FAILOVER``, ``undo_failover``...) to a state; anything else is UNKNOWN."""
        if isinstance(value, str):
            return _STATES_BY_KEY.get(_state_key(value), cls.UNKNOWN)
        return cls.UNKNOWN


_STATES_BY_KEY = {_state_key(s.value): s for s in PlanState}


class FailoverPlan(BaseModel):
    """One failover plan as ``GET /v2/FailoverPlans`` returns it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    id: str
    name: str
    description: str | None = None
    contact_name: str | None = Field(None, alias="contactName")
    contact_email: str | None = Field(None, alias="contactEmail")
    contact_tel: str | None = Field(None, alias="contactTel")
    state: PlanState = Field(PlanState.UNKNOWN, alias="planState")
    state_raw: str | None = Field(None, description="planState exactly as the server spelled it")
    state_details: str = Field("", alias="planStateDetails")
    in_use: bool = Field(False, alias="planInUse")
    schedule_enabled: bool = Field(False, alias="scheduleEnabled")
    schedule_type: str | None = Field(None, alias="scheduleType")
    schedule_after: str | None = Field(None, alias="scheduleAfter")
    schedule_after_plan_name: str | None = Field(None, alias="scheduleAfterPlanName")
    schedule_time: str | None = Field(None, alias="scheduleTime")
    site_scope_id: str | None = Field(None, alias="siteScopeId")
    target_rpo: int | None = Field(None, alias="targetRPO", description="minutes")
    target_rto: int | None = Field(None, alias="targetRTO", description="minutes")

    @model_validator(mode="before")
    @classmethod
    def _tolerant(cls, data: Any) -> Any:
        if isinstance(data, list) and len(data) == 1:  # some servers wrap a single plan in an array
            data = data[0]
        if isinstance(data, dict):
            data = dict(data)
            raw = data.get("planState")
            data["state_raw"] = raw if isinstance(raw, str) else None
            data["planState"] = PlanState.parse(raw)
            if data.get("planStateDetails") is None:
                data["planStateDetails"] = ""
            for key in ("planInUse", "scheduleEnabled"):
                if data.get(key) is None:
                    data.pop(key, None)
        return data

    @property
    def running(self) -> bool:
        """A stage is in progress (VAO reports this through ``planInUse`` and the details text)."""
        return self.state_details.lower().startswith("in progress") or (
            self.in_use and self.state is not PlanState.HALTED
        )

    @property
    def stage_complete(self) -> bool:
        """The current stage finished (details ``Complete, ...``)."""
        return self.state_details.lower().startswith("complete")

    @property
    def target_rto_seconds(self) -> float | None:
        return None if self.target_rto is None else self.target_rto * 60.0

    def describe_state(self) -> str:
        state = self.state_raw or self.state.value
        return f"{state} ({self.state_details})" if self.state_details else state


class RunMode(StrEnum):
    """Run modes of ``POST /v2/FailoverPlans/{id}/Run`` (note ``CommitFailBack``'s capital B)."""

    FAILOVER_NOW = "FailoverNow"
    PERMANENT_FAILOVER_NOW = "PermanentFailoverNow"
    FAILBACK = "Failback"
    COMMIT_FAILBACK = "CommitFailBack"


class ContinueOption(StrEnum):
    """How a Halted plan resumes (``executionContinueOptions``)."""

    PROCEED_TO_NEXT_VM = "ProceedToNextVm"
    PROCEED_TO_NEXT_GROUP = "ProceedToNextGroup"
    PROCEED_TO_NEXT_STEP = "ProceedToNextStep"
    RETRY_FAILED_STEP = "RetryFailedStep"
    RETRY_FAILED_VM = "RetryFailedVm"
    RETRY_FAILED_GROUP = "RetryFailedGroup"


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class RestorePointRule(_Body):
    date: str | None = Field(None, description="server wall time, no offset: 2026-11-27T02:00:00")
    mode: str | None = None


class PlanLaunchOptions(_Body):
    restore_point_rule: RestorePointRule | None = Field(None, alias="restorePointRule")
    execute_chained_plans: bool | None = Field(None, alias="executeChainedPlans")
    recovery_location_id: str | None = Field(None, alias="recoveryLocationId")
    failback_restore_vm_tags: bool | None = Field(None, alias="failbackRestoreVMTags")


class RunRequest(_Body):
    """The Run body exactly as Veeam's Run Failover page shows it."""

    mode: RunMode
    plan_launch_options: PlanLaunchOptions | None = Field(None, alias="planlaunchOptions")


class ResetRequest(_Body):
    reset_state: bool = Field(True, alias="resetState")
    reset_change_log: bool = Field(False, alias="resetChangeLog")
    reset_configuration: bool = Field(False, alias="resetConfiguration")


class ScheduleRequest(_Body):
    start_time: str | None = Field(None, alias="startTime")
    previous_plan_id: str | None = Field(None, alias="previousPlanId")


#: A token goes into a header or a form: visible ASCII only, and not absurdly long.
_TOKEN = r"^[\x21-\x7e]{1,16384}$"


class TokenResponse(BaseModel):
    """``POST /v2/Token`` success body."""

    model_config = ConfigDict(extra="ignore")

    access_token: str = Field(pattern=_TOKEN)
    token_type: str = "bearer"
    expires_in: float = Field(900, gt=0, allow_inf_nan=False)
    refresh_token: str | None = Field(None, pattern=_TOKEN)
    client_id: str | None = None

    def __repr__(self) -> str:  # tokens are secrets
        return f"TokenResponse(expires_in={self.expires_in})"

    __str__ = __repr__
