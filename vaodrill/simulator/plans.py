"""A simulated plan: its settings, status, stages, schedule and readiness check, and :class:`PlanView`, what it
shows (the API's plan body, the control plane's record). The :class:`~.engine.Simulator` owns the plans and
changes them; nothing here changes anything."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from vaodrill.vao.models import PlanState

from .scenario import (
    PlanSettings,
    ShownPhase,
)
from .states import (
    DISABLED,
    ENABLED,
    Phase,
    Status,
)
from .timeutil import iso_utc, local_naive

Progression = Literal["time", "tick"]
StageStatus = Literal["running", "halted", "completed", "aborted"]


@dataclass
class Stage:
    """One run of one stage (Failover, UndoFailover, ...), with the config it started with."""

    kind: PlanState
    mode: str
    steps: int
    duration: float  # simulated seconds
    rate: float  # steps per clock second (time progression)
    started_at: float
    resumed_at: float
    triggered_by: str
    halt_at: int | None
    halt_repeats: bool
    never_finish: bool
    warnings: int
    errors: int
    details_style: str
    undo_stays: bool  # a finished UndoFailover stays UndoFailover (after_undo profile)
    restore_point_requested: str | None = None
    restore_point_mode: str | None = None
    restore_point_used: float | None = None
    execute_chained_plans: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    done: float = 0.0  # steps completed as of resumed_at (tick: as of now)
    status: StageStatus = "running"
    ended_at: float | None = None
    halt_reason: str = ""
    halts: list[dict[str, Any]] = field(default_factory=list)
    continues: list[dict[str, Any]] = field(default_factory=list)

    def complete_details(self) -> str:
        """``planStateDetails`` of the finished stage: docs/vao-api.md, sections 4.2 and 5 (Veeam's wording)."""
        if self.details_style == "veeam":
            return f"Complete, {_count(self.errors, 'error')}, {_count(self.warnings, 'warning')}"
        if self.errors:
            return f"Complete, {self.errors} errors"
        if self.warnings:
            return f"Complete, {self.warnings} warnings"
        return "Complete, no errors, no warnings"


@dataclass
class Check:
    """One readiness check (VRO): the plan shows CHECKING until ``ends_at``, then VERIFIED, or NOT VERIFIED when
    the check found errors (VRO's user guide names these states; the details wording is vaodrill's guess)."""

    started_at: float
    ends_at: float
    errors: int

    def words(self, now: float) -> str:
        return "CHECKING" if now < self.ends_at else "NOT VERIFIED" if self.errors else "VERIFIED"

    def details(self, now: float) -> str:
        if now < self.ends_at:
            return "In progress: readiness check"
        return f"Complete, {_count(self.errors, 'error')}" if self.errors else "Complete, no errors"


def _count(n: int, noun: str) -> str:
    """``no errors``, ``1 error``, ``2 errors``."""
    return f"no {noun}s" if n == 0 else f"{n} {noun}" + ("" if n == 1 else "s")


def _shown_phase(status: Status) -> ShownPhase | None:
    """The ``state_words`` key of a status; other stages (failback, permanent failover) have none."""
    if status.phase is Phase.IDLE:
        return "disabled" if status == DISABLED else "idle"
    if status.phase is Phase.HALTED:
        return "halted"
    if status.stage is PlanState.FAILOVER:
        return "running" if status.phase is Phase.RUNNING else "complete"
    if status.stage is PlanState.UNDO_FAILOVER:
        return "undoing" if status.phase is Phase.RUNNING else "undone"
    return None


IDLE_DETAILS = {"NotVerified": "Never checked or tested"}
"""``planStateDetails`` of an idle plan by what it shows; ``Ready`` otherwise."""


@dataclass
class Schedule:
    enabled: bool = False
    type: Literal["OnTime", "AfterPlan"] | None = None
    after: str = ""  # plan id (AfterPlan)
    time: float | None = None  # instant (OnTime)


@dataclass
class Plan:
    id: str
    settings: PlanSettings
    status: Status
    restore_points: list[float]  # epoch seconds, newest first
    schedule: Schedule = field(default_factory=Schedule)
    current: Stage | None = None
    history: list[Stage] = field(default_factory=list)
    run_requests: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    check: Check | None = None  # the latest readiness check, shown while the plan stays idle


def normalise_id(raw: str) -> str:
    """GUIDs compare case-insensitively (and with or without braces); anything else is kept as typed."""
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        return raw.strip().lower()


@dataclass(frozen=True)
class PlanView:
    """What the plans show, read-only: the API's plan bodies (contract 4.1) and the control plane's records."""

    tick: bool  # tick progression: a stage advances by reads, not by time
    tz: ZoneInfo
    plans: Mapping[str, Plan]
    clock: Callable[[], float]

    def progress(self, stage: Stage, now: float) -> float:
        """Steps completed so far (fractional in time progression)."""
        if self.tick or stage.status != "running":
            return stage.done
        return stage.done + (now - stage.resumed_at) * stage.rate

    def shown_state(self, plan: Plan) -> str:
        """``planState`` as this plan shows it: its ``state_words`` for the phase it is in, else the profile's idle
        word (Enabled, Verified, NotVerified) or the contract's spelling; an idle plan's readiness check's words."""
        status = plan.status
        if plan.check is not None and status == ENABLED:
            return plan.check.words(self.clock())
        shown = plan.settings.idle_state if status == ENABLED else str(status.plan_state)
        phase = _shown_phase(status)
        return plan.settings.state_words.get(phase, shown) if phase is not None else shown

    def details(self, plan: Plan, now: float) -> str:
        phase_shown = _shown_phase(plan.status)
        if phase_shown is not None and (words := plan.settings.details_words.get(phase_shown)):
            return words
        stage = plan.current
        phase = plan.status.phase
        if plan.check is not None and plan.status == ENABLED:
            return plan.check.details(now)
        if phase is Phase.IDLE or stage is None:
            return IDLE_DETAILS.get(self.shown_state(plan), "Ready")
        if phase is Phase.RUNNING:
            step = min(stage.steps, math.floor(self.progress(stage, now)) + 1)
            return f"In progress: step {step} of {stage.steps}"
        if phase is Phase.HALTED:
            return f"Halted at step {math.floor(stage.done) + 1} of {stage.steps}: {stage.halt_reason}"
        return stage.complete_details()

    @staticmethod
    def in_use(plan: Plan) -> bool:
        shown = plan.settings.in_use_shown
        return plan.status.in_use if shown is None else shown

    def render(self, plan: Plan, now: float) -> dict[str, Any]:
        """The plan exactly as contract 4.1 shows it."""
        s = plan.settings
        schedule = plan.schedule
        after = self.plans.get(schedule.after) if schedule.type == "AfterPlan" else None
        return {
            "name": s.name,
            "id": plan.id,
            "description": s.description,
            "contactName": s.contact_name,
            "contactEmail": s.contact_email,
            "contactTel": s.contact_tel,
            "planState": self.shown_state(plan),
            "planStateDetails": self.details(plan, now),
            "planInUse": self.in_use(plan),
            "scheduleEnabled": schedule.enabled,
            "scheduleType": schedule.type if s.schedule_type_shown is None else s.schedule_type_shown,
            "scheduleAfter": after.id if after else "",
            "scheduleAfterPlanName": after.settings.name if after else "",
            "scheduleTime": local_naive(schedule.time, self.tz) if schedule.time is not None else None,
            "siteScopeId": s.scope_id,
            "targetRPO": s.target_rpo,
            "targetRTO": s.target_rto,
            "_links": {"self": {"href": f"/v2/FailoverPlans/{plan.id}"}},
        }

    def record(self, plan: Plan, now: float) -> dict[str, Any]:
        schedule = plan.schedule
        return {
            "id": plan.id,
            "name": plan.settings.name,
            "planState": self.shown_state(plan),
            "planStateDetails": self.details(plan, now),
            "planInUse": self.in_use(plan),
            "status": str(plan.status),
            "settings": plan.settings.model_dump(mode="json"),
            "restore_points": [iso_utc(p) for p in plan.restore_points],
            "schedule": {
                "enabled": schedule.enabled,
                "type": schedule.type,
                "after": schedule.after or None,
                "time": iso_utc(schedule.time) if schedule.time is not None else None,
            },
            "run_requests": plan.run_requests,
            "stages": [self.stage_json(stage, now) for stage in plan.history],
            "events": list(plan.events),
        }

    def stage_json(self, stage: Stage, now: float) -> dict[str, Any]:
        used = stage.restore_point_used
        return {
            "kind": str(stage.kind),
            "mode": stage.mode,
            "status": stage.status,
            "triggered_by": stage.triggered_by,
            "started_at": iso_utc(stage.started_at),
            "ended_at": iso_utc(stage.ended_at) if stage.ended_at is not None else None,
            "wall_seconds": round((stage.ended_at if stage.ended_at is not None else now) - stage.started_at, 6),
            "sim_duration": stage.duration,
            "steps": stage.steps,
            "steps_done": round(min(self.progress(stage, now), stage.steps), 6),
            "restore_point_requested": stage.restore_point_requested,
            "restore_point_mode": stage.restore_point_mode,
            "restore_point_used": iso_utc(used) if used is not None else None,
            "restore_point_used_local": local_naive(used, self.tz) if used is not None else None,
            "execute_chained_plans": stage.execute_chained_plans,
            "options": stage.options,
            "halts": list(stage.halts),
            "continues": list(stage.continues),
        }
