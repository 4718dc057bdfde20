"""How the simulated plans move in time: stages started, advanced (by the clock or by reads), halted, resumed,
completed and chained, and schedules fired. :class:`~.engine.Simulator` owns the state and the lock; these are its
methods (a mixin), always called under that lock."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from vaodrill.vao.models import PlanState

from .bodies import RunBody
from .errors import BadRequest
from .plans import Plan, PlanView, Progression, Stage
from .scenario import (
    PeriodicRestorePoints,
    RestorePoints,
    Scenario,
    count_for,
)
from .states import (
    ENABLED,
    READY,
    UNDO_STAGES,
    Op,
    Phase,
    Status,
)
from .timeutil import iso_utc, local_naive, parse_client_instant, parse_instant


class Progress:
    """The plans' clock and the progress of their stages (mixed into :class:`~.engine.Simulator`)."""

    _plans: dict[str, Plan]
    _clock: Callable[[], float]
    _offset: float
    _anchor: float
    progression: Progression
    scenario: Scenario
    time_scale: float
    tz: ZoneInfo

    def now(self) -> float:
        """The simulator clock in epoch seconds: the injected clock plus ``/_sim/clock/advance`` offsets."""
        return self._clock() + self._offset

    @property
    def view(self) -> PlanView:
        """What the plans show now (the API's bodies, the records), for the routes to return."""
        return PlanView(self.progression == "tick", self.tz, self._plans, self.now)

    def _event(self, plan: Plan, at: float, event: str, **detail: Any) -> None:
        plan.events.append({"at": iso_utc(at), "event": event, **detail})

    # -- stages -------------------------------------------------------------------------------------------

    def _start(
        self,
        plan: Plan,
        kind: PlanState,
        at: float,
        *,
        mode: str,
        requested: str | None,
        rp_mode: str | None,
        chained: bool,
        options: dict[str, Any] | None = None,
        triggered_by: str = "request",
    ) -> Stage:
        """Begin a stage at instant ``at`` with a snapshot of the plan's settings (later PATCHes don't touch it)."""
        plan.check = None
        used = (
            self._resolve_restore_point(plan, requested, rp_mode or "NearestBefore")
            if kind is PlanState.FAILOVER
            else None
        )
        s = plan.settings
        undo = kind in UNDO_STAGES
        duration = {
            PlanState.FAILOVER: s.failover_duration,
            PlanState.PERMANENT_FAILOVER: s.failover_duration,
            PlanState.FAILBACK: s.failback_duration,
            PlanState.COMMIT_FAILBACK: s.failback_duration,
        }.get(kind, s.undo_duration)
        stage = Stage(
            kind=kind,
            mode=mode,
            steps=s.steps,
            duration=duration,
            rate=self.time_scale * s.steps / duration,
            started_at=at,
            resumed_at=at,
            triggered_by=triggered_by,
            halt_at=(s.steps if s.fail_undo else None) if undo else s.halt_at_step,
            halt_repeats=undo and s.fail_undo,
            never_finish=s.never_finish and not undo,
            warnings=count_for(s.warnings, undo=undo),
            errors=count_for(s.errors, undo=undo),
            details_style=s.details_style,
            undo_stays=s.after_undo == "UndoFailover",
            restore_point_requested=requested,
            restore_point_mode=rp_mode,
            restore_point_used=used,
            execute_chained_plans=chained,
            options=options or {},
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
                    f"plan '{name}'; the newest is {local_naive(max(points), self.tz)}."
                )
            return min(after)
        before = [p for p in points if p <= instant]
        if not before:
            raise BadRequest(
                f"No restore point at or before {requested} (server time zone {self.scenario.timezone}) for "
                f"plan '{name}'; the oldest is {local_naive(min(points), self.tz)}."
            )
        return max(before)

    def _restore_points(self, spec: RestorePoints) -> list[float]:
        if isinstance(spec, PeriodicRestorePoints):
            every = spec.every_hours * 3600
            count = max(1, int(spec.days * 24 / spec.every_hours + 1e-9))
            return [self._anchor - i * every for i in range(count)]
        return sorted((parse_instant(value, self.tz) for value in spec), reverse=True)

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
        self._reach(plan, self.view.progress(stage, now), lambda steps: base_at + (steps - base_done) / rate, now)

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
        progress = self.view.progress(stage, now)
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
            stage.done = self.view.progress(stage, now)
            stage.status = "aborted"
            stage.ended_at = now
        plan.current = None

    def _start_requested(self, plan: Plan, target: PlanState, now: float, body: Any) -> dict[str, Any]:
        """A Run (its launch options and restore-point rule as sent) or an Undo starts ``target``."""
        if not isinstance(body, RunBody):  # Undo
            if plan.status.phase is Phase.HALTED:
                self._end_current(plan, now)
            self._start(plan, target, now, mode="Undo", requested=None, rp_mode=None, chained=False)
            return {}
        options = body.plan_launch_options
        rule = options.restore_point_rule if options else None
        if rule is not None and rule.date is not None:  # malformed is a 400 in every mode
            parse_client_instant(rule.date, self.tz, field="restorePointRule.date")
        extra = (
            options.model_dump(
                by_alias=True, exclude_none=True, exclude={"restore_point_rule", "execute_chained_plans"}
            )
            if options
            else {}
        )
        self._start(
            plan,
            target,
            now,
            mode=body.mode,
            requested=rule.date if rule else None,
            rp_mode=rule.mode if rule else None,
            chained=bool(options and options.execute_chained_plans),
            options=extra,
        )
        return {"mode": body.mode}

    def _start_chained(self, parent: Plan, stage: Stage, at: float, now: float) -> None:
        for child in list(self._plans.values()):
            schedule = child.schedule
            if not (schedule.enabled and schedule.type == "AfterPlan" and schedule.after == parent.id):
                continue
            self._launch(
                child,
                at,
                now,
                requested=stage.restore_point_requested,
                rp_mode=stage.restore_point_mode,
                triggered_by=f"chain:{parent.id}",
            )

    def _fire_schedules(self, now: float) -> None:
        for plan in list(self._plans.values()):
            schedule = plan.schedule
            if schedule.enabled and schedule.type == "OnTime" and schedule.time is not None and schedule.time <= now:
                schedule.enabled = False  # one-shot
                self._launch(plan, schedule.time, now, requested=None, rp_mode=None, triggered_by="schedule")

    def _launch(
        self, plan: Plan, at: float, now: float, *, requested: str | None, rp_mode: str | None, triggered_by: str
    ) -> None:
        """A FailoverNow nobody asked for over HTTP (schedule or chain): skipped, with an event, if not possible."""
        if plan.status not in READY:
            self._event(
                plan,
                at,
                "Run skipped",
                triggered_by=triggered_by,
                reason=f"plan is in state {self.view.shown_state(plan)}",
            )
            return
        try:
            self._start(
                plan,
                PlanState.FAILOVER,
                at,
                mode="FailoverNow",
                requested=requested,
                rp_mode=rp_mode,
                chained=True,
                triggered_by=triggered_by,
            )
        except BadRequest as exc:
            self._event(plan, at, "Run skipped", triggered_by=triggered_by, reason=exc.message)
            return
        self._event(plan, at, str(Op.RUN_FAILOVER), triggered_by=triggered_by)
        if self.progression == "time":
            self._advance_time(plan, now)
