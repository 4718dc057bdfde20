"""Each step of a drill resolved against the server (which plan, which restore-point date, which limits), what
a step returns, and the engine's clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from vaodrill.errors import PreconditionFailed, UnknownPlans
from vaodrill.spec.model import DrillSpec
from vaodrill.spec.policies import HaltPolicy
from vaodrill.spec.restore_points import restore_point_date
from vaodrill.vao.models import FailoverPlan


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PlanTarget:
    """A drill step resolved against the server: which plan, which restore point, which limits."""

    key: str
    id: str
    name: str
    after: tuple[str, ...]
    restore_point: str
    rule: str
    seed: int | None
    rto_target_seconds: float | None
    timeout_seconds: float
    halt: HaltPolicy = field(default_factory=HaltPolicy)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Started:
    """A failover that may be under way. ``confirmed`` is False while the server has not shown it yet."""

    started_at: datetime
    posted: bool
    confirmed: bool = True
    note: str | None = None


@dataclass(frozen=True)
class StageDone:
    completed_at: datetime
    details: str
    continues: int = 0


@dataclass(frozen=True)
class Cleanup:
    """The plan is verified clean; ``undone`` says whether an undo (or halt) was needed for that."""

    completed_at: datetime
    undone: bool
    details: str | None = None  # VAO's planStateDetails when the undo finished


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


def build_targets(
    spec: DrillSpec, plans: list[FailoverPlan], *, now: datetime, server_timezone: str
) -> dict[str, PlanTarget]:
    """Resolve every step to a server plan and a restore-point date; ALL unknown plans are named at once."""
    unknown = [step.plan for step in spec.plans if find_plan(plans, step.plan) is None]
    if unknown:
        raise UnknownPlans(f"not found on the server: {', '.join(repr(u) for u in unknown)}")
    targets: dict[str, PlanTarget] = {}
    for step in spec.plans:
        plan = find_plan(plans, step.plan)
        assert plan is not None
        date, resolved = restore_point_date(
            spec.rule_for(step), now=now, drill_tz=spec.timezone, server_tz=server_timezone
        )
        rto = step.rto_target.total_seconds() if step.rto_target is not None else plan.target_rto_seconds
        timeout = step.timeout.total_seconds() if step.timeout is not None else default_timeout(rto)
        targets[step.plan] = PlanTarget(
            key=step.plan,
            id=plan.id,
            name=plan.name,
            after=tuple(step.after),
            restore_point=date,
            rule=resolved.rule,
            seed=resolved.seed,
            rto_target_seconds=rto,
            timeout_seconds=timeout,
            halt=spec.halt_policy_for(step),
            notes=tuple(resolved.notes),
        )
    return targets
