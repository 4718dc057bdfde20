"""The drill spec: a DR drill as a YAML file, validated by pydantic, with the graph helpers the engine needs.

Prefect-free on purpose: a drill file can be checked (CLI, CI, pre-commit) without a Prefect install or server.

YAML shape::

    name: app-stack-quarterly          # [a-z0-9-]+
    description: Quarterly DR test      # optional
    mode: drill                        # drill (failover, then undo; default) | failover (real DR, no undo)
                                       # | readiness (VRO's readiness check per plan: no failover, no undo)
    timezone: Europe/Berlin            # IANA zone in which restore-point rules are read (default UTC)
    restore_point: latest              # default rule for every plan (see vaodrill.spec.restore_points)
    max_parallel: 3                    # plans failing over at once (default: no limit beyond the DAG)
    poll_interval: 10s                 # how often plan states are read (default 10s; 0.05s to 1h)
    polling: fixed                     # fixed (default): every poll_interval | adaptive: sooner when a stage
                                       # is likely done, later otherwise, same reads per minute (engine.cadence)
    give_up_after: 5m                  # how long an unreachable or failing (5xx) server is borne (10s to 24h)
    on_halt: fail                      # fail (default) | {continue: <option>, max: 1..10 (default 1)}
    history: {max_age: 90d, rto_regression: 25%}   # how fresh the proof must be, what is a regression
    plans:
      - plan: Core Network             # a plan name or id (GUID); a bare string is short for {plan: ...}
      - plan: SQL Tier
        after: [Core Network]          # names used in `plan:` of this drill; a single string is fine too
        restore_point: {ago: 6h}       # overrides the drill's rule
        rto_target: 45m                # overrides the plan's targetRTO
        timeout: 2h                    # give up waiting (default decided by the engine)
        on_halt: {continue: RetryFailedStep, max: 1}
        checks: [{http: https://sql-report.dr.example.com/health}]   # after the failover (vaodrill.spec.checks);
                                                                    # a plan's own list replaces the drill's
    checks: []                         # the checks of every plan without its own (default none)

``on_halt`` continue options: ProceedToNextVm, ProceedToNextGroup, ProceedToNextStep, RetryFailedStep,
RetryFailedVm, RetryFailedGroup (matched ignoring case, spaces, ``_`` and ``-``). ``max`` is how many times the
engine may answer a halt of that plan with Continue; the next halt fails the plan.

Reading a drill file (hostile input until proven otherwise) is :mod:`vaodrill.spec.loader`'s.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from vaodrill.spec.checks import MAX_CHECKS, Check, unique_check_names
from vaodrill.spec.durations import DurationField, spec_duration
from vaodrill.spec.policies import CONTINUE_OPTIONS, HaltPolicy, HistoryPolicy
from vaodrill.spec.rules import BaseRule, LatestRule, RestorePointRule
from vaodrill.spec.strict import StrictModel, WholeNumber, did_you_mean, show_value
from vaodrill.spec.zones import check_timezone
from vaodrill.vao.models import ContinueOption

Polling = Literal["fixed", "adaptive"]
"""How a drill asks its plan states to be read (:mod:`vaodrill.engine.cadence` does the reading)."""
POLLING: tuple[Polling, ...] = ("fixed", "adaptive")

__all__ = [  # CONTINUE_OPTIONS, HaltPolicy and HistoryPolicy live in spec/policies.py: named here too
    "CONTINUE_OPTIONS",
    "GIVE_UP_AFTER_RANGE",
    "MAX_DESCRIPTION",
    "MAX_DRILL_NAME",
    "MAX_PLANS",
    "MAX_PLAN_NAME",
    "POLLING",
    "POLL_INTERVAL_RANGE",
    "ContinueOption",
    "DrillSpec",
    "HaltPolicy",
    "HistoryPolicy",
    "PlanStep",
    "Polling",
    "SpecIssue",
    "format_loc",
]

MAX_PLANS = 1000
MAX_PLAN_NAME = 200
MAX_DRILL_NAME = 100
MAX_DESCRIPTION = 4000
POLL_INTERVAL_RANGE = (timedelta(milliseconds=50), timedelta(hours=1))
GIVE_UP_AFTER_RANGE = (timedelta(seconds=10), timedelta(hours=24))
_DURATION_RANGES = {"poll_interval": POLL_INTERVAL_RANGE, "give_up_after": GIVE_UP_AFTER_RANGE}


class PlanStep(StrictModel):
    """One plan of the drill. ``plan`` is the key other steps' ``after`` refer to."""

    plan: str
    after: tuple[str, ...] = ()
    restore_point: RestorePointRule | None = None
    rto_target: DurationField | None = None
    timeout: DurationField | None = None
    on_halt: HaltPolicy | None = None
    checks: tuple[Check, ...] | None = None
    """Run after VAO reports the failover complete, before dependents start (None: the drill's checks)."""

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: tuple[Check, ...] | None) -> tuple[Check, ...] | None:
        return None if value is None else _checked_list(value)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"plan": data} if isinstance(data, str) else data

    @field_validator("plan", mode="before")
    @classmethod
    def _plan_name(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise PydanticCustomError(
                "plan_name", f"expected a plan name or id, got {show_value(value)} (quote it in YAML)"
            )
        name = value.strip()
        if len(name) > MAX_PLAN_NAME:
            raise PydanticCustomError(
                "plan_name_length", f"plan name of {len(name)} characters (at most {MAX_PLAN_NAME})"
            )
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise PydanticCustomError("plan_name_control", f"control character in plan name {show_value(name)}")
        return name

    @field_validator("after", mode="before")
    @classmethod
    def _after_list(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise PydanticCustomError("after_list", f"expected a list of plan names, got {show_value(value)}")
        if len(items) > MAX_PLANS:
            raise PydanticCustomError("after_length", f"{len(items)} entries (at most {MAX_PLANS})")
        names: dict[str, None] = {}  # ordered, with O(1) lookups
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise PydanticCustomError("after_item", f"expected a plan name, got {show_value(item)}")
            if item.strip() in names:
                raise PydanticCustomError("after_twice", f"{show_value(item.strip())} is listed twice")
            names[item.strip()] = None
        return tuple(names)

    @property
    def key(self) -> str:
        return self.plan


class SpecIssue(ValueError):
    """A problem found across fields, with its place (``("plans", 2, "after")``) so the error can name it."""

    def __init__(self, loc: tuple[str | int, ...], problem: str) -> None:
        self.loc, self.problem = loc, problem
        super().__init__(f"{format_loc(loc)}: {problem}")


def format_loc(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


class DrillSpec(StrictModel):
    """A validated drill. Plans form a DAG through ``after``; keys are the ``plan`` strings."""

    name: str
    description: str = ""
    mode: Literal["drill", "failover", "readiness"] = "drill"
    timezone: str = "UTC"
    restore_point: RestorePointRule = LatestRule()
    max_parallel: Annotated[int | None, WholeNumber] = Field(default=None, ge=1, le=MAX_PLANS)
    poll_interval: DurationField = Field(default="10s", validate_default=True)  # a str: JSON-schema friendly
    polling: Polling = "fixed"
    """When plan states are read: every ``poll_interval``, or adaptively within the same budget."""
    give_up_after: DurationField = Field(default="5m", validate_default=True)
    """How long a server that is unreachable or answers 5xx is borne before the drill stops waiting."""
    on_halt: HaltPolicy = HaltPolicy()
    history: HistoryPolicy = HistoryPolicy()
    """How fresh this drill's proof must be and what counts as a regression (``vaodrill history --check``)."""
    checks: tuple[Check, ...] = ()
    """The checks of every plan that has no ``checks`` of its own."""
    plans: tuple[PlanStep, ...] = Field(min_length=1)

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: tuple[Check, ...]) -> tuple[Check, ...]:
        return _checked_list(value)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9-]+", value):
            raise PydanticCustomError(
                "drill_name", f"must be lowercase letters, digits and hyphens ([a-z0-9-]+), got {show_value(value)}"
            )
        if len(value) > MAX_DRILL_NAME:
            raise PydanticCustomError("drill_name_length", f"{len(value)} characters (at most {MAX_DRILL_NAME})")
        return value

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> str:
        try:
            return check_timezone(value)
        except ValueError as exc:
            raise PydanticCustomError("timezone", str(exc)) from None

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > MAX_DESCRIPTION:
            raise PydanticCustomError("description_length", f"{len(value)} characters (at most {MAX_DESCRIPTION})")
        return "" if value is None else value

    @field_validator("poll_interval", "give_up_after")
    @classmethod
    def _duration_range(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        low, high = _DURATION_RANGES[str(info.field_name)]
        if not low <= value <= high:
            raise PydanticCustomError(
                "duration_range",
                f"must be from {spec_duration(low)} to {spec_duration(high)}, got {spec_duration(value)}",
            )
        return value

    @field_validator("plans", mode="before")
    @classmethod
    def _plan_count(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) > MAX_PLANS:  # before validating each one
            raise PydanticCustomError("too_many_plans", f"{len(value)} plans (at most {MAX_PLANS})")
        return value

    @field_validator("plans")
    @classmethod
    def _graph(cls, plans: tuple[PlanStep, ...]) -> tuple[PlanStep, ...]:
        first_index: dict[str, int] = {}
        for i, step in enumerate(plans):
            folded = step.plan.casefold()
            if folded in first_index:
                j = first_index[folded]
                raise SpecIssue(("plans", i, "plan"), f"duplicate plan {step.plan!r} (also plans[{j}])")
            first_index[folded] = i
        keys = [step.plan for step in plans]
        key_set = set(keys)
        for i, step in enumerate(plans):
            for dep in step.after:
                if dep == step.plan:
                    raise SpecIssue(("plans", i, "after"), f"{dep!r} cannot run after itself")
                if dep not in key_set:
                    hint = did_you_mean(dep, keys)
                    raise SpecIssue(("plans", i, "after"), f"{show_value(dep)} is not a plan of this drill{hint}")
        cycle = _find_cycle(plans)
        if cycle:
            raise SpecIssue(("plans",), "cycle: " + " -> ".join(cycle))
        return plans

    @model_validator(mode="after")
    def _max_parallel_fits(self) -> DrillSpec:
        if self.max_parallel is not None and self.max_parallel > len(self.plans):
            raise SpecIssue(
                ("max_parallel",),
                f"must be at most {len(self.plans)}, the number of plans, got {self.max_parallel}",
            )
        return self

    # --------------------------------------------------------------------------------- engine helpers

    @cached_property
    def steps_by_key(self) -> dict[str, PlanStep]:
        """``plan`` string -> step, in declaration order."""
        return {step.plan: step for step in self.plans}

    @property
    def poll_interval_seconds(self) -> float:
        """``poll_interval`` as float seconds, for sleep calls."""
        return self.poll_interval.total_seconds()

    def _step(self, step: PlanStep | str) -> PlanStep:
        key = step.plan if isinstance(step, PlanStep) else step
        try:
            return self.steps_by_key[key]
        except KeyError:
            raise KeyError(f"{key!r} is not a plan of drill {self.name!r}") from None

    def topological_order(self) -> list[PlanStep]:
        """Every step after its ``after`` steps; among steps ready together, declaration order wins."""
        index = {step.plan: i for i, step in enumerate(self.plans)}
        waiting = {step.plan: len(step.after) for step in self.plans}
        children: dict[str, list[str]] = {step.plan: [] for step in self.plans}
        for step in self.plans:
            for dep in step.after:
                children[dep].append(step.plan)
        ready = [index[key] for key, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[PlanStep] = []
        while ready:
            step = self.plans[heapq.heappop(ready)]
            order.append(step)
            for child in children[step.plan]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, index[child])
        return order

    def dependents(self, key: PlanStep | str) -> set[str]:
        """Keys of every step that runs after ``key``, directly or transitively (not ``key`` itself)."""
        start = self._step(key).plan
        found: set[str] = set()
        frontier = [start]
        while frontier:
            current = frontier.pop()
            for step in self.plans:
                if current in step.after and step.plan not in found:
                    found.add(step.plan)
                    frontier.append(step.plan)
        return found

    def rule_for(self, step: PlanStep | str) -> BaseRule:
        """The step's restore-point rule, else the drill's default."""
        own = self._step(step).restore_point
        return own if own is not None else self.restore_point

    def halt_policy_for(self, step: PlanStep | str) -> HaltPolicy:
        """The step's halt policy, else the drill's default."""
        own = self._step(step).on_halt
        return own if own is not None else self.on_halt

    def checks_for(self, step: PlanStep | str) -> tuple[Check, ...]:
        """The step's checks, else the drill's."""
        own = self._step(step).checks
        return own if own is not None else self.checks


def _checked_list(checks: tuple[Check, ...]) -> tuple[Check, ...]:
    if len(checks) > MAX_CHECKS:
        raise PydanticCustomError("too_many_checks", f"{len(checks)} checks (at most {MAX_CHECKS})")
    if (twice := unique_check_names(checks)) is not None:
        raise PydanticCustomError("check_name_twice", f"two checks are named {twice!r} (give one a name)")
    return checks


def _find_cycle(plans: tuple[PlanStep, ...]) -> list[str]:
    """Members of one dependency cycle in run order, first-declared member first and last; [] if none."""
    waiting = {step.plan: len(step.after) for step in plans}
    children: dict[str, list[str]] = {step.plan: [] for step in plans}
    for step in plans:
        for dep in step.after:
            children[dep].append(step.plan)
    ready = [key for key, count in waiting.items() if count == 0]
    while ready:
        for child in children[ready.pop()]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    stuck = [step for step in plans if waiting[step.plan] > 0]
    if not stuck:
        return []
    # Every stuck step waits for at least one stuck step, so walking "waits for" edges must loop.
    stuck_keys = {step.plan for step in stuck}
    by_key = {step.plan: step for step in plans}
    path: list[str] = []
    current = stuck[0].plan
    while current not in path:
        path.append(current)
        current = next(dep for dep in by_key[current].after if dep in stuck_keys)
    waits_for = path[path.index(current) :]  # a -> waits for b -> waits for c ...
    run_order = list(reversed(waits_for))  # c runs before b runs before a
    order = {step.plan: i for i, step in enumerate(plans)}
    start = min(range(len(run_order)), key=lambda i: order[run_order[i]])
    run_order = run_order[start:] + run_order[:start]
    return [*run_order, run_order[0]]
