"""What a server's plan-state words mean to vaodrill: one table of every known spelling, and the normalized record
(:class:`StateRecord`) that every decision in :mod:`vaodrill.vao.rules` is made on.

VAO 1.0 to VRO 13 name the same few situations in many ways (``Enabled``, ``Verified (passed check)``,
``NEEDS VERIFIED``, ``PROCESSING``, ``UNDO FAILOVER``...). A spelling is matched after dropping case, spaces,
underscores, hyphens and one trailing parenthesized qualifier; what it means is a :class:`Kind`. A kind is not yet
a decision: ``Failover`` is running or complete by its details, and ``Processing`` names no stage at all, so the
stage is the one vaodrill itself last started on that plan (see :func:`status_of`). A word in no row is
``unknown`` and is refused, named, never guessed. An administrator may add spellings (``states`` in the connection
settings), never change a documented one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

#: A state word longer than this is no state word: it is unknown, whatever it says.
MAX_WORDS = 200

Stage = Literal["failover", "undo"]
"""The stage vaodrill last started on a plan: a Run starts a failover, an Undo its undo."""


class Kind(StrEnum):
    """What one state word says on its own."""

    IDLE = "idle"  # ready: nothing of the plan is failed over
    DISABLED = "disabled"
    FAILOVER = "failover"  # the failover stage: running or complete (the details say which)
    UNDO = "undo"  # the undo of a failover: running or complete
    RUNNING = "running"  # a stage in progress that the word does not name (the stage vaodrill started)
    HALTED = "halted"
    OTHER = "other"  # a stage or activity no drill starts or undoes (failback, permanent failover, a test...)
    UNKNOWN = "unknown"


class Condition(StrEnum):
    """The normalized state a rule decides on: the same whatever the server, API or spelling."""

    IDLE = "idle"
    DISABLED = "disabled"
    FAILING_OVER = "failing over"
    FAILED_OVER = "failed over"
    HALTED = "halted"
    UNDOING = "undoing"
    UNDONE = "undone"
    BUSY = "busy"  # a stage runs that vaodrill did not start and the word does not name
    OTHER = "other"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Spelling:
    words: str
    kind: Kind
    source: str
    confirmed: bool  # True: seen on a page of Veeam's or in a Veeam-exported artifact; False: inferred


_VAO1 = "VAO 1.0 user guide, Running and Scheduling Failover Plans (plan states)"
_VAO1_HALT = "VAO 1.0 user guide, Halting Failover ('To stop a PROCESSING failover plan')"
_VAO3 = "VAO 3.0 user guide, Running and Scheduling Replica Plans (plan states)"
_VRO = "VRO user guide, Plan States and Modes (replica, storage, restore plans)"
_V1_EXAMPLE = "VAO 1.0 Swagger example plan (PowerVAO, Swagger_VAO-APIv1.json) and the v1/v2 REST examples"
_MODES = "VAO/VRO user guides: ENABLED and DISABLED are a plan's modes; the v2 API's Enable/Disable set them"
_LAB = "VAO 2.0 UI as a hands-on lab guide shows it (reported, not found on Veeam's pages)"
_SINGLE_UI = "VRO `state` values a third-party dashboard expects (jorgedlcruz/veeam-single-ui); not on Veeam's pages"
_VBR = (
    "Veeam's failover-plan state in VBR's PowerShell reference (VBRFailoverPlan) and the Availability Console "
    "REST reference (In progress, Undo in progress); the Service Provider Console's spells inUndoProgress"
)
_INFERRED = "not documented: a wording a server may use while an undo runs"

_GUIDES = f"{_VAO1}; {_VAO3}; {_VRO}"  # a state every user guide lists


def _rows(kind: Kind, source: str, confirmed: bool, *spellings: str) -> tuple[Spelling, ...]:
    """The spellings that mean one kind and come from one source."""
    return tuple(Spelling(words, kind, source, confirmed) for words in spellings)


VOCABULARY: tuple[Spelling, ...] = (
    *_rows(Kind.IDLE, _MODES, True, "Enabled"),
    *_rows(Kind.IDLE, _GUIDES, True, "Verified"),
    *_rows(Kind.IDLE, f"{_GUIDES} (NOT VERIFIED)", True, "NotVerified"),
    *_rows(Kind.IDLE, f"{_VRO}: the default state after creation or a reset", True, "NEEDS VERIFIED"),
    *_rows(Kind.IDLE, _LAB, False, "Verified (passed check)", "Verified (passed test and check)"),
    *_rows(Kind.IDLE, _SINGLE_UI, False, "Ready"),
    *_rows(Kind.DISABLED, f"{_MODES}; {_V1_EXAMPLE}", True, "Disabled"),
    *_rows(Kind.FAILOVER, f"{_GUIDES}; {_V1_EXAMPLE}", True, "Failover"),
    *_rows(Kind.FAILOVER, _SINGLE_UI, False, "FailoverComplete"),
    *_rows(Kind.RUNNING, f"{_VAO1} (active state: 'Plan is currently executing'); {_VAO1_HALT}", True, "PROCESSING"),
    *_rows(Kind.RUNNING, _SINGLE_UI, False, "Running"),
    *_rows(Kind.RUNNING, _VBR, False, "In progress"),
    *_rows(Kind.RUNNING, f"{_VRO} (active state: 'Plan is halting')", True, "HALTING"),
    *_rows(Kind.HALTED, _GUIDES, True, "Halted"),
    *_rows(Kind.UNDO, _GUIDES, True, "UNDO FAILOVER"),
    *_rows(Kind.UNDO, _INFERRED, False, "Undoing"),
    *_rows(Kind.UNDO, _VBR, False, "Undo in progress", "inUndoProgress"),
    *_rows(Kind.OTHER, _GUIDES, True, "PERMANENT FAILOVER", "FAILBACK", "UNDO FAILBACK", "COMMIT FAILBACK"),
    *_rows(Kind.OTHER, f"{_VAO1}; {_VRO}", True, "TESTING HALTED", "EDITING"),
    *_rows(
        Kind.OTHER,
        _VRO,
        True,
        "PREPARE FOR FAILBACK",
        "TEST PENDING",
        "TESTING",
        "CHECKING",
        "CHECK HALTING",
        "CREATING",
        "SAVING",
        "RESETTING",
        "DELETING",
    ),
    *_rows(Kind.OTHER, _SINGLE_UI, False, "FailbackComplete", "DryRun"),
)
"""Every spelling of a plan's state vaodrill knows, from VAO 1.0 to VRO 13, with what it means and where it is from.

Spellings that differ only in case, spaces, underscores or a trailing qualifier are one row (``UNDO FAILOVER`` is
also ``UndoFailover`` and ``undo_failover``); ``Verified (passed check)`` is listed beside ``Verified`` because a
server shows it so.
"""

_QUALIFIER = re.compile(r"\s*\([^()]*\)\s*$")
_SEPARATORS = re.compile(r"[\s_\-]+")


def spelling_key(words: str) -> str:
    """``Verified (passed check)`` -> ``verified``; ``UNDO FAILOVER`` -> ``undofailover``; too long -> ``""``."""
    if len(words) > MAX_WORDS:
        return ""
    return _SEPARATORS.sub("", _QUALIFIER.sub("", words)).casefold()


def _index(rows: tuple[Spelling, ...]) -> dict[str, Kind]:
    index: dict[str, Kind] = {}
    for row in rows:
        key = spelling_key(row.words)
        if index.setdefault(key, row.kind) is not row.kind:
            raise AssertionError(f"two meanings for {row.words!r}")  # the table contradicts itself
    return index


_KNOWN = _index(VOCABULARY)

#: The kinds an administrator may give a spelling vaodrill does not know.
MAPPABLE = tuple(kind.value for kind in Kind if kind is not Kind.UNKNOWN)


@dataclass(frozen=True)
class Vocabulary:
    """The table plus an administrator's additions (``states`` in the connection settings)."""

    added: Mapping[str, Kind] = field(default_factory=dict)

    @classmethod
    def with_states(cls, states: Mapping[str, str] | None) -> Vocabulary:
        """The table plus ``states`` (spelling -> kind); ValueError with one line when a mapping is unusable."""
        added: dict[str, Kind] = {}
        for words, kind in (states or {}).items():
            shown = json.dumps(words)[:80]
            key = spelling_key(words) if isinstance(words, str) else ""
            if not key:
                raise ValueError(f"{shown} is not a state spelling")
            if kind not in MAPPABLE:
                raise ValueError(f"{shown} must map to one of {', '.join(MAPPABLE)} (got {json.dumps(kind)[:40]})")
            if key in _KNOWN and _KNOWN[key] != kind:
                raise ValueError(
                    f"{shown} is a documented spelling that means {_KNOWN[key]}; "
                    "vaodrill does not let it mean something else"
                )
            added[key] = Kind(kind)
        return cls(added)

    def kind(self, words: object) -> Kind:
        if not isinstance(words, str):
            return Kind.UNKNOWN
        key = spelling_key(words)
        return _KNOWN.get(key) or self.added.get(key) or Kind.UNKNOWN


DEFAULT = Vocabulary()


@dataclass(frozen=True)
class StateRecord:
    """One plan's state as every backend reports it, and all a rule needs.

    ``words`` are the server's own state words, kept for messages; ``details`` its detail text (VAO v2's
    ``planStateDetails``, VRO's ``resultName``); ``in_use`` that the server holds the plan (``planInUse``,
    ``isRunningState``); ``running`` that a stage is in progress; ``step``/``steps`` how far (VRO: percent of 100).
    """

    name: str
    condition: Condition
    words: str
    details: str = ""
    in_use: bool = False
    running: bool = False
    step: int | None = None
    steps: int | None = None

    def describe(self) -> str:
        return f"{self.words} ({self.details})" if self.details else self.words


def condition_of(kind: Kind, *, running: bool, complete: bool, stage: Stage | None) -> Condition:
    """A word's kind, whether its stage is running or complete, and the stage vaodrill last started -> condition.

    A stage word that is neither running nor complete counts as not finished (waited for, never undone early).
    """
    if kind is Kind.RUNNING:
        if stage is None:
            return Condition.BUSY
        kind = Kind.FAILOVER if stage == "failover" else Kind.UNDO
    if kind is Kind.FAILOVER:
        return Condition.FAILED_OVER if complete and not running else Condition.FAILING_OVER
    if kind is Kind.UNDO:
        return Condition.UNDONE if complete and not running else Condition.UNDOING
    return {
        Kind.IDLE: Condition.IDLE,
        Kind.DISABLED: Condition.DISABLED,
        Kind.HALTED: Condition.HALTED,
        Kind.OTHER: Condition.OTHER,
    }.get(kind, Condition.UNKNOWN)


def classification(words: str, vocabulary: Vocabulary = DEFAULT) -> str:
    """How vaodrill reads a state word, for ``doctor``: ``idle``, ``failover (running or complete)``..."""
    kind = vocabulary.kind(words)
    return {
        Kind.IDLE: "idle: runnable when not in use",
        Kind.DISABLED: "disabled: never run",
        Kind.FAILOVER: "a failover: running or complete by its details",
        Kind.UNDO: "an undo: waited for until complete",
        Kind.RUNNING: "a running stage: the one vaodrill started (failover or undo)",
        Kind.HALTED: "halted",
        Kind.OTHER: "another activity: never run, never undone by a drill",
        Kind.UNKNOWN: "unknown: refused",
    }[kind] + (" (added in the connection settings)" if spelling_key(words) in vocabulary.added else "")


__all__ = [
    "DEFAULT",
    "MAPPABLE",
    "VOCABULARY",
    "Condition",
    "Kind",
    "Spelling",
    "Stage",
    "StateRecord",
    "Vocabulary",
    "classification",
    "condition_of",
    "spelling_key",
]
