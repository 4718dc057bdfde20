"""Plan states and the one table of legal operations (docs/vao-api.md, section 4.2 and 4.3).

A plan's position is a :class:`Status`: the stage it is in (or ``Enabled``/``Disabled`` when idle) plus a
:class:`Phase`. The public ``planState`` is derived from it: a halted stage shows as ``Halted``, anything else
shows its stage. Keeping the halted stage's kind inside the status is what lets one table say that ``Undo`` of a
halted failback is an undo *failback*.

:class:`PlanState` is the client's (:mod:`vaodrill.vao.models`); the simulator never emits its ``Verified``,
``NotVerified`` or ``Unknown`` (a profile's ``state_words`` may show other words for the same states).

:data:`RULES` is the single source of truth: the engine asks :func:`resolve` for the move an operation makes,
and the same entry's ``requires`` text builds the refusal message when the status is not in the table.

A plan whose profile says ``after_undo: UndoFailover`` stays in :data:`UNDONE` (a completed ``UndoFailover``)
after an undo; docs/vao-api.md, section 5 counts that as idle, so Run and Disable are legal from it as from ``Enabled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from vaodrill.vao.models import PlanState  # the contract's v2 words, the client's: one enum for both sides

STAGES: tuple[PlanState, ...] = (
    PlanState.FAILOVER,
    PlanState.UNDO_FAILOVER,
    PlanState.PERMANENT_FAILOVER,
    PlanState.FAILBACK,
    PlanState.UNDO_FAILBACK,
    PlanState.COMMIT_FAILBACK,
)
"""States that are stages: they run, complete or halt."""

UNDO_STAGES: frozenset[PlanState] = frozenset({PlanState.UNDO_FAILOVER, PlanState.UNDO_FAILBACK})


class Phase(StrEnum):
    """Where a plan is within its state."""

    IDLE = "idle"  # Enabled / Disabled
    RUNNING = "running"
    COMPLETE = "complete"
    HALTED = "halted"


@dataclass(frozen=True)
class Status:
    """A plan's exact position: ``stage`` is Enabled/Disabled when idle, else the stage kind."""

    stage: PlanState
    phase: Phase

    @property
    def plan_state(self) -> PlanState:
        """The public ``planState``."""
        return PlanState.HALTED if self.phase is Phase.HALTED else self.stage

    @property
    def in_use(self) -> bool:
        """``planInUse``: true while a stage runs and while Halted (docs/vao-api.md, section 4.2)."""
        return self.phase in (Phase.RUNNING, Phase.HALTED)

    def __str__(self) -> str:
        if self.phase is Phase.IDLE:
            return str(self.stage)
        if self.phase is Phase.HALTED:
            return f"Halted ({self.stage})"
        return f"{self.stage} ({self.phase})"


def _s(stage: PlanState, phase: Phase) -> Status:
    return Status(stage, phase)


DISABLED = _s(PlanState.DISABLED, Phase.IDLE)
ENABLED = _s(PlanState.ENABLED, Phase.IDLE)
RUNNING = {k: _s(k, Phase.RUNNING) for k in STAGES}
COMPLETE = {k: _s(k, Phase.COMPLETE) for k in STAGES}
HALTED = {k: _s(k, Phase.HALTED) for k in STAGES}
UNDONE = COMPLETE[PlanState.UNDO_FAILOVER]
"""A completed UndoFailover: reached only under ``after_undo: UndoFailover``, else the plan becomes Enabled."""
READY = frozenset({ENABLED, UNDONE})
"""Statuses from which a FailoverNow may start (docs/vao-api.md, section 5: idle, or a completed undo)."""

REACHABLE: tuple[Status, ...] = (DISABLED, ENABLED, *RUNNING.values(), *COMPLETE.values(), *HALTED.values())
"""Every status a plan can be in (:data:`UNDONE` only under the ``after_undo: UndoFailover`` profile)."""

STABLE: tuple[Status, ...] = tuple(s for s in REACHABLE if s.phase is not Phase.RUNNING)


class Op(StrEnum):
    """Operations of table 4.3; Run is split by mode because each mode has its own precondition."""

    ENABLE = "Enable"
    DISABLE = "Disable"
    RUN_FAILOVER = "Run FailoverNow"
    RUN_PERMANENT_FAILOVER = "Run PermanentFailoverNow"
    RUN_FAILBACK = "Run Failback"
    RUN_COMMIT_FAILBACK = "Run CommitFailBack"
    HALT = "Halt"
    CONTINUE = "Continue"
    UNDO = "Undo"
    RESET = "Reset"
    SCHEDULE = "Schedule"
    DISABLE_SCHEDULE = "DisableSchedule"


RUN_MODES: dict[str, Op] = {
    "FailoverNow": Op.RUN_FAILOVER,
    "PermanentFailoverNow": Op.RUN_PERMANENT_FAILOVER,
    "Failback": Op.RUN_FAILBACK,
    "CommitFailBack": Op.RUN_COMMIT_FAILBACK,
}
"""Run ``mode`` values (docs/vao-api.md, section 4.4: ``CommitFailBack``, capital B) and the operation of each."""


@dataclass(frozen=True)
class Move:
    """What a legal operation does.

    ``settle``: become idle in ``target``, ending any current stage; ``start``: begin stage ``target``;
    ``halt``/``resume``: pause or continue the current stage; ``stay``: no state change (schedules).
    """

    action: Literal["settle", "start", "halt", "resume", "stay"]
    target: PlanState | None = None


@dataclass(frozen=True)
class Rule:
    """The statuses an operation is legal in, the move it makes from each, and the refusal's wording.

    ``{idle}`` in ``requires`` stands for what the plan shows when idle (``Enabled``, ``Verified``, ...).
    """

    requires: str
    moves: Mapping[Status, Move]


def _undo_target(stage: PlanState) -> PlanState:
    failback_family = (PlanState.FAILBACK, PlanState.UNDO_FAILBACK, PlanState.COMMIT_FAILBACK)
    return PlanState.UNDO_FAILBACK if stage in failback_family else PlanState.UNDO_FAILOVER


RULES: dict[Op, Rule] = {
    Op.ENABLE: Rule("Disabled", {DISABLED: Move("settle", PlanState.ENABLED)}),
    Op.DISABLE: Rule("{idle}", {s: Move("settle", PlanState.DISABLED) for s in READY}),
    Op.RUN_FAILOVER: Rule("{idle}", {s: Move("start", PlanState.FAILOVER) for s in READY}),
    Op.RUN_PERMANENT_FAILOVER: Rule(
        "a completed Failover",
        {COMPLETE[PlanState.FAILOVER]: Move("start", PlanState.PERMANENT_FAILOVER)},
    ),
    Op.RUN_FAILBACK: Rule(
        "a completed Failover",
        {COMPLETE[PlanState.FAILOVER]: Move("start", PlanState.FAILBACK)},
    ),
    Op.RUN_COMMIT_FAILBACK: Rule(
        "a completed Failback",
        {COMPLETE[PlanState.FAILBACK]: Move("start", PlanState.COMMIT_FAILBACK)},
    ),
    Op.HALT: Rule("a running stage", {s: Move("halt") for s in RUNNING.values()}),
    Op.CONTINUE: Rule("Halted", {s: Move("resume") for s in HALTED.values()}),
    Op.UNDO: Rule(
        "a completed Failover or Failback, or Halted",
        {
            COMPLETE[PlanState.FAILOVER]: Move("start", PlanState.UNDO_FAILOVER),
            COMPLETE[PlanState.FAILBACK]: Move("start", PlanState.UNDO_FAILBACK),
            **{s: Move("start", _undo_target(s.stage)) for s in HALTED.values()},
        },
    ),
    Op.RESET: Rule("a stable state (no stage running)", {s: Move("settle", PlanState.DISABLED) for s in STABLE}),
    Op.SCHEDULE: Rule("nothing", {s: Move("stay") for s in REACHABLE}),
    Op.DISABLE_SCHEDULE: Rule("nothing", {s: Move("stay") for s in REACHABLE}),
}


def conflict_message(
    plan_name: str, shown_state: str, op: Op, *, idle: str = "Enabled", undone_is_idle: bool = False
) -> str:
    """The refusal text of docs/vao-api.md, section 3: ``Plan '<name>' is in state <state>; <op> requires ...``."""
    requires = RULES[op].requires
    if "{idle}" in requires:
        requires = requires.format(idle=idle + (" or a completed UndoFailover" if undone_is_idle else ""))
    return f"Plan '{plan_name}' is in state {shown_state}; {op} requires {requires}."


def resolve(op: Op, status: Status) -> Move | None:
    """The move ``op`` makes from ``status``, or None when the table forbids it."""
    return RULES[op].moves.get(status)
