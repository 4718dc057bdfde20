"""Each step of a drill resolved against the server: which plan, which restore-point date, which limits."""

from __future__ import annotations

from datetime import datetime

from vaodrill.engine.steps import (
    PlanTarget,
)
from vaodrill.errors import (
    PreconditionFailed,
    UnknownPlans,
)
from vaodrill.spec.model import DrillSpec
from vaodrill.spec.restore_points import restore_point_date
from vaodrill.vao.models import FailoverPlan

#: Without an explicit timeout a plan may take this multiple of its RTO target (or DEFAULT_TIMEOUT) to finish.
TIMEOUT_FACTOR = 3.0
MIN_TIMEOUT = 10 * 60.0
DEFAULT_TIMEOUT = 2 * 3600.0


def default_timeout(rto_target_seconds: float | None) -> float:
    if rto_target_seconds is None:
        return DEFAULT_TIMEOUT
    return max(MIN_TIMEOUT, rto_target_seconds * TIMEOUT_FACTOR)


def find_plan(plans: list[FailoverPlan], ref: str) -> FailoverPlan | None:
    """A plan by id (case-insensitive GUID) or exact name; a name shared by two plans is refused."""
    by_id = [p for p in plans if p.id.lower() == ref.lower()]
    if by_id:
        return by_id[0]
    by_name = [p for p in plans if p.name == ref]
    if len(by_name) > 1:
        raise PreconditionFailed(f"plan name {ref!r} is ambiguous on the server: use its id")
    return by_name[0] if by_name else None


def build_targets(spec: DrillSpec, plans: list[FailoverPlan], *, now: datetime,
                  server_timezone: str) -> dict[str, PlanTarget]:
    """Resolve every step to a server plan and a restore-point date; ALL unknown plans are named at once."""
    unknown = [step.plan for step in spec.plans if find_plan(plans, step.plan) is None]
    if unknown:
        raise UnknownPlans(f"not found on the server: {', '.join(repr(u) for u in unknown)}")
    targets: dict[str, PlanTarget] = {}
    for step in spec.plans:
        plan = find_plan(plans, step.plan)
        assert plan is not None
        date, resolved = restore_point_date(spec.rule_for(step), now=now, drill_tz=spec.timezone,
                                            server_tz=server_timezone)
        rto = step.rto_target.total_seconds() if step.rto_target is not None else plan.target_rto_seconds
        timeout = step.timeout.total_seconds() if step.timeout is not None else default_timeout(rto)
        targets[step.plan] = PlanTarget(
            key=step.plan, id=plan.id, name=plan.name, after=tuple(step.after), restore_point=date,
            rule=resolved.rule, seed=resolved.seed, rto_target_seconds=rto, timeout_seconds=timeout,
            halt=spec.halt_policy_for(step), notes=tuple(resolved.notes))
    return targets

