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

* A finished UndoFailover returns the plan to Enabled (docs/vao-api.md, section 4.2), or, under the ``after_undo:
  UndoFailover`` profile or when it finished with errors (a client must see them), stays ``UndoFailover`` /
  ``Complete, ...``, from which Run is legal (docs/vao-api.md, section 5);
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from .bodies import ContinueBody, HaltBody, ResetBody, RunBody, ScheduleBody, parse_body
from .errors import BadRequest, Conflict, NotFound, Unauthorized, no_route
from .odata import SINGLE_OPTIONS, parse_query
from .plans import Check, Plan, Progression, Schedule, normalise_id
from .progression import Progress
from .scenario import (
    PlanPatch,
    Scenario,
    load_scenario,
    validation_message,
)
from .states import (
    DISABLED,
    ENABLED,
    RUN_MODES,
    Op,
    Phase,
    Status,
    conflict_message,
    resolve,
)
from .timeutil import iso_utc, parse_client_instant, parse_instant
from .tokens import TokenStore
from .traffic import Fault, FaultRegistry, FaultSpec, RequestLog

P = ParamSpec("P")
R = TypeVar("R")

_OP_BODIES: dict[Op, tuple[type[Any], bool]] = {
    Op.HALT: (HaltBody, False),
    Op.CONTINUE: (ContinueBody, True),
    Op.RESET: (ResetBody, False),
    Op.SCHEDULE: (ScheduleBody, True),
}
"""Body model of each operation and whether a body is required; the others take no body (any is ignored)."""


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    """Serialise a public method: the server thread and a test thread may both touch the simulator."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0].lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class Simulator(Progress):
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
        self.tokens = TokenStore(
            now=self.now,
            username=self.username,
            password=self._password,
            access_ttl=self.access_token_ttl,
            refresh_ttl=self.refresh_token_ttl,
            login=loaded.login,
            clients=loaded.clients,
        )
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
    def list_plans(
        self, params: Sequence[tuple[str, str]], *, site_id: str | None = None, scope_id: str | None = None
    ) -> list[dict[str, Any]]:
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
        chosen = query.apply(plans, lambda p: self.view.render(p, now))
        if self.progression == "tick":
            for plan in [p for p in chosen if p.status.phase is Phase.RUNNING]:
                self._tick(plan, now)
        return [query.project(self.view.render(p, now)) for p in chosen]

    @_locked
    def read_plan(self, plan_id: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any] | list[Any]:
        """``GET /v2/FailoverPlans/{id}`` (one tick in tick progression); an array under ``single_get: array``."""
        query = parse_query(params, allowed=SINGLE_OPTIONS)
        now = self.now()
        self._settle(now)
        plan = self._plan(plan_id)
        if self.progression == "tick" and plan.status.phase is Phase.RUNNING:
            self._tick(plan, now)
        shown = query.project(self.view.render(plan, now))
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
            raise Conflict(
                f"Plan {plan.settings.name} is running a readiness check.", status=plan.settings.illegal_status
            )
        move = resolve(op, plan.status)
        if move is None:
            s = plan.settings
            raise Conflict(
                conflict_message(
                    s.name,
                    self.view.shown_state(plan),
                    op,
                    idle=s.state_words.get("idle", s.idle_state),
                    undone_is_idle=s.after_undo == "UndoFailover",
                ),
                status=s.illegal_status,
            )
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
            detail = self._start_requested(plan, move.target, now, body)
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
        raise BadRequest(
            'The request body needs startTime or previousPlanId, e.g. {"startTime": "2026-11-27T02:00:00"}.'
        )

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
            raise Conflict(
                f"Plan {s.name} cannot run a readiness check while it is {self.view.shown_state(plan)}.",
                status=s.illegal_status,
            )
        plan.check = Check(now, now + s.readiness_duration / self.time_scale, s.readiness_errors)
        self._event(plan, now, "ReadinessCheck")

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
        if "restore_points" in patch.settings:
            plan.restore_points = self._restore_points(plan.settings.restore_points)
        if patch.state is not None:
            self._end_current(plan, now)
            plan.check = None
            plan.status = ENABLED if patch.state == "Enabled" else DISABLED
        shown = plan.settings.model_dump(mode="json")
        changed = {"state": patch.state} if "state" in patch.model_fields_set else {}
        self._event(plan, now, "patched", **changed, **{key: shown[key] for key in patch.settings})
        return self.view.record(plan, now)

    @_locked
    def record(self, plan_id: str) -> dict[str, Any]:
        """The internal record of one plan (``GET /_sim/plans/{id}``)."""
        now = self.now()
        self._settle(now)
        return self.view.record(self._plan(plan_id), now)

    @_locked
    def records(self) -> list[dict[str, Any]]:
        now = self.now()
        self._settle(now)
        return [self.view.record(plan, now) for plan in self._plans.values()]

    @_locked
    def admit(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any
    ) -> tuple[Fault | None, dict[str, Any]]:
        """A request arrives: the fault it meets (if any) and its entry in the log, whose status the caller sets."""
        fault = self.faults.pick(method, path)
        entry = self.log.add(
            method=method, path=path, at=iso_utc(self.now()), fault=fault.id if fault else None, query=query, body=body
        )
        return fault, entry

    @_locked
    def fault_list(self) -> list[dict[str, Any]]:
        return self.faults.to_json()

    @_locked
    def add_fault(self, spec: FaultSpec) -> str:
        return self.faults.add(spec).id

    @_locked
    def remove_fault(self, fault_id: str) -> None:
        if not self.faults.remove(fault_id):
            raise NotFound(f"Fault {fault_id} was not found.")

    @_locked
    def clear_faults(self) -> None:
        self.faults.clear()

    @_locked
    def requests(self, *, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        return self.log.select(method=method, path=path)

    @_locked
    def clear_requests(self) -> None:
        self.log.clear()

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
            "plans": [
                {"name": p.settings.name, "id": p.id, "planState": self.view.shown_state(p)}
                for p in self._plans.values()
            ],
        }
