"""Profiles: how closely a simulated plan or login follows the project's contract or Veeam's documented variants.

Section 5 of the contract lists what a real VAO may do differently from the project's own spelling. Each
difference is one field here; its default is the contract's behaviour (the ``contract`` profile), every other
value is a documented variant. Plan fields are set in a scenario's ``defaults``, per plan, or later with
``PATCH /_sim/plans/{id}``; login fields are set for the whole server (a scenario's ``login``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

IdleState = Literal["Enabled", "Verified", "NotVerified"]
AfterUndo = Literal["Enabled", "UndoFailover"]
SingleGet = Literal["object", "array"]
IllegalStatus = Literal[409, 400, 500]
ContinuePath = Literal["Continue", "Run/Continue", "both"]
DetailsStyle = Literal["contract", "veeam"]


class PlanProfile(BaseModel):
    """The per-plan variants of docs/vao-api.md, section 5; the defaults are the contract."""

    model_config = ConfigDict(extra="forbid")

    idle_state: IdleState = Field("Enabled", description="planState of an idle, enabled plan")
    after_undo: AfterUndo = Field(
        "Enabled", description="a finished undo returns to Enabled, or stays UndoFailover / Complete, ..."
    )
    single_get: SingleGet = Field("object", description="GET /v2/FailoverPlans/{id}: object or one-element array")
    illegal_status: IllegalStatus = Field(409, description="status of an operation the state forbids")
    continue_path: ContinuePath = Field("Continue", description=".../Continue, .../Run/Continue, or both")
    details_style: DetailsStyle = Field(
        "contract", description="'Complete, 1 warnings' (contract) or 'Complete, no errors, 1 warning' (veeam)"
    )


PLAN_PROFILE_FIELDS: tuple[str, ...] = tuple(PlanProfile.model_fields)


class LoginProfile(BaseModel):
    """Server-wide login variants of docs/vao-api.md, section 5; the defaults are the contract."""

    model_config = ConfigDict(extra="forbid")

    same_client_id: bool = Field(False, description="a password login returns the same client_id per account")
    single_session: bool = Field(
        False, description="a new login under an account ends that account's previous session (its tokens get 401)"
    )


class ChildClient(BaseModel):
    """A child client registered on the server, for the ``client_credentials`` grant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    client_secret: SecretStr


def variants() -> dict[str, dict[str, Any]]:
    """Every documented variant as scenario overrides, by name (``idle_state=Verified``, ...).

    ``contract`` is the empty override. Plan variants go into ``defaults``, login variants into ``login``.
    """
    out: dict[str, dict[str, Any]] = {"contract": {}}
    for model, section in ((PlanProfile, "defaults"), (LoginProfile, "login")):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            values = getattr(annotation, "__args__", ()) if annotation is not bool else (True,)
            for value in values:
                if value != field.default:
                    out[f"{name}={value}"] = {section: {name: value}}
    return out


def with_overrides(scenario: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``scenario`` (as data) with ``defaults``/``login`` overrides merged in, e.g. from :func:`variants`."""
    out = dict(scenario)
    for section, values in overrides.items():
        out[section] = {**(out.get(section) or {}), **values}
    return out
