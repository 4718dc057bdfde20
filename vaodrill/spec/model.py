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

``load_spec``/``parse_spec`` raise ``SpecError`` whose ``str()`` is one line naming the file, the place and the
problem (``demo.yaml: plans[1].after: 'Core Netwrk' is not a plan of this drill``); the YAML line, when known,
is in ``SpecError.line``. ``spec.model_dump()`` gives YAML-safe data that parses back to an equal spec.

Limits. A drill file is hostile input until proven otherwise: each limit below turns what would be a hang, a
huge allocation or a traceback into one ``SpecError`` within a fraction of a second.

* the file: a regular file (not a FIFO, device or directory) of at most ``MAX_FILE_BYTES`` (1 MiB), read with
  that bound, in UTF-8;
* the YAML: nested at most ``MAX_DEPTH`` (64) levels, at most ``MAX_NODES`` (30,000) values where an alias
  counts as everything it stands for (so an alias bomb is refused before it is expanded; a 1,000-plan drill
  with every key set has about 19,000 values), numbers and dates at most 100 characters;
* the drill: at most ``MAX_PLANS`` (1,000) plans, ``after`` lists at most as long; plan names at most
  ``MAX_PLAN_NAME`` (200) characters without control characters; the drill name at most 100 characters; the
  description at most ``MAX_DESCRIPTION`` (4,000); ``max_parallel`` from 1 to the number of plans;
* values: durations at most 10 years, ``poll_interval`` from 0.05 s (for the simulator; use seconds against a
  real VAO) to 1 h, ``give_up_after`` from 10 s to 24 h, ``at`` dates in the years 1970 to 2199, seeds
  0 to 2**63-1 (see ``vaodrill.spec.durations`` and ``vaodrill.spec.restore_points``).
"""

from __future__ import annotations

import difflib
import heapq
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal, cast

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError
from yaml._yaml import CParser  # libyaml; PyYAML's wheels ship it

from vaodrill.spec.checks import MAX_CHECKS, Check, unique_check_names
from vaodrill.spec.durations import DurationField, spec_duration
from vaodrill.spec.restore_points import (
    BaseRule,
    LatestRule,
    RestorePointRule,
    StrictModel,
    check_timezone,
    show_value,
    validation_problem,
)
from vaodrill.vao.models import ContinueOption

Polling = Literal["fixed", "adaptive"]
"""How a drill asks its plan states to be read (:mod:`vaodrill.engine.cadence` does the reading)."""
POLLING: tuple[Polling, ...] = ("fixed", "adaptive")

__all__ = [
    "CONTINUE_OPTIONS",
    "GIVE_UP_AFTER_RANGE",
    "MAX_DEPTH",
    "MAX_DESCRIPTION",
    "MAX_DRILL_NAME",
    "MAX_FILE_BYTES",
    "MAX_NODES",
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
    "SpecError",
    "load_spec",
    "parse_spec",
]

CONTINUE_OPTIONS: tuple[str, ...] = tuple(option.value for option in ContinueOption)

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 30_000
MAX_PLANS = 1000
MAX_PLAN_NAME = 200
MAX_DRILL_NAME = 100
MAX_DESCRIPTION = 4000
POLL_INTERVAL_RANGE = (timedelta(milliseconds=50), timedelta(hours=1))
GIVE_UP_AFTER_RANGE = (timedelta(seconds=10), timedelta(hours=24))
_DURATION_RANGES = {"poll_interval": POLL_INTERVAL_RANGE, "give_up_after": GIVE_UP_AFTER_RANGE}
_HINT_BUDGET = 1_000_000  # characters x characters difflib may compare for one did-you-mean hint


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in " _-")


_OPTION_BY_SQUASHED = {_squash(option): option for option in CONTINUE_OPTIONS}


def _whole_number(value: Any) -> Any:
    """pydantic's lax int takes ``true`` as 1; in a drill file that is always a mistake."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", f"expected a whole number, got {show_value(value)}")
    return value


class HaltPolicy(StrictModel):
    """What to do when a plan halts: ``fail`` (default), or answer with Continue up to ``max`` times.

    ``continue_with`` is None for ``fail``. Build one with ``HaltPolicy()`` (fail) or
    ``HaltPolicy(continue_with="RetryFailedStep", max=2)``.
    """

    continue_with: ContinueOption | None = Field(default=None, alias="continue")
    max: int = Field(default=1, ge=1, le=10)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data.strip().lower() == "fail":
                return {}
            raise PydanticCustomError(
                "halt_policy", f"expected 'fail' or {{continue: <option>, max: N}}, got {show_value(data)}"
            )
        if isinstance(data, Mapping) and "max" in data and not {"continue", "continue_with"} & set(data):
            raise PydanticCustomError("halt_policy", "'max' needs 'continue: <option>'")
        return data

    @field_validator("continue_with", mode="before")
    @classmethod
    def _option(cls, value: Any) -> Any:
        option = _OPTION_BY_SQUASHED.get(_squash(value)) if isinstance(value, str) else None
        if option is None:
            raise PydanticCustomError(
                "halt_option",
                f"unknown continue option {show_value(value)} (expected one of {', '.join(CONTINUE_OPTIONS)})",
            )
        return option

    @field_validator("max", mode="before")
    @classmethod
    def _max_is_int(cls, value: Any) -> Any:
        return _whole_number(value)

    @property
    def is_fail(self) -> bool:
        return self.continue_with is None

    @model_serializer
    def _dump(self) -> str | dict[str, Any]:
        return "fail" if self.continue_with is None else {"continue": self.continue_with.value, "max": self.max}

    def __str__(self) -> str:
        return "fail" if self.continue_with is None else f"continue {self.continue_with.value} (max {self.max})"


class HistoryPolicy(StrictModel):
    """How fresh a drill's proof must be and what counts as an RTO regression (``vaodrill history --check``).

    ``max_age``: a plan whose last passed drill is older is overdue (default 365d: DORA wants a yearly test).
    ``rto_regression``: a plan whose last passed RTO exceeds the median of its five passed drills before it by
    more than this many percent (``25%`` or ``25``) has regressed; unset: not checked.
    """

    max_age: DurationField = Field(default="365d", validate_default=True)
    rto_regression: float | None = Field(default=None, gt=0, le=1000)

    @field_validator("max_age")
    @classmethod
    def _max_age_range(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise PydanticCustomError("duration_range", f"must be at least 1d, got {spec_duration(value)}")
        return value

    @field_validator("rto_regression", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().removesuffix("%").strip()
            try:
                return float(text)
            except ValueError:
                raise PydanticCustomError("percent", f"a percentage like 25%, got {show_value(value)}") from None
        if isinstance(value, bool):
            raise PydanticCustomError("percent", f"a percentage like 25%, got {show_value(value)}")
        return value


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
                "plan_name", f"expected a plan name or id, got {show_value(value)} (quote it in YAML)")
        name = value.strip()
        if len(name) > MAX_PLAN_NAME:
            raise PydanticCustomError(
                "plan_name_length", f"plan name of {len(name)} characters (at most {MAX_PLAN_NAME})")
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


class _Issue(ValueError):
    """A problem found across fields, with its place (``("plans", 2, "after")``) so the error can name it."""

    def __init__(self, loc: tuple[str | int, ...], problem: str) -> None:
        self.loc, self.problem = loc, problem
        super().__init__(f"{_format_loc(loc)}: {problem}")


def _format_loc(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


class DrillSpec(StrictModel):
    """A validated drill. Plans form a DAG through ``after``; keys are the ``plan`` strings."""

    name: str
    description: str = ""
    mode: Literal["drill", "failover", "readiness"] = "drill"
    timezone: str = "UTC"
    restore_point: RestorePointRule = LatestRule()
    max_parallel: int | None = Field(default=None, ge=1, le=MAX_PLANS)
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
            raise PydanticCustomError(
                "drill_name_length", f"{len(value)} characters (at most {MAX_DRILL_NAME})")
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
            raise PydanticCustomError(
                "description_length", f"{len(value)} characters (at most {MAX_DESCRIPTION})")
        return "" if value is None else value

    @field_validator("max_parallel", mode="before")
    @classmethod
    def _max_parallel_is_int(cls, value: Any) -> Any:
        return _whole_number(value)

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
                raise _Issue(("plans", i, "plan"), f"duplicate plan {step.plan!r} (also plans[{j}])")
            first_index[folded] = i
        keys = [step.plan for step in plans]
        key_set = set(keys)
        for i, step in enumerate(plans):
            for dep in step.after:
                if dep == step.plan:
                    raise _Issue(("plans", i, "after"), f"{dep!r} cannot run after itself")
                if dep not in key_set:
                    raise _Issue(
                        ("plans", i, "after"), f"{show_value(dep)} is not a plan of this drill{_hint(dep, keys)}")
        cycle = _find_cycle(plans)
        if cycle:
            raise _Issue(("plans",), "cycle: " + " -> ".join(cycle))
        return plans

    @model_validator(mode="after")
    def _max_parallel_fits(self) -> DrillSpec:
        if self.max_parallel is not None and self.max_parallel > len(self.plans):
            raise _Issue(
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


def _hint(word: str, choices: list[str]) -> str:
    """`` (did you mean 'X'?)`` or ""; difflib is quadratic, so long words among many choices get no guess."""
    affordable = len(word) * sum(len(choice) for choice in choices) <= _HINT_BUDGET
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6) if affordable else []
    if not close:
        folded = [c for c in choices if c.casefold() == word.casefold()]
        close = folded[:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


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


# ------------------------------------------------------------------------------------------ loading


class SpecError(ValueError):
    """A drill file problem; ``str()`` is one line: ``<source>: <location>: <problem>``.

    ``source`` is the file name (or ``<string>``), ``location`` like ``plans[2].restore_point`` or
    ``line 4`` (empty at the top level), ``line`` the 1-based YAML line when known. ``kind`` sorts problems for
    callers that count them: ``file``, ``too_large``, ``yaml``, ``limit`` (depth, size, aliases), or the
    validation error's type (``unknown_key``, ``value_error``, ``too_many_plans``...). The problem is cut to
    ``MAX_PROBLEM`` characters: a hostile value must not turn into a megabyte of error text.
    """

    MAX_PROBLEM = 500

    def __init__(self, problem: str, *, source: str | None = None, location: str = "", line: int | None = None,
                 kind: str = "invalid") -> None:
        problem = " ".join(problem.splitlines())
        if len(problem) > self.MAX_PROBLEM:
            problem = problem[: self.MAX_PROBLEM - 3] + "..."
        self.problem, self.kind = problem, kind
        self.source, self.location, self.line = source, location, line
        message = ": ".join(part for part in (source, location, self.problem) if part)
        super().__init__(" ".join(message.splitlines()))  # a file name may hold a newline too


class _LimitError(yaml.composer.ComposerError):
    """A document deeper or larger than the loader allows."""


class _ScalarError(yaml.constructor.ConstructorError):
    """A number, boolean or date that cannot be built; reported at its key path, like a validation error."""


class _Loader(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """libyaml's parser, PyYAML's composer with limits, the safe constructor without duplicate keys.

    libyaml parses 1 MiB in a fraction of a second where PyYAML's pure parser needs many seconds. Composing
    stays in Python so each node is counted before anything is built: an alias counts as every value it stands
    for, so an alias bomb is refused after a few hundred events instead of being expanded, and nesting is
    refused at ``MAX_DEPTH`` instead of exhausting the stack.
    """

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[str, int] = {}  # anchor -> how many values it stands for

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        mark = getattr(event, "start_mark", None)
        if isinstance(event, yaml.AliasEvent):
            size = self._sizes.get(anchor) if anchor is not None else None
            if size is None and anchor in self.anchors:
                raise _LimitError(None, None, f"alias *{_short(anchor)} refers to a value containing it", mark)
            self._count(size or 0, mark, f"aliases expand to more than {MAX_NODES} values")
            return super().compose_node(parent, index)  # an undefined alias is PyYAML's error
        if self._depth >= MAX_DEPTH:
            raise _LimitError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._count(1, mark, f"more than {MAX_NODES} values")
        before = self._nodes
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if anchor is not None:
            self._sizes[anchor] = self._nodes - before + 1
        return node

    def _count(self, nodes: int, mark: Any, problem: str) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise _LimitError(None, None, problem, mark)


def _short(text: object) -> str:
    shown = str(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    """Refuse duplicate keys (plain PyYAML silently keeps the last one)."""
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen  # a set key is looked up as a frozenset, but cannot be added
            seen.add(key)
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {show_value(key)}",
                key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


# cast: the stubs only admit PyYAML's own loader classes here
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, cast(Any, _mapping_without_duplicates))

_MAX_SCALAR_TEXT = 100  # numbers, booleans, dates: int() of a long digit string is slow, then refused


def _checked_scalar(tag: str, what: str) -> Callable[[_Loader, yaml.ScalarNode], Any]:
    """PyYAML's constructor for ``tag``, with a length bound and its ValueError & co. as YAML errors."""
    construct = yaml.constructor.SafeConstructor.yaml_constructors[tag]

    def checked(loader: _Loader, node: yaml.ScalarNode) -> Any:
        text = node.value if isinstance(node.value, str) else ""
        if len(text) > _MAX_SCALAR_TEXT:
            raise _ScalarError(
                None, None, f"{what} of {len(text)} characters (at most {_MAX_SCALAR_TEXT})", node.start_mark)
        try:
            return construct(loader, node)
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError):  # e.g. !!int x, year 0
            raise _ScalarError(None, None, f"invalid {what} {show_value(text)}", node.start_mark) from None

    return checked


for _tag, _what in (("int", "integer"), ("float", "number"), ("bool", "boolean"), ("timestamp", "date")):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", cast(Any, _checked_scalar(f"tag:yaml.org,2002:{_tag}", _what)))


def _read_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The document's root node (for error lines) and its data; ``SpecError`` on bad or oversized YAML."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        try:
            return root, None if root is None else loader.construct_document(root)
        except _ScalarError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            where = _path_of(root, exc.problem_mark) or (f"line {line}" if line else "")
            raise SpecError(exc.problem or "invalid value", source=source, location=where, line=line,
                            kind="yaml_value") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        where = f"line {line}" if line else ""
        if isinstance(exc, _LimitError):
            raise SpecError(exc.problem or "too large", source=source, location=where, line=line,
                            kind="limit") from None
        what = exc.problem or exc.context or "unreadable"
        raise SpecError(f"invalid YAML ({what})", source=source, location=where, line=line, kind="yaml") from None
    except yaml.reader.ReaderError as exc:
        problem = f"invalid YAML ({exc.reason}: #x{exc.character:04x} at character {exc.position})"
        raise SpecError(problem, source=source, kind="yaml") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML ({exc})", source=source, kind="yaml") from None
    finally:
        loader.dispose()


def _path_of(root: yaml.Node | None, mark: Any) -> str:
    """``plans[2].restore_point.seed`` for the scalar node starting at ``mark``; "" if not found."""
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())] if root is not None and mark else []
    seen: set[int] = set()  # aliases share nodes: visit each once
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode) and node.start_mark.index == mark.index:
            return _format_loc(path)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                label = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack += [(key, (*path, label)), (value, (*path, label))]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(child, (*path, i)) for i, child in enumerate(node.value)]
    return ""


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML key or item on ``loc`` (pydantic's error location)."""
    node = root
    if node is None:
        return None
    line = node.start_mark.line
    for part in loc:
        if isinstance(part, str) and part.startswith("rule:"):
            continue
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = [(key, value) for key, value in node.value if getattr(key, "value", None) == part]
            if not match:
                break
            line, node = match[0][0].start_mark.line, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1


def _from_validation_error(exc: ValidationError, root: yaml.Node | None, source: str) -> SpecError:
    first = exc.errors(include_url=False)[0]
    location, problem = validation_problem(exc)
    raw_loc: tuple[int | str, ...] = tuple(first["loc"])
    ctx = first.get("ctx") or {}
    if first["type"] == "unknown_key":
        raw_loc = (*raw_loc, ctx["key"])
    issue = ctx.get("error")
    if isinstance(issue, _Issue):
        extra = problem[len(str(issue)) :]  # the "(+N more)" suffix, if any
        location, problem, raw_loc = _format_loc(issue.loc), issue.problem + extra, issue.loc
    return SpecError(problem, source=source, location=location, line=_line_of(root, raw_loc), kind=first["type"])


def parse_spec(text: str, source: str = "<string>") -> DrillSpec:
    """Parse and validate a drill from YAML text; ``SpecError`` (one line) on any problem."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError(f"larger than {MAX_FILE_BYTES} bytes (1 MiB)", source=source, kind="too_large")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError("not UTF-8 text (a lone surrogate)", source=source, kind="file") from None
    root, data = _read_yaml(text, source)
    if data is None:
        raise SpecError("empty drill file", source=source, kind="empty")
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping (name, plans, ...) at the top level, got {show_value(data)}",
                        source=source, line=1, kind="top_level")
    try:
        return DrillSpec.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, root, source) from None


def load_spec(path: str | os.PathLike[str]) -> DrillSpec:
    """Read and validate a drill file; ``SpecError`` names the file in every message."""
    name = os.fspath(path)
    return parse_spec(_read_drill_file(name), source=name)


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_drill_file(name: str) -> str:
    """The text of a regular file of at most ``MAX_FILE_BYTES``.

    Opened without blocking and checked on the open descriptor (no race with a swapped file), so a FIFO
    cannot hang the open; read with a bound, so an endless file (/dev/zero, /proc) cannot fill memory.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except FileNotFoundError:
        raise SpecError(f"no such drill file: {name}", kind="file") from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a drill file", source=name, kind="file") from None
    except OSError as exc:
        raise SpecError(f"cannot read ({exc.strerror or exc})", source=name, kind="file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = next((text for test, text in _FILE_TYPES if test(info.st_mode)), "not a regular file")
            raise SpecError(f"is {what}, not a drill file", source=name, kind="file")
        if info.st_size > MAX_FILE_BYTES:
            raise SpecError(f"larger than {MAX_FILE_BYTES} bytes (1 MiB)", source=name, kind="too_large")
        data = b""
        while len(data) <= MAX_FILE_BYTES:  # the size may lie (procfs) or grow meanwhile
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise SpecError(f"cannot read ({exc.strerror or exc})", source=name, kind="file") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(f"larger than {MAX_FILE_BYTES} bytes (1 MiB)", source=name, kind="too_large")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text", source=name, kind="file") from None
