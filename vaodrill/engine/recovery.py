"""What an unclosed run may have left failed over (``survey``), putting it back (``recover``), and what a drill
would send, read-only (``dry_run``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from vaodrill.engine.runs import Ledger, Observer, Phase, PlanRun, Steps
from vaodrill.engine.steps import DrillSession, WriteGate, started_stages
from vaodrill.engine.targets import build_targets, utcnow
from vaodrill.journal import Journal, JournalState
from vaodrill.spec.model import DrillSpec
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.rules import is_clean, not_runnable_because
from vaodrill.vao.vocabulary import Condition, Stage


@dataclass
class RecoveryPlan:
    """What ``recover`` found for one plan an unclosed run may have failed over, and will do about it."""

    key: str
    name: str
    id: str
    state: str
    action: str  # nothing | undo | halt and undo | wait for the undo | leave (failover mode) | unknown
    outcome: str | None = None


@dataclass
class Recovery:
    journal: JournalState
    plans: list[RecoveryPlan] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return all(p.outcome == "clean" for p in self.plans)


def _action(plan: FailoverPlan | None, mode: str, stage: Stage | None) -> str:
    if plan is None:
        return "unknown"
    shown = plan.status(stage)
    if is_clean(shown):
        return "nothing"
    if mode != "drill":
        return "leave (real failover)"
    if shown.condition is Condition.FAILING_OVER and shown.running:
        return "halt and undo"
    if shown.condition is Condition.UNDOING and shown.running:
        return "wait for the undo"
    return "undo"


async def survey(journal: JournalState, settings: ConnectionSettings) -> Recovery:
    """Read-only: each plan the journal says may be failed over, its state on the server, the action planned."""
    recovery = Recovery(journal)
    async with settings.client() as client:
        plans = {p.id.lower(): p for p in await client.list_plans()}
    started = started_stages(journal)
    for key in journal.may_be_failed_over():
        info = journal.plan_info(key)
        plan = plans.get(str(info.get("id", "")).lower())
        recovery.plans.append(
            RecoveryPlan(
                key,
                str(info.get("name", key)),
                str(info.get("id", "?")),
                plan.describe_state() if plan else "not listed by the server",
                _action(plan, journal.mode, started.get(str(info.get("id", "")).lower())),
            )
        )
    return recovery


async def recover(
    journal: JournalState,
    settings: ConnectionSettings,
    *,
    observers: Iterable[Observer] = (),
    write_gate: WriteGate | None = None,
    steps: Callable[[DrillSession], Steps] | None = None,
    surveyed: Recovery | None = None,
) -> Recovery:
    """Halt, undo and verify every plan an unclosed run may have left failed over; close the journal if clean.

    The same code serves ``vaodrill recover``, the flow's cancellation hook and the crashed-run deployment.
    A real failover's journal is never undone: its plans are listed and left as they are. ``surveyed``: the
    survey already shown to the user (not read again).
    """
    recovery = surveyed or await survey(journal, settings)
    if journal.mode != "drill":
        return recovery
    ledger = Ledger(journal.drill, journal.run_id, Journal(journal.path.parent, journal.run_id), observers)
    targets = {
        str(info["key"]): PlanRun.from_json({"target": info["target"]}).target
        for info in journal.opened.get("plans", [])
        if isinstance(info, dict) and "target" in info
    }
    ledger.restore(journal, targets, resume=False)
    ledger.journal.append("recover")
    async with DrillSession(
        settings.client(),
        poll_interval=float(journal.opened.get("poll_interval") or 10),
        give_up_after=float(journal.opened.get("give_up_after") or 300),
        journal=ledger.journal,
        write_gate=write_gate,
    ) as session:
        await ledger.clean_up([p.key for p in recovery.plans], (steps or (lambda s: s))(session))
    for p in recovery.plans:
        record = ledger.records[p.key]
        p.outcome = "clean" if record.phase is Phase.CLEAN else f"left failed over: {record.undo_reason}"
    if not ledger.unclean():
        ledger.journal.append("close", recovered=True)
        await ledger.journal.sync()
    return recovery


# -- dry run ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    plan: str
    ok: bool
    note: str
    request: str | None = None


async def dry_run(spec: DrillSpec, settings: ConnectionSettings, now: datetime | None = None) -> list[PlannedCall]:
    """Resolve plans and restore points and run the preconditions, with reads only: no POST at all."""
    async with settings.client() as client:
        plans = await client.list_plans()
        targets = build_targets(spec, plans, now=now or utcnow(), server_timezone=settings.server_timezone)
        calls = []
        for step in spec.topological_order():
            target = targets[step.plan]
            plan = await client.get_plan(target.id)
            if (reason := not_runnable_because(plan)) is not None:
                calls.append(PlannedCall(target.name, False, f"precondition fails: {reason}"))
                continue
            if spec.mode == "readiness":
                path, body = client.readiness_request(target.id)
                calls.append(
                    PlannedCall(
                        target.name,
                        True,
                        f"{plan.describe_state()}; readiness check",
                        f"POST {client.base_url}{path} {json.dumps(body)}",
                    )
                )
                continue
            path, body = client.failover_request(target.id, restore_point=target.restore_point)
            calls.append(
                PlannedCall(
                    target.name,
                    True,
                    f"{plan.describe_state()}; restore point {target.restore_point} ({target.rule})",
                    f"POST {client.base_url}{path} {json.dumps(body)}",
                )
            )
            calls += [
                PlannedCall(
                    target.name,
                    True,
                    f"then, once VAO reports it complete: check {c.label!r} "
                    f"({c.kind} {c.target}; {'critical' if c.critical else 'non-critical'}, deadline "
                    f"{c.deadline.total_seconds():g}s)",
                )
                for c in spec.checks_for(step)
            ]
            if spec.mode == "drill":
                calls.append(
                    PlannedCall(
                        target.name, True, "then, at cleanup", f"POST {client.base_url}{client.undo_path(target.id)}"
                    )
                )
        return calls
