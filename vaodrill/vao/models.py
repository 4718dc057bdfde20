"""Typed models of the VAO v2 wire format (docs/vao-api.md, sections 4.1-4.4).

Liberal in what we accept (unknown fields ignored, a field no decision uses kept raw whatever its type, state words
read through :mod:`vaodrill.vao.vocabulary`), strict in what we send (exact key spellings of Veeam's Run Failover page).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from vaodrill.vao.vocabulary import DEFAULT, Kind, Stage, StateRecord, Vocabulary, condition_of, spelling_key


class PlanState(StrEnum):
    """A failover plan's ``planState`` in the contract's v2 spelling (what the simulator emits by default).

    Kept for the v2 word itself; decisions use :attr:`FailoverPlan.kind` and :meth:`FailoverPlan.status`, which
    know every spelling of :data:`vaodrill.vao.vocabulary.VOCABULARY`.
    """

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
            return _STATES_BY_KEY.get(spelling_key(value), cls.UNKNOWN)
        return cls.UNKNOWN


_STATES_BY_KEY = {spelling_key(s.value): s for s in PlanState}
_STEP = re.compile(r"\bstep\s+(\d{1,9})\s+of\s+(\d{1,9})", re.IGNORECASE)

Scalar = str | int | float | bool | None


def _raw(value: Any) -> Scalar:
    """A field no decision uses, kept as the server sent it; a list or object as (bounded) JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return json.dumps(value)[:200]
    except (TypeError, ValueError, RecursionError):
        return None


def _minutes(value: Any) -> int | None:
    """A target in whole minutes, or None when the server sends something else (no target is known then)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        return int(value.strip())
    return None


Raw = Annotated[Scalar, BeforeValidator(_raw)]
Minutes = Annotated[int | None, BeforeValidator(_minutes)]


class FailoverPlan(BaseModel):
    """One failover plan as ``GET /v2/FailoverPlans`` returns it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    id: str
    name: str
    description: Raw = None
    contact_name: Raw = Field(None, alias="contactName")
    contact_email: Raw = Field(None, alias="contactEmail")
    contact_tel: Raw = Field(None, alias="contactTel")
    state: PlanState = Field(PlanState.UNKNOWN, alias="planState")
    state_raw: str | None = Field(None, description="planState exactly as the server spelled it")
    kind: Kind = Field(Kind.UNKNOWN, description="what planState means (the vocabulary; never from the server)")
    state_details: str = Field("", alias="planStateDetails")
    in_use: bool = Field(False, alias="planInUse")
    schedule_enabled: Raw = Field(None, alias="scheduleEnabled")
    schedule_type: Raw = Field(None, alias="scheduleType", description="OnTime/AfterPlan; VAO 1.0 sent 0")
    schedule_after: Raw = Field(None, alias="scheduleAfter")
    schedule_after_plan_name: Raw = Field(None, alias="scheduleAfterPlanName")
    schedule_time: Raw = Field(None, alias="scheduleTime")
    site_scope_id: Raw = Field(None, alias="siteScopeId")
    target_rpo: Minutes = Field(None, alias="targetRPO", description="minutes")
    target_rto: Minutes = Field(None, alias="targetRTO", description="minutes")

    @model_validator(mode="before")
    @classmethod
    def _tolerant(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, list) and len(data) == 1:  # some servers wrap a single plan in an array
            data = data[0]
        if isinstance(data, dict):
            data = dict(data)
            raw = data.get("planState")
            vocabulary = (info.context or {}).get("vocabulary", DEFAULT)
            data["state_raw"] = raw if isinstance(raw, str) else None
            data["planState"] = PlanState.parse(raw)
            data["kind"] = vocabulary.kind(raw)
            if data.get("planStateDetails") is None:
                data["planStateDetails"] = ""
            if data.get("planInUse") is None:
                data.pop("planInUse", None)
        return data

    @classmethod
    def parse(cls, data: Any, vocabulary: Vocabulary = DEFAULT) -> FailoverPlan:
        """A plan from the server's JSON, its state read with ``vocabulary`` (the table and the administrator's)."""
        return cls.model_validate(data, context={"vocabulary": vocabulary})

    @property
    def running(self) -> bool:
        """A stage is in progress (VAO reports this through ``planInUse`` and the details text)."""
        return self.state_details.lower().startswith("in progress") or (self.in_use and self.kind is not Kind.HALTED)

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

    def status(self, stage: Stage | None = None) -> StateRecord:
        """The normalized record the rules decide on; ``stage``: what vaodrill last started on this plan (it names
        the stage behind a word such as ``Processing``)."""
        running = self.running
        match = _STEP.search(self.state_details) if running else None
        step, steps = (int(match[1]), int(match[2])) if match and 1 <= int(match[1]) <= int(match[2]) else (None, None)
        return StateRecord(
            name=self.name,
            condition=condition_of(self.kind, running=running, complete=self.stage_complete, stage=stage),
            words=self.state_raw or self.state.value,
            details=self.state_details,
            in_use=self.in_use,
            running=running,
            step=step,
            steps=steps,
        )


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
