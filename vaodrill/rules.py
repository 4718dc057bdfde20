"""The two rules every part of vaodrill asks of a plan's state (contract section 5): runnable and clean.

A real VAO may show an idle plan as ``Enabled``, ``Verified`` or ``NotVerified``, and may leave a finished undo
as ``UndoFailover`` / ``Complete, no errors, no warnings``. The precondition, the start, the cleanup, the dry
run, ``recover`` and ``doctor`` all decide with these functions, and nothing else.
"""

from __future__ import annotations

import re

from vaodrill.models import FailoverPlan, PlanState

#: Stable idle states: the plan is ready and nothing of it is failed over.
IDLE_STATES = frozenset({PlanState.ENABLED, PlanState.VERIFIED, PlanState.NOT_VERIFIED})

_NO_ERRORS = re.compile(r"\bno errors?\b|\b0 errors?\b", re.IGNORECASE)
_ERRORS = re.compile(r"\berrors?\b", re.IGNORECASE)


def finished_with_errors(details: str) -> bool:
    """``Complete, 2 errors`` is an error; ``Complete, no errors, 1 warning`` is not."""
    return bool(_ERRORS.search(details)) and not _NO_ERRORS.search(details)


def failover_complete(plan: FailoverPlan) -> bool:
    """The failover stage has finished (with or without errors): what a wait ends on, and what an Undo follows."""
    return plan.state is PlanState.FAILOVER and plan.stage_complete and not plan.running


def _undo_complete(plan: FailoverPlan) -> bool:
    return (plan.state is PlanState.UNDO_FAILOVER and plan.stage_complete and not plan.running
            and not finished_with_errors(plan.state_details))


def is_clean(plan: FailoverPlan) -> bool:
    """Nothing of the plan is failed over: idle, or a completed undo without errors, and not in use."""
    return not plan.in_use and (plan.state in IDLE_STATES or _undo_complete(plan))


def not_runnable_because(plan: FailoverPlan) -> str | None:
    """Why a FailoverNow must not be sent to this plan now, or None when it may (the precondition)."""
    if plan.state is PlanState.DISABLED:
        return f"plan {plan.name!r} is {plan.describe_state()}; a failover needs it enabled"
    if plan.in_use:
        return f"plan {plan.name!r} is in use ({plan.describe_state()})"
    if plan.state is PlanState.UNKNOWN:
        return (f"plan {plan.name!r} is in a state vaodrill does not know ({plan.describe_state()}); "
                f"refusing to guess")
    if is_clean(plan):
        return None
    return f"plan {plan.name!r} is {plan.describe_state()}; a failover needs it idle (Enabled, Verified or undone)"


def is_failed_over_by_anyone(plan: FailoverPlan) -> bool:
    """Something of the plan may be failed over (running, finished, halted or undoing): recovery's business."""
    return plan.state in (PlanState.FAILOVER, PlanState.HALTED, PlanState.UNDO_FAILOVER) and not is_clean(plan)


__all__ = ["IDLE_STATES", "finished_with_errors", "is_clean", "is_failed_over_by_anyone", "not_runnable_because"]
