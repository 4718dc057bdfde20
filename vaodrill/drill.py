"""What a drill does to each plan, without Prefect: resolve, check, start, wait, clean up, report.

Prefect tasks in ``tasks/`` wrap these functions one to one; ``flows/`` chain them along the drill's DAG.
Every decision lives here once: what counts as Enabled, started, finished, halted or cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vaodrill.client import VaoClient
from vaodrill.connection import ConnectionSettings
from vaodrill.errors import (
    CleanupNotVerified,
    PlanFailed,
    PlanHalted,
    PlanTimedOut,
    PreconditionFailed,
    UnknownPlans,
    VaoError,
)
from vaodrill.models import FailoverPlan, PlanLaunchOptions, PlanState, RestorePointRule, RunMode, RunRequest
from vaodrill.report import PlanResult
from vaodrill.restore_points import restore_point_date
from vaodrill.spec import DrillSpec, HaltPolicy

log = logging.getLogger("vaodrill.drill")

#: Without an explicit timeout a plan may take this multiple of its RTO target (or DEFAULT_TIMEOUT) to finish.
TIMEOUT_FACTOR = 3.0
MIN_TIMEOUT = 10 * 60.0
DEFAULT_TIMEOUT = 2 * 3600.0
#: A plan that still looks Enabled this many polls after its Run was accepted did not start.
START_GRACE_POLLS = 5


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
    """A failover that is under way: ``posted`` is False when the plan was found already failing over."""

    plan_id: str
    started_at: datetime
    posted: bool


@dataclass(frozen=True)
class StageDone:
    completed_at: datetime
    details: str
    continues: int = 0


@dataclass(frozen=True)
class Cleanup:
    status: str  # "verified" | "not_needed"
    completed_at: datetime | None


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


def check_enabled(plan: FailoverPlan) -> None:
    """The precondition of a failover: the plan is Enabled and not in use."""
    if plan.state is not PlanState.ENABLED:
        raise PreconditionFailed(
            f"plan {plan.name!r} is {plan.describe_state()}; a failover needs it Enabled")
    if plan.in_use:
        raise PreconditionFailed(f"plan {plan.name!r} is in use ({plan.state_details or 'busy'})")


def _failing_over(plan: FailoverPlan) -> bool:
    return plan.state is PlanState.FAILOVER


def _has_errors(details: str) -> bool:
    text = details.lower()
    return "error" in text and "no errors" not in text


class PlanMonitor:
    """Reads every plan's state with ONE list request per poll interval, shared by all waiters.

    A drill waiting on ten plans costs one ``GET /v2/FailoverPlans`` per interval, not ten. Polling runs only
    while someone waits. A failed read is logged and remembered; waiters keep waiting until their timeout.
    """

    def __init__(self, client: VaoClient, interval: float) -> None:
        self.client = client
        self.interval = interval
        self._plans: dict[str, FailoverPlan] = {}
        self._observed_at = utcnow()
        self._version = 0
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None
        self.last_error: VaoError | None = None
        self.polls = 0

    async def watch(self, plan_id: str) -> AsyncIterator[tuple[FailoverPlan, datetime]]:
        """Each fresh reading of one plan (taken after the call), with the moment it was observed."""
        self._watchers += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="vaodrill-plan-monitor")
        try:
            seen = self._version
            while True:
                async with self._changed:
                    while self._version <= seen:
                        await self._changed.wait()
                    seen = self._version
                    plan = self._plans.get(plan_id.lower())
                    observed_at = self._observed_at
                if plan is not None:
                    yield plan, observed_at
                elif self.last_error is None:
                    raise PlanFailed(f"plan {plan_id} is no longer listed by the server")
        finally:
            self._watchers -= 1

    async def _poll(self) -> None:
        while self._watchers > 0:
            try:
                plans = await self.client.list_plans()
            except VaoError as exc:
                log.warning("reading plan states failed: %s", exc)
                self.last_error = exc
            else:
                self.last_error = None
                async with self._changed:
                    self._plans = {p.id.lower(): p for p in plans}
                    self._observed_at = utcnow()
            self.polls += 1
            async with self._changed:
                self._version += 1
                self._changed.notify_all()
            await asyncio.sleep(self.interval)

    async def aclose(self) -> None:
        if self._poller is not None and not self._poller.done():
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller


async def wait_for(monitor: PlanMonitor, plan_id: str, name: str, *, timeout: float, what: str,
                   step: Callable[[FailoverPlan, int], object]) -> tuple[FailoverPlan, datetime]:
    """The one wait routine: feed each reading to ``step`` until it returns True or ``timeout`` passes.

    ``step(plan, polls)`` returns True when done, False to keep waiting, an awaitable to run before the next
    reading (e.g. a Continue), or raises to stop.
    """
    polls = 0
    try:
        async with asyncio.timeout(timeout):
            async for plan, observed_at in monitor.watch(plan_id):
                polls += 1
                outcome = step(plan, polls)
                if outcome is True:
                    return plan, observed_at
                if asyncio.iscoroutine(outcome):
                    await outcome
    except TimeoutError:
        last = f"; last read error: {monitor.last_error}" if monitor.last_error else ""
        raise PlanTimedOut(f"{name}: {what} not finished after {timeout:.0f}s{last}") from None
    raise PlanFailed(f"{name}: stopped watching before the {what} finished")  # pragma: no cover


class DrillSession:
    """One drill run's connection: one client, one token, one pool and one shared monitor."""

    def __init__(self, client: VaoClient, poll_interval: float,
                 write_gate: Callable[[], contextlib.AbstractAsyncContextManager[object]] | None = None) -> None:
        self.client = client
        self.monitor = PlanMonitor(client, poll_interval)
        self._write_gate = write_gate or contextlib.nullcontext

    def _writing(self) -> contextlib.AbstractAsyncContextManager[object]:
        """Held around each Run/Undo/Halt POST (e.g. a Prefect global concurrency limit per VAO server)."""
        return self._write_gate()  # type: ignore[return-value]

    async def __aenter__(self) -> DrillSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.monitor.aclose()
        await self.client.aclose()

    # -- steps ----------------------------------------------------------------------------------------

    async def precondition(self, target: PlanTarget) -> FailoverPlan:
        """Fresh read of the plan; raises PreconditionFailed unless it is Enabled and idle."""
        plan = await self.client.get_plan(target.id)
        check_enabled(plan)
        return plan

    async def start_failover(self, target: PlanTarget) -> Started:
        """Send Run once. A plan already failing over (a retry of this run) counts as started, with no POST."""
        plan = await self.client.get_plan(target.id)
        if _failing_over(plan):
            log.warning("%s is already failing over (%s): not sending Run again", target.name, plan.state_details)
            return Started(target.id, utcnow(), posted=False)
        check_enabled(plan)
        async with self._writing():
            started_at = utcnow()
            await self.client.run(target.id, run_request(target))
        return Started(target.id, started_at, posted=True)

    async def wait_failover(self, target: PlanTarget) -> StageDone:
        """Wait for the failover to complete, applying the plan's halt policy."""
        continues = 0

        def step(plan: FailoverPlan, polls: int) -> object:
            nonlocal continues
            if plan.state is PlanState.FAILOVER:
                if plan.running or not plan.stage_complete:
                    return False
                if _has_errors(plan.state_details):
                    raise PlanFailed(f"{target.name}: failover finished with errors ({plan.state_details})")
                return True
            if plan.state is PlanState.HALTED:
                policy = target.halt
                if policy.continue_with is None or continues >= policy.max:
                    tried = f" after {continues} Continue" if continues else ""
                    raise PlanHalted(f"{target.name}: halted{tried} ({plan.state_details or 'no details'})")
                continues += 1
                log.warning("%s halted; Continue %s (%d of %d)", target.name, policy.continue_with,
                            continues, policy.max)
                return self.client.continue_plan(target.id, policy.continue_with)
            if plan.state is PlanState.ENABLED and not plan.in_use and polls < START_GRACE_POLLS:
                return False  # the server may not show the Run yet
            raise PlanFailed(f"{target.name}: unexpected state {plan.describe_state()} during failover")

        plan, observed_at = await wait_for(self.monitor, target.id, target.name, timeout=target.timeout_seconds,
                                           what="failover", step=step)
        return StageDone(observed_at, plan.state_details, continues)

    async def clean_up(self, target: PlanTarget, *, started: bool) -> Cleanup:
        """Undo a failover and verify the plan is Enabled again; halts a failover still running first."""
        plan = await self.client.get_plan(target.id)
        if plan.state is PlanState.ENABLED and not plan.in_use:
            status = "verified" if started else "not_needed"
            return Cleanup(status, utcnow())
        if plan.state is PlanState.FAILOVER and plan.running:
            log.warning("%s is still failing over: halting it before the undo", target.name)
            async with self._writing():
                await self.client.halt(target.id, fullstop=True)
            await wait_for(self.monitor, target.id, target.name, timeout=target.timeout_seconds, what="halt",
                           step=lambda p, _: p.state is PlanState.HALTED or (
                               p.state is PlanState.FAILOVER and not p.running))
            plan = await self.client.get_plan(target.id)
        if plan.state in (PlanState.FAILOVER, PlanState.HALTED):
            async with self._writing():
                await self.client.undo(target.id)
        elif plan.state is not PlanState.UNDO_FAILOVER:
            raise CleanupNotVerified(f"{target.name}: cannot undo from {plan.describe_state()}")

        def step(p: FailoverPlan, _: int) -> object:
            if p.state is PlanState.ENABLED and not p.in_use:
                return True
            if p.state is PlanState.HALTED or (p.state is PlanState.UNDO_FAILOVER and p.stage_complete
                                                and _has_errors(p.state_details)):
                raise CleanupNotVerified(f"{target.name}: undo stopped in {p.describe_state()}")
            if p.state in (PlanState.UNDO_FAILOVER, PlanState.FAILOVER):
                return False
            raise CleanupNotVerified(f"{target.name}: unexpected state {p.describe_state()} during undo")

        try:
            _, observed_at = await wait_for(self.monitor, target.id, target.name,
                                            timeout=target.timeout_seconds, what="undo", step=step)
        except PlanTimedOut as exc:
            raise CleanupNotVerified(str(exc)) from None
        return Cleanup("verified", observed_at)


# -- resolution and dry run ---------------------------------------------------------------------------


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


def run_request(target: PlanTarget) -> RunRequest:
    """The exact Run body the drill sends for a plan."""
    return RunRequest(mode=RunMode.FAILOVER_NOW, plan_launch_options=PlanLaunchOptions(
        restore_point_rule=RestorePointRule(date=target.restore_point), execute_chained_plans=False))


@dataclass(frozen=True)
class PlannedCall:
    plan: str
    ok: bool
    note: str
    request: str | None = None


async def dry_run(spec: DrillSpec, settings: ConnectionSettings, now: datetime | None = None) -> list[PlannedCall]:
    """Resolve plans and restore points and run the preconditions, with reads only: no POST at all."""
    import json

    async with settings.client() as client:
        plans = await client.list_plans()
        try:
            targets = build_targets(spec, plans, now=now or utcnow(), server_timezone=settings.server_timezone)
        except UnknownPlans as exc:
            return [PlannedCall("(drill)", False, str(exc))]
        calls = []
        for step in spec.topological_order():
            target = targets[step.plan]
            try:
                check_enabled(await client.get_plan(target.id))
            except PreconditionFailed as exc:
                calls.append(PlannedCall(target.name, False, f"precondition fails: {exc}"))
                continue
            body = json.dumps(run_request(target).to_json())
            calls.append(PlannedCall(
                target.name, True, f"Enabled; restore point {target.restore_point} ({target.rule})",
                f"POST {settings.url}/v2/FailoverPlans/{target.id}/Run {body}"))
            if spec.mode == "drill":
                calls.append(PlannedCall(target.name, True, "then, at cleanup",
                                         f"POST {settings.url}/v2/FailoverPlans/{target.id}/Undo"))
        return calls


# -- report ---------------------------------------------------------------------------------------------


def plan_result(target: PlanTarget | None, key: str, after: tuple[str, ...], *, status: str,
                reason: str | None = None, started: Started | None = None, done: StageDone | None = None,
                undo: str = "not_needed", undo_reason: str | None = None,
                undo_at: datetime | None = None) -> PlanResult:
    """One line of the report; the achieved RTO is measured from the Run to the observed completion."""
    rto = None
    if started is not None and done is not None:
        rto = round((done.completed_at - started.started_at).total_seconds(), 3)
    target_s = target.rto_target_seconds if target else None
    return PlanResult(
        plan=target.name if target else key, id=target.id if target else None, status=status, reason=reason,
        after=list(after), restore_point=target.restore_point if target else None,
        restore_point_rule=target.rule if target else None, restore_point_seed=target.seed if target else None,
        failover_started_at=started.started_at if started else None,
        failover_completed_at=done.completed_at if done else None,
        rto_seconds=rto, rto_target_seconds=target_s,
        rto_met=None if rto is None or target_s is None else rto <= target_s,
        undo=undo, undo_reason=undo_reason, undo_completed_at=undo_at,
    )


def verdict(results: list[PlanResult], mode: str) -> tuple[str, str | None]:
    """Passed only if every plan passed and (in drill mode) every cleanup was verified."""
    problems = []
    bad = [r.plan for r in results if r.status != "passed"]
    if bad:
        problems.append(f"{len(bad)} of {len(results)} plans did not pass: {', '.join(bad)}")
    if mode == "drill":
        dirty = [r.plan for r in results if r.failover_started_at is not None and r.undo != "verified"]
        if dirty:
            problems.append(f"LEFT FAILED OVER (cleanup not verified): {', '.join(dirty)}")
    return ("failed", "; ".join(problems)) if problems else ("passed", None)


def status_of(error: BaseException) -> str:
    if isinstance(error, PlanHalted):
        return "halted"
    if isinstance(error, PlanTimedOut):
        return "timed_out"
    return "failed"


__all__ = [
    "Cleanup", "DrillSession", "HaltPolicy", "PlanMonitor", "PlanTarget", "StageDone", "Started",
    "check_enabled", "default_timeout", "find_plan", "plan_result", "status_of", "verdict", "wait_for",
]
