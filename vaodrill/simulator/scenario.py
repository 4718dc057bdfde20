"""Scenarios: the plans a simulator starts with, written as YAML and validated with pydantic.

A scenario is data, not code, so a drill author can describe "the SQL tier halts at step 2" without touching
Python. Example::

    timezone: Europe/Berlin          # server time zone: how Run dates without offset are read
    site_id: 3f9c6a0e-5b1d-4c1e-9a57-0d6f2b8e4a11
    scope_id: 67c365b0-2c2a-4f45-a4de-6632b56d2e9c
    defaults: {failover_duration: 180, undo_duration: 90, steps: 5,
               restore_points: {every_hours: 4, days: 7},
               idle_state: Enabled}                 # profile fields: see vaodrill.simulator.profiles
    login: {same_client_id: false, single_session: false}
    clients: [{client_id: drill-tool, client_secret: s3cret}]   # child clients (client_credentials)
    plans:
      - name: SQL Tier
        id: b8517d70-028d-4740-a130-787e164a3d83   # optional; uuid5 of the name when absent
        target_rto: 60                             # minutes
        halt_at_step: 2
        continue_path: Run/Continue                # a profile field set for one plan

Every problem is raised as one :class:`ScenarioError` line naming the source and the location, e.g.
``bad.yaml: plans[1].failover_duration: Input should be greater than 0``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from .apps import AppSpec
from .profiles import (
    PLAN_PROFILE_FIELDS,
    AfterUndo,
    ChildClient,
    ContinuePath,
    DetailsStyle,
    IdleState,
    IllegalStatus,
    LoginProfile,
    PlanProfile,
    SingleGet,
)

PLAN_ID_NAMESPACE = uuid.UUID("0b4c3c1e-8f0e-5a8e-9a6e-7a1d9f0c2b31")
"""Namespace of the stable uuid5 ids given to plans declared without an ``id``."""

DEFAULT_SITE_ID = "3f9c6a0e-5b1d-4c1e-9a57-0d6f2b8e4a11"
DEFAULT_SCOPE_ID = "67c365b0-2c2a-4f45-a4de-6632b56d2e9c"  # the siteScopeId of the contract's example


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message is one line with the source and location."""


def plan_id_for(name: str) -> str:
    """The stable id of a plan declared without one: uuid5 of its name."""
    return str(uuid.uuid5(PLAN_ID_NAMESPACE, name))


def _to_iso(value: Any) -> Any:
    """YAML turns unquoted timestamps into ``datetime``; keep them as the ISO text the user wrote."""
    return value.isoformat() if isinstance(value, datetime) else value


def _check_instant(value: str) -> str:
    try:
        datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"'{value}' is not an ISO 8601 date and time") from None
    return value


Instant = Annotated[str, BeforeValidator(_to_iso), AfterValidator(_check_instant)]
"""An ISO 8601 instant; without an offset it is read in the scenario's time zone."""


def _guid(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(f"'{value}' is not a GUID") from None
    return value


Guid = Annotated[str, BeforeValidator(_guid)]
"""A GUID, normalised to lower case with dashes so id matching can be case-insensitive."""


class PeriodicRestorePoints(BaseModel):
    """One restore point every ``every_hours`` over the last ``days``, newest at the start hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every_hours: float = Field(4, gt=0)
    days: float = Field(7, gt=0)


def _restore_points_tag(value: Any) -> str:
    return "list" if isinstance(value, list | tuple) else "periodic"


RestorePoints = Annotated[
    Annotated[PeriodicRestorePoints, Tag("periodic")] | Annotated[list[Instant], Tag("list")],
    Discriminator(_restore_points_tag),
]
"""``{every_hours, days}`` or an explicit list of ISO instants (an empty list: no restore point at all)."""


class PlanDefaults(PlanProfile):
    """Values a plan takes when it does not set them (the profile fields default to the contract)."""

    model_config = ConfigDict(extra="forbid")

    failover_duration: float = Field(180, gt=0, description="simulated seconds of Failover/PermanentFailover")
    failback_duration: float | None = Field(None, gt=0, description="Failback/CommitFailback; default: failover")
    undo_duration: float = Field(90, gt=0, description="simulated seconds of UndoFailover/UndoFailback")
    steps: int = Field(5, ge=1, le=1000)
    restore_points: RestorePoints = PeriodicRestorePoints()
    target_rto: int = Field(60, ge=0, description="minutes")
    target_rpo: int = Field(1440, ge=0, description="minutes")


ShownPhase = Literal["idle", "disabled", "running", "complete", "halted", "undoing", "undone"]
"""Where a plan is, as ``state_words`` names it: idle/disabled, a failover running or complete, halted, an undo
running, or an undo left complete (``after_undo: UndoFailover``)."""

StateWords = Annotated[dict[ShownPhase, Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=7)]
"""``planState`` words (or ``planStateDetails``) shown per phase instead of the contract's (``{"running":
"Processing"}``)."""


class StageCounts(BaseModel):
    """Warnings or errors by stage: ``failover`` (every stage that is not an undo) and ``undo``."""

    model_config = ConfigDict(extra="forbid")

    failover: int = Field(0, ge=0)
    undo: int = Field(0, ge=0)

    def of(self, undo: bool) -> int:
        return self.undo if undo else self.failover


Counts = Annotated[int, Field(ge=0)] | StageCounts
"""A number for every stage, or ``{failover: n, undo: n}``."""


def count_for(counts: int | StageCounts, *, undo: bool) -> int:
    """The warnings (or errors) a stage finishes with."""
    return counts if isinstance(counts, int) else counts.of(undo)


class _Behaviour(BaseModel):
    """Per-plan misbehaviour switches shared by scenario plans, resolved settings and PATCH bodies."""

    model_config = ConfigDict(extra="forbid")

    state_words: StateWords = Field(
        default_factory=dict, description="planState shown per phase: any spelling a real server may use"
    )
    schedule_type_shown: str | int | None = Field(
        None, description="scheduleType shown in place of OnTime/AfterPlan (VAO 1.0's example shows 0)"
    )

    halt_at_step: int | None = Field(
        None,
        ge=1,
        description="Failover/PermanentFailover/Failback/CommitFailback halt when step k fails "
        "(once per stage: Continue gets past it)",
    )
    never_finish: bool = Field(False, description="non-undo stages stay 'In progress: step T of T' forever")
    fail_undo: bool = Field(False, description="every undo halts at its last step; only Reset gets out")
    warnings: Counts = Field(
        0, description="'Complete, N warnings' for finished stages: a number for every stage, or {failover: n, undo: n}"
    )
    errors: Counts = Field(
        0,
        description="'Complete, N errors' for finished stages (wins over warnings); an "
        "undo with errors stays UndoFailover whatever after_undo says",
    )
    in_use_shown: bool | None = Field(None, description="planInUse shown whatever the plan does (None: as it does)")
    details_words: StateWords = Field(
        default_factory=dict, description="planStateDetails shown per phase ({complete: 'Complete, with warnings'})"
    )
    readiness_duration: float = Field(
        60.0, gt=0, description="simulated seconds a readiness check shows CHECKING (VRO API only)"
    )
    readiness_errors: int = Field(
        0, ge=0, description="errors a readiness check finds: 0 ends VERIFIED, more ends NOT VERIFIED"
    )


class _ProfileChoice(BaseModel):
    """The profile fields of :class:`~.profiles.PlanProfile`, unset (None) meaning "as the defaults say"."""

    model_config = ConfigDict(extra="forbid")

    idle_state: IdleState | None = None
    after_undo: AfterUndo | None = None
    single_get: SingleGet | None = None
    illegal_status: IllegalStatus | None = None
    continue_path: ContinuePath | None = None
    details_style: DetailsStyle | None = None


class PlanSpec(_Behaviour, _ProfileChoice):
    """A plan as written in a scenario; unset fields come from ``defaults``."""

    name: str = Field(min_length=1)
    id: Guid | None = None
    state: Literal["Enabled", "Disabled"] = "Enabled"
    description: str = ""
    contact_name: str = ""
    contact_email: str = ""
    contact_tel: str = ""
    target_rto: int | None = Field(None, ge=0)
    target_rpo: int | None = Field(None, ge=0)
    failover_duration: float | None = Field(None, gt=0)
    failback_duration: float | None = Field(None, gt=0)
    undo_duration: float | None = Field(None, gt=0)
    steps: int | None = Field(None, ge=1, le=1000)
    restore_points: RestorePoints | None = None
    scope_id: Guid | None = Field(None, description="default: the scenario's scope_id")
    schedule_after: str | None = Field(None, description="name or id of the plan this one runs after (AfterPlan)")
    schedule_time: Instant | None = Field(None, description="OnTime schedule, server-local unless an offset")
    app: AppSpec | None = Field(None, description="its application at the DR site (simulator.apps)")


class PlanSettings(_Behaviour, PlanProfile):
    """A plan's effective configuration: what ``PATCH /_sim/plans/{id}`` edits and stages snapshot."""

    name: str = Field(min_length=1)
    description: str
    contact_name: str
    contact_email: str
    contact_tel: str
    target_rto: int = Field(ge=0)
    target_rpo: int = Field(ge=0)
    failover_duration: float = Field(gt=0)
    failback_duration: float = Field(gt=0)
    undo_duration: float = Field(gt=0)
    steps: int = Field(ge=1, le=1000)
    restore_points: RestorePoints
    scope_id: Guid

    @model_validator(mode="after")
    def _halt_within_steps(self) -> Self:
        if self.halt_at_step is not None and self.halt_at_step > self.steps:
            raise ValueError(f"halt_at_step {self.halt_at_step} is beyond the plan's {self.steps} steps")
        return self


class PlanPatch(BaseModel):
    """Body of ``PATCH /_sim/plans/{id}``: any of :class:`PlanSettings`'s fields, checked by PlanSettings itself (one
    shape, so the two never drift apart), plus ``state`` to force the plan Enabled or Disabled right away."""

    model_config = ConfigDict(extra="allow")

    state: Literal["Enabled", "Disabled"] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The settings this patch changes, as sent."""
        return dict(self.model_extra or {})

    def apply_to(self, settings: PlanSettings) -> PlanSettings:
        """A new, validated :class:`PlanSettings` with this patch applied (``ValidationError`` if invalid)."""
        return PlanSettings.model_validate({**settings.model_dump(), **self.settings})


class Scenario(BaseModel):
    """A whole simulated VAO server: time zone, site/scope and the failover plans."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    description: str = ""
    timezone: str = "UTC"
    site_id: Guid = DEFAULT_SITE_ID
    scope_id: Guid = DEFAULT_SCOPE_ID
    defaults: PlanDefaults = Field(default_factory=lambda: PlanDefaults())
    login: LoginProfile = Field(default_factory=lambda: LoginProfile())
    clients: list[ChildClient] = Field(default_factory=list, description="child clients (client_credentials)")
    plans: list[PlanSpec] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _consistent_plans(self) -> Self:
        names: set[str] = set()
        ids: set[str] = set()
        for spec in self.plans:
            if spec.name in names:
                raise ValueError(f"two plans are named '{spec.name}'")
            names.add(spec.name)
            plan_id = spec.id or plan_id_for(spec.name)
            if plan_id in ids:
                raise ValueError(f"two plans have the id {plan_id}")
            ids.add(plan_id)
        client_ids = [c.client_id for c in self.clients]
        if len(set(client_ids)) != len(client_ids):
            raise ValueError("two child clients have the same client_id")
        for spec in self.plans:
            if spec.schedule_after is not None and self.find(spec.schedule_after) is None:
                raise ValueError(f"plan '{spec.name}': schedule_after '{spec.schedule_after}' names no plan")
            if spec.schedule_after is not None and self.find(spec.schedule_after) is spec:
                raise ValueError(f"plan '{spec.name}' cannot be scheduled after itself")
            try:
                self.settings_for(spec)
            except ValidationError as exc:
                raise ValueError(f"plan '{spec.name}': {_first_message(exc)}") from None
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def plan_id(self, spec: PlanSpec) -> str:
        return spec.id or plan_id_for(spec.name)

    def find(self, name_or_id: str) -> PlanSpec | None:
        """The plan with this name, or this id (case-insensitive)."""
        for spec in self.plans:
            if spec.name == name_or_id or self.plan_id(spec) == name_or_id.strip().lower():
                return spec
        return None

    def settings_for(self, spec: PlanSpec) -> PlanSettings:
        """Effective settings: the plan's own values over the scenario's defaults."""
        d = self.defaults
        failover = spec.failover_duration or d.failover_duration
        return PlanSettings(
            name=spec.name,
            description=spec.description,
            contact_name=spec.contact_name,
            contact_email=spec.contact_email,
            contact_tel=spec.contact_tel,
            target_rto=d.target_rto if spec.target_rto is None else spec.target_rto,
            target_rpo=d.target_rpo if spec.target_rpo is None else spec.target_rpo,
            failover_duration=failover,
            failback_duration=spec.failback_duration or d.failback_duration or failover,
            undo_duration=spec.undo_duration or d.undo_duration,
            steps=spec.steps or d.steps,
            restore_points=d.restore_points if spec.restore_points is None else spec.restore_points,
            scope_id=spec.scope_id or self.scope_id,
            **{name: getattr(spec, name) for name in _Behaviour.model_fields},  # the plan's own, as written
            **{
                name: getattr(d, name) if getattr(spec, name) is None else getattr(spec, name)
                for name in PLAN_PROFILE_FIELDS
            },
        )


# -- loading ------------------------------------------------------------------------------------------------


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``vaodrill/simulator/scenarios`` (``demo``, ...)."""
    folder = resources.files("vaodrill.simulator") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("periodic", "list"):  # discriminator tags say nothing to a scenario author
            out += f".{part}" if out else str(part)
    return out


def _first_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = _format_loc(tuple(err["loc"]))
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def validation_message(exc: ValidationError) -> str:
    """All errors of ``exc`` as one line: ``loc: message; loc: message``."""
    parts = []
    for err in exc.errors():
        loc = _format_loc(tuple(err["loc"]))
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def scenario_from_data(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed scenario data (a mapping), raising :class:`ScenarioError`."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: a scenario must be a mapping with a 'plans' list, not {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {validation_message(exc)}") from None


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse YAML (or JSON, which is YAML) scenario text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ScenarioError(f"{source}: {where}{problem}") from None
    return scenario_from_data(data, source)


def load_scenario(source: str | Path | Scenario | Mapping[str, Any]) -> Scenario:
    """A scenario from a built-in name (``"demo"``), a YAML/JSON file path, a mapping or a :class:`Scenario`."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return scenario_from_data(source)
    if isinstance(source, str) and source in builtin_scenarios():
        resource = resources.files("vaodrill.simulator") / "scenarios" / f"{source}.yaml"
        return parse_scenario(resource.read_text(encoding="utf-8"), f"{source}.yaml")
    path = Path(source).expanduser()
    if not path.is_file():
        raise ScenarioError(
            f"{source}: no such scenario file, and not a built-in scenario ({', '.join(builtin_scenarios())})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read ({exc})") from None
    return parse_scenario(text, str(path))
