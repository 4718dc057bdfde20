"""The rules every part of vaodrill asks of a plan's state (docs/vao-api.md, section 5): runnable, clean, complete and
failed over by anyone.

They decide on the normalized :class:`~vaodrill.vao.vocabulary.StateRecord` only, whatever the server spelled
(``Enabled``, ``Verified (passed check)``, ``NEEDS VERIFIED``, ``UndoFailover`` / ``Complete, no errors``...) and
whichever API it came from. The precondition, the start, the waits, the cleanup, the dry run, ``recover`` and
``doctor`` all decide with these functions, and nothing else. A plan reading (:class:`FailoverPlan`) is accepted
too and read without knowing what vaodrill started on it (a ``Processing`` plan is then ``busy``).
"""

from __future__ import annotations

import re

from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.vocabulary import Condition, StateRecord

Shown = StateRecord | FailoverPlan

_NO_ERRORS = re.compile(r"\bno errors?\b|\b0 errors?\b", re.IGNORECASE)
_ERRORS = re.compile(r"\berrors?\b", re.IGNORECASE)
_NO_WARNINGS = re.compile(r"\bno warnings?\b|\b0 warnings?\b", re.IGNORECASE)
_WARNINGS = re.compile(r"\bwarnings?\b", re.IGNORECASE)


def status(shown: Shown) -> StateRecord:
    return shown if isinstance(shown, StateRecord) else shown.status()


def finished_with_errors(details: str) -> bool:
    """``Complete, 2 errors`` is an error; ``Complete, no errors, 1 warning`` is not."""
    return bool(_ERRORS.search(details)) and not _NO_ERRORS.search(details)


def finished_with_warnings(details: str) -> bool:
    """``Complete, with warnings`` and ``Complete, no errors, 1 warning`` warn; ``no warnings`` does not."""
    return bool(_WARNINGS.search(details)) and not _NO_WARNINGS.search(details)


def failover_complete(shown: Shown) -> bool:
    """The failover stage has finished (with or without errors): what a wait ends on, and what an Undo follows."""
    return status(shown).condition is Condition.FAILED_OVER


def undo_complete(shown: Shown) -> bool:
    """The undo finished without errors."""
    s = status(shown)
    return s.condition is Condition.UNDONE and not finished_with_errors(s.details)


def is_clean(shown: Shown) -> bool:
    """Nothing of the plan is failed over: idle, or a completed undo without errors, and not in use."""
    s = status(shown)
    return not s.in_use and (s.condition is Condition.IDLE or undo_complete(s))


def not_runnable_because(shown: Shown) -> str | None:
    """Why a FailoverNow must not be sent to this plan now, or None when it may (the precondition)."""
    s = status(shown)
    if s.condition is Condition.DISABLED:
        return f"plan {s.name!r} is {s.describe()}; a failover needs it enabled"
    if s.in_use:
        return f"plan {s.name!r} is in use ({s.describe()})"
    if s.condition is Condition.UNKNOWN:
        return f"plan {s.name!r} is in a state vaodrill does not know ({s.describe()}); refusing to guess"
    if is_clean(s):
        return None
    return f"plan {s.name!r} is {s.describe()}; a failover needs it idle (Enabled, Verified or undone)"


def is_failed_over_by_anyone(shown: Shown) -> bool:
    """Something of the plan may be failed over (running, finished, halted, undoing, or a stage vaodrill cannot
    name): recovery's business."""
    s = status(shown)
    return s.condition in (
        Condition.FAILING_OVER,
        Condition.FAILED_OVER,
        Condition.HALTED,
        Condition.UNDOING,
        Condition.UNDONE,
        Condition.BUSY,
    ) and not is_clean(s)


__all__ = [
    "Shown",
    "failover_complete",
    "finished_with_errors",
    "finished_with_warnings",
    "is_clean",
    "is_failed_over_by_anyone",
    "not_runnable_because",
    "status",
    "undo_complete",
]
