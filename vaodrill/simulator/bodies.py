"""Request bodies of the ``/v2`` POST operations, bound the way ASP.NET Web API binds JSON.

ASP.NET (Json.NET) matches member names case-insensitively and ignores unknown members, which is why both
``planlaunchOptions`` and ``planLaunchOptions`` work on a real server (contract 4.4). Values, on the other hand,
are checked strictly here: an unknown enum spelling (``CommitFailback``) or a string where a boolean belongs is a
400, so a client bug shows up against the simulator instead of against production.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BadRequest
from .scenario import validation_message


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=False, frozen=True)


class RestorePointRule(_Body):
    date: str | None = None
    mode: Literal["NearestBefore", "NearestAfter"] = "NearestBefore"


class PlanLaunchOptions(_Body):
    restore_point_rule: RestorePointRule | None = Field(None, alias="restorePointRule")
    execute_chained_plans: bool = Field(False, alias="executeChainedPlans")
    recovery_location_id: str | None = Field(None, alias="recoveryLocationId")
    failback_restore_vm_tags: bool | None = Field(None, alias="failbackRestoreVMTags")


class RunBody(_Body):
    mode: Literal["FailoverNow", "PermanentFailoverNow", "Failback", "CommitFailBack"]
    plan_launch_options: PlanLaunchOptions | None = Field(None, alias="planlaunchOptions")


class HaltBody(_Body):
    fullstop: bool = False


class ContinueBody(_Body):
    execution_continue_options: Literal[
        "ProceedToNextVm",
        "ProceedToNextGroup",
        "ProceedToNextStep",
        "RetryFailedStep",
        "RetryFailedVm",
        "RetryFailedGroup",
    ] = Field(alias="executionContinueOptions")


class ResetBody(_Body):
    reset_state: bool = Field(False, alias="resetState")
    reset_change_log: bool = Field(False, alias="resetChangeLog")
    reset_configuration: bool = Field(False, alias="resetConfiguration")


class ScheduleBody(_Body):
    start_time: str | None = Field(None, alias="startTime")
    previous_plan_id: str | None = Field(None, alias="previousPlanId")


B = TypeVar("B", bound=BaseModel)


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, ``None`` when the body is empty; 400 when it is not JSON."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).") from None


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


def canonical_members(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Rename members to the model's spelling, matching case-insensitively; drop unknown members.

    Two members that differ only in case are ambiguous, so they are a 400 rather than a silent pick.
    """
    known = {(field.alias or name).lower(): (field.alias or name, field) for name, field in model.model_fields.items()}
    out: dict[str, Any] = {}
    for key, value in data.items():
        hit = known.get(key.lower())
        if hit is None:
            continue
        canonical, field = hit
        if canonical in out:
            raise BadRequest(f"The request body has '{canonical}' twice (member names are case-insensitive).")
        nested = _nested_model(field.annotation)
        out[canonical] = canonical_members(value, nested) if nested and isinstance(value, dict) else value
    return out


def parse_body(raw: bytes, model: type[B], *, required: bool) -> B:
    """Bind ``raw`` to ``model`` as ASP.NET would; every problem is a 400 with a one-line Message."""
    data = parse_json(raw)
    if data is None:
        if required:
            raise BadRequest(f"The request body is required ({_example(model)}).")
        data = {}
    if not isinstance(data, dict):
        raise BadRequest(f"The request body must be a JSON object ({_example(model)}).")
    try:
        return model.model_validate(canonical_members(data, model))
    except ValidationError as exc:
        raise BadRequest(f"Invalid request body: {validation_message(exc)}.") from None


def _example(model: type[BaseModel]) -> str:
    examples = {
        RunBody: 'e.g. {"mode": "FailoverNow", "planlaunchOptions": {"restorePointRule": {"date": '
        '"2026-11-27T02:00:00"}, "executeChainedPlans": false}}',
        HaltBody: 'e.g. {"fullstop": true}',
        ContinueBody: 'e.g. {"executionContinueOptions": "RetryFailedStep"}',
        ResetBody: 'e.g. {"resetState": true}',
        ScheduleBody: 'e.g. {"startTime": "2026-11-27T02:00:00"} or {"previousPlanId": "<id>"}',
    }
    return examples.get(model, "a JSON object")
