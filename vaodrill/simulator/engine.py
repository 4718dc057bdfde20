"""The simulated VAO server: plans, stages, progression, restore points, schedules, tokens, faults, log.

Design (after moto's managed state): all state lives in one :class:`Simulator` object that HTTP routes call
into; nothing is module-global, so every :func:`~vaodrill.simulator.create_app` call is an independent server.
Time is evaluated lazily: there are no background tasks, every request first brings the plans up to "now" on
the simulator clock (``clock() + offset``), computing the exact instant at which a stage completed or halted,
so a test that jumps the clock by an hour sees the same history as one that polled every second.

Progression:

* ``time``: a stage of ``duration`` simulated seconds takes ``duration / time_scale`` clock seconds; its
  ``steps`` advance evenly.
* ``tick``: each read of a plan over ``/v2`` (single GET, or appearing in a list GET) advances a running stage
  by one step; a stage of T steps completes on the T-th read. Deterministic, for tests.

Decisions the contract leaves open, made here:

* A finished UndoFailover returns the plan to Enabled (contract 4.2), or, under the ``after_undo:
  UndoFailover`` profile or when it finished with errors (a client must see them), stays ``UndoFailover`` /
  ``Complete, ...``, from which Run is legal (section 5);
  every other finished stage stays in its state with ``Complete, ...`` until the next legal operation (a
  finished UndoFailback or CommitFailback is left only by Reset, which leaves the plan Disabled).
* Profiles (:mod:`.profiles`) change only what the plan shows and how it is reached, never the state machine:
  an idle plan is one internal status however it is shown (``Enabled``, ``Verified``, ``NotVerified``). So do a
  plan's ``state_words`` (any word per phase: ``Processing`` while a failover runs, ``Undoing``...) and its
  ``schedule_type_shown`` (``scheduleType: 0``).
* Undo of a halted stage undoes its family: a halted Failover/UndoFailover/PermanentFailover is undone by an
  UndoFailover, a halted Failback/UndoFailback/CommitFailback by an UndoFailback.
* ``halt_at_step: k`` makes step k of a non-undo stage fail: the plan goes Halted showing step k, and Continue
  (any option) retries step k once more, which then succeeds. ``fail_undo`` makes every undo attempt halt at
  its last step, so the plan never gets back to Enabled; Reset is the way out. ``never_finish`` keeps non-undo
  stages at their last step forever (undo still finishes, so a stuck drill can be cleaned up).
* Halt ``{"fullstop": true}`` discards the partial progress of the current step; ``false`` keeps it.
* Only ``FailoverNow`` uses a restore point; other modes record the requested rule but use none.
* An ``OnTime`` schedule fires once (then ``scheduleEnabled`` turns false) and only if the plan is Enabled when
  the simulator next looks; scheduled and chained runs use ``executeChainedPlans: true``. A chained plan (one
  scheduled ``AfterPlan`` another) starts at the instant the other's FailoverNow completes, with the same
  restore-point rule, when that run asked for ``executeChainedPlans`` and the chained plan is Enabled.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from .bodies import ContinueBody, HaltBody, ResetBody, RunBody, ScheduleBody, parse_body
from .errors import BadRequest, Conflict, NotFound, Unauthorized, no_route
from .odata import SINGLE_OPTIONS, parse_query
from .scenario import (
    PeriodicRestorePoints,
    PlanPatch,
    PlanSettings,
    RestorePoints,
    Scenario,
    ShownPhase,
    count_for,
    load_scenario,
    validation_message,
)
from .states import (
    DISABLED,
    ENABLED,
    READY,
    RUN_MODES,
    UNDO_STAGES,
    Op,
    Phase,
    PlanState,
    Status,
    conflict_message,
    resolve,
)
from .timeutil import iso_utc, local_naive, parse_client_instant, parse_instant
from .tokens import TokenStore
from .traffic import FaultRegistry, RequestLog

Progression = Literal["time", "tick"]
StageStatus = Literal["running", "halted", "completed", "aborted"]

P = ParamSpec("P")
R = TypeVar("R")


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    """Serialise a public method: the server thread and a test thread may both touch the simulator."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0].lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


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
        """``planStateDetails`` of the finished stage: contract 4.2, or Veeam's wording (section 5)."""
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


_OP_BODIES: dict[Op, tuple[type[Any], bool]] = {
    Op.HALT: (HaltBody, False),
    Op.CONTINUE: (ContinueBody, True),
    Op.RESET: (ResetBody, False),
    Op.SCHEDULE: (ScheduleBody, True),
}
"""Body model of each operation and whether a body is required; the others take no body (any is ignored)."""


def normalise_id(raw: str) -> str:
    """GUIDs compare case-insensitively (and with or without braces); anything else is kept as typed."""
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        return raw.strip().lower()


class Simulator:
    """One simulated VAO server. Exposed on ``app.state.sim``; routes call its public methods."""

    scenario: Scenario
    tz: ZoneInfo
    started_at: float
    tokens: TokenStore
    faults: FaultRegistry
    log: RequestLog

    def __init__(
        self,
        scenario: str | Path | Scenario | Mapping[str, Any] = "demo",
        *,
        time_scale: float = 1.0,
        progression: Progression = "time",
        username: str = "demo",
        password: str = "demo",
        access_token_ttl: int = 900,
        refresh_token_ttl: int = 7200,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.username = username
        self._password = password
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self._clock = clock or time.time
        self._offset = 0.0
        self.progression: Progression = "time"
        self.time_scale = 1.0
        self.reset(scenario, progression=progression, time_scale=time_scale)

    # -- lifecycle ----------------------------------------------------------------------------------------

    @_locked
    def reset(
        self,
        scenario: str | Path | Scenario | Mapping[str, Any] | None = None,
        *,
        progression: Progression | None = None,
        time_scale: float | None = None,
    ) -> None:
        """Fresh state: reload a scenario (default: the current one), clear tokens, faults, log, clock offset."""
        loaded = self.scenario if scenario is None else load_scenario(scenario)
        if progression is not None and progression not in ("time", "tick"):
            raise ValueError(f"progression must be 'time' or 'tick', not {progression!r}")
        if time_scale is not None and (not time_scale > 0 or math.isinf(time_scale)):
            raise ValueError(f"time_scale must be a positive number, not {time_scale!r}")
        self.progression = progression or self.progression
        self.time_scale = float(time_scale or self.time_scale)
        self.scenario = loaded
        self.tz = loaded.tz
        self._offset = 0.0
        self.started_at = self.now()
        self._anchor = math.floor(self.started_at / 3600) * 3600  # restore points align to the hour, UTC
        self.tokens = TokenStore(now=self.now, username=self.username, password=self._password,
                                 access_ttl=self.access_token_ttl, refresh_ttl=self.refresh_token_ttl,
                                 login=loaded.login, clients=loaded.clients)
        self.faults = FaultRegistry()
        self.log = RequestLog()
        self._plans: dict[str, Plan] = {}
        for spec in loaded.plans:
            settings = loaded.settings_for(spec)
            plan_id = loaded.plan_id(spec)
            status = ENABLED if spec.state == "Enabled" else DISABLED
            self._plans[plan_id] = Plan(plan_id, settings, status, self._restore_points(settings.restore_points))
        for spec in loaded.plans:
            schedule = self._plans[loaded.plan_id(spec)].schedule
            if spec.schedule_after is not None:
                target = loaded.find(spec.schedule_after)
                assert target is not None  # checked by Scenario validation
                schedule.enabled, schedule.type, schedule.after = True, "AfterPlan", loaded.plan_id(target)
            elif spec.schedule_time is not None:
                schedule.enabled, schedule.type = True, "OnTime"
                schedule.time = parse_instant(spec.schedule_time, self.tz)

    def now(self) -> float:
        """The simulator clock in epoch seconds: the injected clock plus ``/_sim/clock/advance`` offsets."""
        return self._clock() + self._offset

    @_locked
    def advance_clock(self, seconds: float) -> float:
        """Move the simulator clock forward (never back: history must stay consistent)."""
        if not seconds >= 0 or math.isinf(seconds):
            raise BadRequest("seconds must be a finite number >= 0.")
        self._offset += seconds
        return self.now()

    # -- authentication -----------------------------------------------------------------------------------

    @_locked
    def issue_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer a token request (raises ``TokenError`` when refused)."""
        return self.tokens.grant(form)

    @_locked
    def authorize(self, header: str | None) -> None:
        """Check an ``Authorization`` header; :class:`Unauthorized` (401) unless it holds a live bearer token."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not self.tokens.is_valid(token.strip()):
            raise Unauthorized()

    @_locked
    def expire_tokens(self, *, refresh: bool = False) -> int:
        return self.tokens.expire_all(refresh=refresh)

    # -- reads --------------------------------------------------------------------------------------------

    @_locked
    def list_plans(self, params: Sequence[tuple[str, str]], *, site_id: str | None = None,
                   scope_id: str | None = None) -> list[dict[str, Any]]:
        """``GET /v2/FailoverPlans`` (or one scope's plans) with the OData subset applied.

        In tick progression the plans shown advance one step each; which plans are shown is decided on their
        state before that step, so every plan in the answer was advanced exactly once.
        """
        query = parse_query(params)
        now = self.now()
        self._settle(now)
        plans = list(self._plans.values())
        if site_id is not None and scope_id is not None:
            if normalise_id(site_id) != self.scenario.site_id:
                raise NotFound(f"Site {site_id} was not found.")
            scope = normalise_id(scope_id)
            if scope not in {p.settings.scope_id for p in plans} | {self.scenario.scope_id}:
                raise NotFound(f"Scope {scope_id} was not found in site {site_id}.")
            plans = [p for p in plans if p.settings.scope_id == scope]
        chosen = query.apply(plans, lambda p: self._render(p, now))
        if self.progression == "tick":
            for plan in [p for p in chosen if p.status.phase is Phase.RUNNING]:
                self._tick(plan, now)
        return [query.project(self._render(p, now)) for p in chosen]

    @_locked
    def read_plan(self, plan_id: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any] | list[Any]:
        """``GET /v2/FailoverPlans/{id}`` (one tick in tick progression); an array under ``single_get: array``."""
        query = parse_query(params, allowed=SINGLE_OPTIONS)
        now = self.now()
        self._settle(now)
        plan = self._plan(plan_id)
        if self.progression == "tick" and plan.status.phase is Phase.RUNNING:
            self._tick(plan, now)
        shown = query.project(self._render(plan, now))
        return [shown] if plan.settings.single_get == "array" else shown

    # -- operations ---------------------------------------------------------------------------------------

    @_locked
    def run(self, plan_id: str, raw_body: bytes) -> None:
        """``POST .../Run``: 404, then count the request, then 400 for the body, 409 for the state."""
        plan = self._plan(plan_id)
        plan.run_requests += 1
        body = parse_body(raw_body, RunBody, required=True)
        self._apply(plan, RUN_MODES[body.mode], body)

    @_locked
    def operate(self, plan_id: str, op: Op, raw_body: bytes = b"", *, path: str = "") -> None:
        """Every other operation of table 4.3 (Enable, Disable, Halt, Continue, Undo, Reset, Schedule, ...).

        ``path`` is the request path: Continue is served at ``.../Continue`` and/or ``.../Run/Continue`` as the
        plan's ``continue_path`` says, and the other one answers 404 as an unrouted path does (nothing ran); VRO's
        ``/api/v{N}/Plans/{id}/Continue`` is its only Continue.
        """
        plan = self._plan(plan_id)
        if op is Op.CONTINUE and plan.settings.continue_path != "both" and not path.startswith("/api/"):
            via = "Run/Continue" if path.endswith("/Run/Continue") else "Continue"
            if via != plan.settings.continue_path:
                raise no_route(path)
        model, required = _OP_BODIES.get(op, (None, False))
        body = parse_body(raw_body, model, required=required) if model is not None else None
        self._apply(plan, op, body)

    def _apply(self, plan: Plan, op: Op, body: Any) -> None:
        now = self.now()
        self._settle(now)
        if plan.check is not None and now < plan.check.ends_at:
            raise Conflict(f"Plan {plan.settings.name} is running a readiness check.",
                           status=plan.settings.illegal_status)
        move = resolve(op, plan.status)
        if move is None:
            s = plan.settings
            raise Conflict(conflict_message(s.name, self._shown_state(plan), op,
                                            idle=s.state_words.get("idle", s.idle_state),
                                            undone_is_idle=s.after_undo == "UndoFailover"),
                           status=s.illegal_status)
        detail: dict[str, Any] = {}
        if move.action == "settle":
            assert move.target is not None
            if isinstance(body, ResetBody):
                detail = body.model_dump(by_alias=True)
            self._end_current(plan, now)
            plan.status = Status(move.target, Phase.IDLE)
            plan.check = None  # a reset or a disable forgets the last check's result
        elif move.action == "start":
            assert move.target is not None
            if isinstance(body, RunBody):
                options = body.plan_launch_options
                rule = options.restore_point_rule if options else None
                if rule is not None and rule.date is not None:  # malformed is a 400 in every mode
                    parse_client_instant(rule.date, self.tz, field="restorePointRule.date")
                extra = options.model_dump(by_alias=True, exclude_none=True, exclude={
                    "restore_point_rule", "execute_chained_plans"}) if options else {}
                self._start(plan, move.target, now, mode=body.mode,
                            requested=rule.date if rule else None, rp_mode=rule.mode if rule else None,
                            chained=bool(options and options.execute_chained_plans), options=extra)
                detail = {"mode": body.mode}
            else:  # Undo
                if plan.status.phase is Phase.HALTED:
                    self._end_current(plan, now)
                self._start(plan, move.target, now, mode="Undo", requested=None, rp_mode=None, chained=False)
        elif move.action == "halt":
            assert isinstance(body, HaltBody)
            self._manual_halt(plan, now, fullstop=body.fullstop)
            detail = {"fullstop": body.fullstop}
        elif move.action == "resume":
            assert isinstance(body, ContinueBody)
            self._resume(plan, now, body.execution_continue_options)
            detail = {"executionContinueOptions": body.execution_continue_options}
        elif op is Op.SCHEDULE:
            assert isinstance(body, ScheduleBody)
            detail = self._schedule(plan, body)
        else:  # DisableSchedule
            plan.schedule.enabled = False
        self._event(plan, now, str(op), **detail)

    def _schedule(self, plan: Plan, body: ScheduleBody) -> dict[str, Any]:
        if body.previous_plan_id is not None:  # previousPlanId wins over startTime (contract 4.3)
            previous = self._plans.get(normalise_id(body.previous_plan_id))
            if previous is None:
                raise BadRequest(f"previousPlanId: Plan {body.previous_plan_id} was not found.")
            if previous is plan:
                raise BadRequest("previousPlanId: a plan cannot be scheduled after itself.")
            plan.schedule = Schedule(enabled=True, type="AfterPlan", after=previous.id)
            return {"previousPlanId": previous.id}
        if body.start_time is not None:
            instant = parse_client_instant(body.start_time, self.tz, field="startTime")
            plan.schedule = Schedule(enabled=True, type="OnTime", time=instant)
            return {"startTime": body.start_time}
        raise BadRequest('The request body needs startTime or previousPlanId, e.g. {"startTime": '
                         '"2026-11-27T02:00:00"}.')

    # -- stages -------------------------------------------------------------------------------------------

    def _start(self, plan: Plan, kind: PlanState, at: float, *, mode: str, requested: str | None,
               rp_mode: str | None, chained: bool, options: dict[str, Any] | None = None,
               triggered_by: str = "request") -> Stage:
        """Begin a stage at instant ``at`` with a snapshot of the plan's settings (later PATCHes don't touch it)."""
        plan.check = None
        used = (self._resolve_restore_point(plan, requested, rp_mode or "NearestBefore")
                if kind is PlanState.FAILOVER else None)
        s = plan.settings
        undo = kind in UNDO_STAGES
        duration = {
            PlanState.FAILOVER: s.failover_duration,
            PlanState.PERMANENT_FAILOVER: s.failover_duration,
            PlanState.FAILBACK: s.failback_duration,
            PlanState.COMMIT_FAILBACK: s.failback_duration,
        }.get(kind, s.undo_duration)
        stage = Stage(
            kind=kind, mode=mode, steps=s.steps, duration=duration, rate=self.time_scale * s.steps / duration,
            started_at=at, resumed_at=at, triggered_by=triggered_by,
            halt_at=(s.steps if s.fail_undo else None) if undo else s.halt_at_step,
            halt_repeats=undo and s.fail_undo, never_finish=s.never_finish and not undo,
            warnings=count_for(s.warnings, undo=undo), errors=count_for(s.errors, undo=undo),
            details_style=s.details_style,
            undo_stays=s.after_undo == "UndoFailover",
            restore_point_requested=requested, restore_point_mode=rp_mode, restore_point_used=used,
            execute_chained_plans=chained, options=options or {},
        )
        plan.current = stage
        plan.history.append(stage)
        plan.status = Status(kind, Phase.RUNNING)
        return stage

    def _resolve_restore_point(self, plan: Plan, requested: str | None, mode: str) -> float:
        points = plan.restore_points
        name = plan.settings.name
        if not points:
            raise BadRequest(f"No restore point exists for plan '{name}'.")
        if requested is None:
            return max(points)
        instant = parse_client_instant(requested, self.tz, field="restorePointRule.date")
        if mode == "NearestAfter":
            after = [p for p in points if p >= instant]
            if not after:
                raise BadRequest(
                    f"No restore point at or after {requested} (server time zone {self.scenario.timezone}) for "
                    f"plan '{name}'; the newest is {local_naive(max(points), self.tz)}.")
            return min(after)
        before = [p for p in points if p <= instant]
        if not before:
            raise BadRequest(
                f"No restore point at or before {requested} (server time zone {self.scenario.timezone}) for "
                f"plan '{name}'; the oldest is {local_naive(min(points), self.tz)}.")
        return max(before)

    def _restore_points(self, spec: RestorePoints) -> list[float]:
        if isinstance(spec, PeriodicRestorePoints):
            every = spec.every_hours * 3600
            count = max(1, int(spec.days * 24 / spec.every_hours + 1e-9))
            return [self._anchor - i * every for i in range(count)]
        return sorted((parse_instant(value, self.tz) for value in spec), reverse=True)

    def _progress(self, stage: Stage, now: float) -> float:
        """Steps completed so far (fractional in time progression)."""
        if self.progression == "tick" or stage.status != "running":
            return stage.done
        return stage.done + (now - stage.resumed_at) * stage.rate

    def _settle(self, now: float) -> None:
        """Bring every plan up to ``now``: finish/halt stages at their exact instants, fire due schedules."""
        if self.progression == "time":
            for plan in list(self._plans.values()):
                self._advance_time(plan, now)
        self._fire_schedules(now)

    def _advance_time(self, plan: Plan, now: float) -> None:
        stage = plan.current
        if stage is None or stage.status != "running":
            return
        base_done, base_at, rate = stage.done, stage.resumed_at, stage.rate
        self._reach(plan, self._progress(stage, now), lambda steps: base_at + (steps - base_done) / rate, now)

    def _tick(self, plan: Plan, now: float) -> None:
        stage = plan.current
        assert stage is not None
        if not self._reach(plan, stage.done + 1, lambda _steps: now, now):
            stage.done = min(stage.done + 1, stage.steps)

    def _reach(self, plan: Plan, progress: float, instant_of: Callable[[float], float], now: float) -> bool:
        """Apply what happens when the running stage gets to ``progress`` steps; True if it halted or ended."""
        stage = plan.current
        assert stage is not None
        if stage.halt_at is not None and progress >= stage.halt_at:
            step = stage.halt_at
            self._halt(plan, instant_of(step), done=step - 1, reason="step failed")
            if not stage.halt_repeats:
                stage.halt_at = None
            return True
        if not stage.never_finish and progress >= stage.steps:
            self._complete(plan, instant_of(stage.steps), now)
            return True
        return False

    def _halt(self, plan: Plan, at: float, *, done: float, reason: str) -> None:
        stage = plan.current
        assert stage is not None
        stage.done = done
        stage.status = "halted"
        stage.halt_reason = reason
        stage.halts.append({"at": iso_utc(at), "step": math.floor(done) + 1, "reason": reason})
        plan.status = Status(stage.kind, Phase.HALTED)

    def _manual_halt(self, plan: Plan, now: float, *, fullstop: bool) -> None:
        stage = plan.current
        assert stage is not None
        progress = self._progress(stage, now)
        done = math.floor(progress) if fullstop else progress
        if done >= stage.steps:  # only a never-finishing stage gets here: it is stuck in its last step
            done = stage.steps - 1
        self._halt(plan, now, done=done, reason="halted by request")

    def _resume(self, plan: Plan, now: float, option: str) -> None:
        stage = plan.current
        assert stage is not None
        stage.status = "running"
        stage.resumed_at = now
        stage.continues.append({"at": iso_utc(now), "option": option, "step": math.floor(stage.done) + 1})
        plan.status = Status(stage.kind, Phase.RUNNING)

    def _complete(self, plan: Plan, at: float, now: float) -> None:
        stage = plan.current
        assert stage is not None
        stage.status = "completed"
        stage.done = stage.steps
        stage.ended_at = at
        if stage.kind is PlanState.UNDO_FAILOVER and not stage.undo_stays and not stage.errors:
            plan.status = ENABLED
            plan.current = None
        else:
            plan.status = Status(stage.kind, Phase.COMPLETE)
        if stage.kind is PlanState.FAILOVER and stage.execute_chained_plans:
            self._start_chained(plan, stage, at, now)

    def _end_current(self, plan: Plan, now: float) -> None:
        """Leave the current stage (Reset, Undo of a halted stage, forced state): a live one is aborted."""
        stage = plan.current
        if stage is not None and stage.status in ("running", "halted"):
            stage.done = self._progress(stage, now)
            stage.status = "aborted"
            stage.ended_at = now
        plan.current = None

    def _start_chained(self, parent: Plan, stage: Stage, at: float, now: float) -> None:
        for child in list(self._plans.values()):
            schedule = child.schedule
            if not (schedule.enabled and schedule.type == "AfterPlan" and schedule.after == parent.id):
                continue
            self._launch(child, at, now, requested=stage.restore_point_requested,
                         rp_mode=stage.restore_point_mode, triggered_by=f"chain:{parent.id}")

    def _fire_schedules(self, now: float) -> None:
        for plan in list(self._plans.values()):
            schedule = plan.schedule
            if schedule.enabled and schedule.type == "OnTime" and schedule.time is not None and schedule.time <= now:
                schedule.enabled = False  # one-shot
                self._launch(plan, schedule.time, now, requested=None, rp_mode=None, triggered_by="schedule")

    def _launch(self, plan: Plan, at: float, now: float, *, requested: str | None, rp_mode: str | None,
                triggered_by: str) -> None:
        """A FailoverNow nobody asked for over HTTP (schedule or chain): skipped, with an event, if not possible."""
        if plan.status not in READY:
            self._event(plan, at, "Run skipped", triggered_by=triggered_by,
                        reason=f"plan is in state {self._shown_state(plan)}")
            return
        try:
            self._start(plan, PlanState.FAILOVER, at, mode="FailoverNow", requested=requested, rp_mode=rp_mode,
                        chained=True, triggered_by=triggered_by)
        except BadRequest as exc:
            self._event(plan, at, "Run skipped", triggered_by=triggered_by, reason=exc.message)
            return
        self._event(plan, at, str(Op.RUN_FAILOVER), triggered_by=triggered_by)
        if self.progression == "time":
            self._advance_time(plan, now)

    # -- representation -----------------------------------------------------------------------------------

    def _plan(self, plan_id: str) -> Plan:
        plan = self._plans.get(normalise_id(plan_id))
        if plan is None:
            raise NotFound(f"Plan {plan_id} was not found.")
        return plan

    @_locked
    def readiness_check(self, plan_id: str) -> None:
        """VRO's ``POST .../ReadinessCheck``: an idle, enabled plan shows CHECKING for ``readiness_duration``
        simulated seconds (on the clock, in either progression), then its result; nothing else about it changes."""
        plan = self._plan(plan_id)
        now = self.now()
        self._settle(now)
        s = plan.settings
        if plan.status != ENABLED or (plan.check is not None and now < plan.check.ends_at):
            raise Conflict(f"Plan {s.name} cannot run a readiness check while it is {self._shown_state(plan)}.",
                           status=s.illegal_status)
        plan.check = Check(now, now + s.readiness_duration / self.time_scale, s.readiness_errors)
        self._event(plan, now, "ReadinessCheck")

    def _shown_state(self, plan: Plan) -> str:
        """``planState`` as this plan shows it: its ``state_words`` for the phase it is in, else the profile's idle
        word (Enabled, Verified, NotVerified) or the contract's spelling; an idle plan's readiness check's words."""
        status = plan.status
        if plan.check is not None and status == ENABLED:
            return plan.check.words(self.now())
        shown = plan.settings.idle_state if status == ENABLED else str(status.plan_state)
        phase = _shown_phase(status)
        return plan.settings.state_words.get(phase, shown) if phase is not None else shown

    def _details(self, plan: Plan, now: float) -> str:
        phase_shown = _shown_phase(plan.status)
        if phase_shown is not None and (words := plan.settings.details_words.get(phase_shown)):
            return words
        stage = plan.current
        phase = plan.status.phase
        if plan.check is not None and plan.status == ENABLED:
            return plan.check.details(now)
        if phase is Phase.IDLE or stage is None:
            return IDLE_DETAILS.get(self._shown_state(plan), "Ready")
        if phase is Phase.RUNNING:
            step = min(stage.steps, math.floor(self._progress(stage, now)) + 1)
            return f"In progress: step {step} of {stage.steps}"
        if phase is Phase.HALTED:
            return f"Halted at step {math.floor(stage.done) + 1} of {stage.steps}: {stage.halt_reason}"
        return stage.complete_details()

    @staticmethod
    def _in_use(plan: Plan) -> bool:
        shown = plan.settings.in_use_shown
        return plan.status.in_use if shown is None else shown

    def _render(self, plan: Plan, now: float) -> dict[str, Any]:
        """The plan exactly as contract 4.1 shows it."""
        s = plan.settings
        schedule = plan.schedule
        after = self._plans.get(schedule.after) if schedule.type == "AfterPlan" else None
        return {
            "name": s.name,
            "id": plan.id,
            "description": s.description,
            "contactName": s.contact_name,
            "contactEmail": s.contact_email,
            "contactTel": s.contact_tel,
            "planState": self._shown_state(plan),
            "planStateDetails": self._details(plan, now),
            "planInUse": self._in_use(plan),
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

    def _event(self, plan: Plan, at: float, event: str, **detail: Any) -> None:
        plan.events.append({"at": iso_utc(at), "event": event, **detail})

    # -- control plane ------------------------------------------------------------------------------------

    @_locked
    def patch_plan(self, plan_id: str, patch: PlanPatch) -> dict[str, Any]:
        """Apply a ``PATCH /_sim/plans/{id}``: settings for stages started later, ``state`` right away."""
        plan = self._plan(plan_id)
        now = self.now()
        self._settle(now)
        try:
            plan.settings = patch.apply_to(plan.settings)
        except ValidationError as exc:
            raise BadRequest(f"Invalid plan settings: {validation_message(exc)}.") from None
        if "restore_points" in patch.model_fields_set:
            plan.restore_points = self._restore_points(plan.settings.restore_points)
        if patch.state is not None:
            self._end_current(plan, now)
            plan.check = None
            plan.status = ENABLED if patch.state == "Enabled" else DISABLED
        self._event(plan, now, "patched", **patch.model_dump(exclude_unset=True, mode="json"))
        return self._record(plan, now)

    @_locked
    def record(self, plan_id: str) -> dict[str, Any]:
        """The internal record of one plan (``GET /_sim/plans/{id}``)."""
        now = self.now()
        self._settle(now)
        return self._record(self._plan(plan_id), now)

    @_locked
    def records(self) -> list[dict[str, Any]]:
        now = self.now()
        self._settle(now)
        return [self._record(plan, now) for plan in self._plans.values()]

    def _record(self, plan: Plan, now: float) -> dict[str, Any]:
        schedule = plan.schedule
        return {
            "id": plan.id,
            "name": plan.settings.name,
            "planState": self._shown_state(plan),
            "planStateDetails": self._details(plan, now),
            "planInUse": self._in_use(plan),
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
            "stages": [self._stage_json(stage, now) for stage in plan.history],
            "events": list(plan.events),
        }

    def _stage_json(self, stage: Stage, now: float) -> dict[str, Any]:
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
            "steps_done": round(min(self._progress(stage, now), stage.steps), 6),
            "restore_point_requested": stage.restore_point_requested,
            "restore_point_mode": stage.restore_point_mode,
            "restore_point_used": iso_utc(used) if used is not None else None,
            "restore_point_used_local": local_naive(used, self.tz) if used is not None else None,
            "execute_chained_plans": stage.execute_chained_plans,
            "options": stage.options,
            "halts": list(stage.halts),
            "continues": list(stage.continues),
        }

    @_locked
    def summary(self) -> dict[str, Any]:
        """What ``GET /_sim`` shows: settings of this simulator and its plans (never the password)."""
        now = self.now()
        self._settle(now)
        return {
            "scenario": self.scenario.name,
            "progression": self.progression,
            "time_scale": self.time_scale,
            "timezone": self.scenario.timezone,
            "site_id": self.scenario.site_id,
            "scope_id": self.scenario.scope_id,
            "username": self.username,
            "now": iso_utc(now),
            "started_at": iso_utc(self.started_at),
            "clock_offset": self._offset,
            "login": self.scenario.login.model_dump(),
            "clients": [c.client_id for c in self.scenario.clients],
            "plans": [{"name": p.settings.name, "id": p.id, "planState": self._shown_state(p)}
                      for p in self._plans.values()],
        }
