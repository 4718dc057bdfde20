"""The drill spec: a DR drill as a YAML file, validated by pydantic, with the graph helpers the engine needs.

Prefect-free on purpose: a drill file can be checked (CLI, CI, pre-commit) without a Prefect install or server.

YAML shape::

    name: app-stack-quarterly          # [a-z0-9-]+
    description: Quarterly DR test      # optional
    mode: drill                        # drill (failover, then undo; default) | failover (real DR, no undo)
    timezone: Europe/Berlin            # IANA zone in which restore-point rules are read (default UTC)
    restore_point: latest              # default rule for every plan (see vaodrill.restore_points)
    max_parallel: 3                    # plans failing over at once (default: no limit beyond the DAG)
    poll_interval: 10s                 # how often plan states are read (default 10s)
    on_halt: fail                      # fail (default) | {continue: <option>, max: 1..10 (default 1)}
    plans:
      - plan: Core Network             # a plan name or id (GUID); a bare string is short for {plan: ...}
      - plan: SQL Tier
        after: [Core Network]          # names used in `plan:` of this drill; a single string is fine too
        restore_point: {ago: 6h}       # overrides the drill's rule
        rto_target: 45m                # overrides the plan's targetRTO
        timeout: 2h                    # give up waiting (default decided by the engine)
        on_halt: {continue: RetryFailedStep, max: 1}

``on_halt`` continue options: ProceedToNextVm, ProceedToNextGroup, ProceedToNextStep, RetryFailedStep,
RetryFailedVm, RetryFailedGroup (matched ignoring case, spaces, ``_`` and ``-``). ``max`` is how many times the
engine may answer a halt of that plan with Continue; the next halt fails the plan.

``load_spec``/``parse_spec`` raise ``SpecError`` whose ``str()`` is one line naming the file, the place and the
problem (``demo.yaml: plans[1].after: 'Core Netwrk' is not a plan of this drill``); the YAML line, when known,
is in ``SpecError.line``. ``spec.model_dump()`` gives YAML-safe data that parses back to an equal spec.
"""

from __future__ import annotations

import difflib
import heapq
import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import Field, ValidationError, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from vaodrill.durations import DurationField
from vaodrill.restore_points import (
    BaseRule,
    LatestRule,
    RestorePointRule,
    StrictModel,
    check_timezone,
    show_value,
    validation_problem,
)

__all__ = [
    "CONTINUE_OPTIONS",
    "ContinueOption",
    "DrillSpec",
    "HaltPolicy",
    "PlanStep",
    "SpecError",
    "load_spec",
    "parse_spec",
]

ContinueOption = Literal[
    "ProceedToNextVm",
    "ProceedToNextGroup",
    "ProceedToNextStep",
    "RetryFailedStep",
    "RetryFailedVm",
    "RetryFailedGroup",
]
CONTINUE_OPTIONS: tuple[str, ...] = get_args(ContinueOption)


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
        return "fail" if self.continue_with is None else {"continue": self.continue_with, "max": self.max}

    def __str__(self) -> str:
        return "fail" if self.continue_with is None else f"continue {self.continue_with} (max {self.max})"


class PlanStep(StrictModel):
    """One plan of the drill. ``plan`` is the key other steps' ``after`` refer to."""

    plan: str
    after: tuple[str, ...] = ()
    restore_point: RestorePointRule | None = None
    rto_target: DurationField | None = None
    timeout: DurationField | None = None
    on_halt: HaltPolicy | None = None

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
        return value.strip()

    @field_validator("after", mode="before")
    @classmethod
    def _after_list(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise PydanticCustomError("after_list", f"expected a list of plan names, got {show_value(value)}")
        names: list[str] = []
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise PydanticCustomError("after_item", f"expected a plan name, got {show_value(item)}")
            if item.strip() in names:
                raise PydanticCustomError("after_twice", f"{item.strip()!r} is listed twice")
            names.append(item.strip())
        return tuple(names)

    @property
    def key(self) -> str:
        return self.plan


class _PlanIssue(ValueError):
    """A cross-plan problem, with its place inside ``plans`` so the one-line error can name it."""

    def __init__(self, where: str, problem: str) -> None:
        self.where, self.problem = where, problem
        super().__init__(f"plans{where}: {problem}")


class DrillSpec(StrictModel):
    """A validated drill. Plans form a DAG through ``after``; keys are the ``plan`` strings."""

    name: str
    description: str = ""
    mode: Literal["drill", "failover"] = "drill"
    timezone: str = "UTC"
    restore_point: RestorePointRule = LatestRule()
    max_parallel: int | None = Field(default=None, ge=1)
    poll_interval: DurationField = Field(default="10s", validate_default=True)  # a str: JSON-schema friendly
    on_halt: HaltPolicy = HaltPolicy()
    plans: tuple[PlanStep, ...] = Field(min_length=1)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9-]+", value):
            raise PydanticCustomError(
                "drill_name", f"must be lowercase letters, digits and hyphens ([a-z0-9-]+), got {show_value(value)}"
            )
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
        return "" if value is None else value

    @field_validator("max_parallel", mode="before")
    @classmethod
    def _max_parallel_is_int(cls, value: Any) -> Any:
        return _whole_number(value)

    @field_validator("plans")
    @classmethod
    def _graph(cls, plans: tuple[PlanStep, ...]) -> tuple[PlanStep, ...]:
        first_index: dict[str, int] = {}
        for i, step in enumerate(plans):
            folded = step.plan.casefold()
            if folded in first_index:
                j = first_index[folded]
                raise _PlanIssue(f"[{i}].plan", f"duplicate plan {step.plan!r} (also plans[{j}])")
            first_index[folded] = i
        keys = [step.plan for step in plans]
        for i, step in enumerate(plans):
            for dep in step.after:
                if dep == step.plan:
                    raise _PlanIssue(f"[{i}].after", f"{dep!r} cannot run after itself")
                if dep not in keys:
                    raise _PlanIssue(f"[{i}].after", f"{dep!r} is not a plan of this drill{_hint(dep, keys)}")
        cycle = _find_cycle(plans)
        if cycle:
            raise _PlanIssue("", "cycle: " + " -> ".join(cycle))
        return plans

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


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
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
    ``line 4`` (empty at the top level), ``line`` the 1-based YAML line when known.
    """

    def __init__(self, problem: str, *, source: str | None = None, location: str = "", line: int | None = None) -> None:
        self.problem = " ".join(problem.splitlines())
        self.source, self.location, self.line = source, location, line
        super().__init__(": ".join(part for part in (source, location, self.problem) if part))


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML key or item on ``loc`` (pydantic's error location)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:  # pragma: no cover - text already loaded once
        return None
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


def _from_validation_error(exc: ValidationError, text: str, source: str) -> SpecError:
    first = exc.errors(include_url=False)[0]
    location, problem = validation_problem(exc)
    raw_loc: tuple[int | str, ...] = tuple(first["loc"])
    ctx = first.get("ctx") or {}
    if first["type"] == "unknown_key":
        raw_loc = (*raw_loc, ctx["key"])
    issue = ctx.get("error")
    if isinstance(issue, _PlanIssue):
        extra = problem[len(str(issue)) :]  # the "(+N more)" suffix, if any
        location, problem = f"plans{issue.where}", issue.problem + extra
        index = issue.where[1 : issue.where.find("]")] if issue.where.startswith("[") else ""
        if index.isdigit():
            raw_loc = ("plans", int(index), "after" if issue.where.endswith("after") else "plan")
    return SpecError(problem, source=source, location=location, line=_line_of(text, raw_loc))


def parse_spec(text: str, source: str = "<string>") -> DrillSpec:
    """Parse and validate a drill from YAML text; ``SpecError`` (one line) on any problem."""
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or exc.context or "unreadable"
        where = f"line {line}" if line else ""
        raise SpecError(f"invalid YAML ({what})", source=source, location=where, line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML ({exc})", source=source) from None
    if data is None:
        raise SpecError("empty drill file", source=source)
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping (name, plans, ...) at the top level, got {show_value(data)}", source=source, line=1
        )
    try:
        return DrillSpec.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, text, source) from None


def load_spec(path: str | os.PathLike[str]) -> DrillSpec:
    """Read and validate a drill file; ``SpecError`` names the file in every message."""
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such drill file: {name}") from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a drill file", source=name) from None
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text", source=name) from None
    except OSError as exc:
        raise SpecError(f"cannot read ({exc.strerror or exc})", source=name) from None
    return parse_spec(text, source=name)
