"""A report in words: durations, statuses, reasons and events on one line each, and flat rows for a Prefect table.

Every rendering (Markdown, JUnit, the terminal table, the evidence pack) says a plan's outcome with these words.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from vaodrill.errors import one_line
from vaodrill.report.checks import check_lines
from vaodrill.report.model import DASH, DrillReport, PlanEvent, PlanResult

__all__ = [
    "RESTORE_POINT_NOTE",
    "STATUS_LABELS",
    "STOPPED_WORDS",
    "UNDO_WORDS",
    "WARNING_MARK",
    "counts_line",
    "display_line",
    "fmt_after",
    "fmt_event",
    "fmt_reason",
    "fmt_restore_point",
    "fmt_rto",
    "fmt_time",
    "fmt_undo",
    "format_duration",
    "left_ids",
    "plan_events",
    "plan_reasons",
    "rto_text",
    "status_label",
    "status_word",
    "table_rows",
    "without_plan",
]


def format_duration(seconds: float | None) -> str:
    """``45s``, ``4m 12s``, ``1h 02m``; ``—`` when unknown. Seconds are dropped from an hour on."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    sign = "-" if seconds < 0 else ""
    total = int(abs(seconds) + 0.5)
    if total < 60:
        return f"{sign}{total}s"
    if total < 3600:
        minutes, secs = divmod(total, 60)
        return f"{sign}{minutes}m {secs:02d}s" if secs else f"{sign}{minutes}m"
    hours, minutes = divmod((total + 30) // 60, 60)
    return f"{sign}{hours}h {minutes:02d}m" if minutes else f"{sign}{hours}h"


def display_line(text: str) -> str:
    """One display line, never cut (a report keeps the whole reason): what cannot be printed (ANSI escapes from
    server logs) dropped, whitespace collapsed."""
    return one_line(text, None)


def fmt_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else DASH


#: Every status in words, with an icon so a status reads at a glance in Markdown, tables and terminals.
STATUS_LABELS: dict[str, str] = {
    "passed": "✅ passed",
    "failed": "❌ failed",
    "halted": "🛑 halted",
    "skipped": "⏭️ skipped",
    "timed_out": "⏱️ timed out",
    "interrupted": "⚠️ interrupted",
}
UNDO_WORDS: dict[str, str] = {
    "verified": "verified",
    "not_needed": "not needed",
    "failed": "failed",
    "skipped": "skipped",
}
#: Why a drill stopped early, for a reader who does not know the ``stopped`` codes.
STOPPED_WORDS: dict[str, str] = {
    "auth": "VAO refused the credentials mid-drill",
    "unreachable": "VAO was unreachable for longer than give_up_after",
    "signal": "stopped by a signal (Ctrl-C or SIGTERM)",
    "cancelled": "the flow run was cancelled",
}
RESTORE_POINT_NOTE = (
    "the date vaodrill asked VAO for, in VAO server time: VAO fails over to the nearest restore point at or "
    f"before it ({DASH} when the plan never asked)"
)


def status_word(status: str) -> str:
    return status.replace("_", " ")


def rto_text(p: PlanResult) -> str:
    """``3m / 15m``, or with checks ``3m VAO, 3m20s verified / 15m``: achieved against the target."""
    if p.rto_verified_seconds is not None:
        return (
            f"{format_duration(p.rto_seconds)} VAO, {format_duration(p.rto_verified_seconds)} verified / "
            f"{format_duration(p.rto_target_seconds)}"
        )
    return f"{format_duration(p.rto_seconds)} / {format_duration(p.rto_target_seconds)}"


def fmt_rto(p: PlanResult) -> str:
    if p.rto_seconds is None and p.rto_target_seconds is None:
        return DASH
    text = rto_text(p)
    if p.rto_met is not None:
        text += " ✅" if p.rto_met else " ❌"
    return text


def _asked_for_restore_point(p: PlanResult) -> bool:
    """False for a plan that got no Run (skipped, refused): it never asked VAO for any restore point."""
    return p.failover_started_at is not None or (p.status != "skipped" and p.undo != "not_needed")


def fmt_restore_point(p: PlanResult) -> str:
    if not _asked_for_restore_point(p):
        return DASH
    if p.restore_point and p.restore_point_rule:
        return f"{p.restore_point} ({p.restore_point_rule})"
    return p.restore_point or p.restore_point_rule or DASH


def fmt_undo(p: PlanResult, left: set[int]) -> str:
    word = UNDO_WORDS.get(p.undo, p.undo)
    return f"{word.upper()} — left failed over" if id(p) in left else word


def left_ids(report: DrillReport) -> set[int]:
    """Identities, not names, of the plans left failed over: names are not guaranteed unique."""
    return {id(p) for p in report.left_failed_over}


_NESTED = re.compile(r"(?P<head>[^()]+?) \((?P<inner>.*)\)")


def without_plan(plan: str, text: str) -> str:
    """The message minus repeats of the plan name, which every place showing it already names.

    Drops ``<plan>: `` wherever a message part starts, then collapses ``halted (halted (x))`` to ``halted (x)``.
    """
    text = re.sub(r"(^|[(;]\s*)" + re.escape(plan) + r":\s*", r"\1", display_line(text))
    while (m := _NESTED.fullmatch(text)) and (m["inner"] == m["head"] or m["inner"].startswith(m["head"] + " ")):
        text = m["inner"]
    return text


def fmt_reason(p: PlanResult) -> str | None:
    return without_plan(p.plan, p.reason) if p.reason else None


def plan_reasons(p: PlanResult) -> str:
    """Why the plan and its undo ended as they did, one line, without repeating the plan's name."""
    parts = [r] if (r := fmt_reason(p)) else []
    if p.undo_reason:
        parts.append(f"undo {UNDO_WORDS.get(p.undo, p.undo)}: {without_plan(p.plan, p.undo_reason)}")
    return "; ".join(parts)


#: The mark of a plan that passed with warnings, wherever its status is shown.
WARNING_MARK = "⚠️"


def status_label(p: PlanResult) -> str:
    label = STATUS_LABELS.get(p.status, p.status)
    if p.warnings:
        label += f" {WARNING_MARK} {len(p.warnings)} warning{'s' if len(p.warnings) != 1 else ''}"
    return label


def fmt_event(e: PlanEvent) -> str:
    if e.kind == "halt":
        where = f" at step {e.step}" if e.step is not None else ""
        return f"halted{where} at {fmt_time(e.at)}" + (f" ({display_line(e.details)})" if e.details else "")
    outcome = f": {display_line(e.outcome)}" if e.outcome else ""
    return f"Continue {e.option or DASH} sent at {fmt_time(e.at)}{outcome}"


def plan_events(p: PlanResult) -> list[str]:
    """What happened to the plan beyond its status, one line each: halts and Continues in order, warnings,
    restore-point notes and the undo's own details; every report shows these lines."""
    lines = [fmt_event(e) for e in p.events]
    lines += [display_line(c) for c in check_lines(p.checks)]
    lines += [f"warning: {display_line(w)}" for w in p.warnings]
    lines += [f"note: {display_line(n)}" for n in p.notes]
    if p.undo_details:
        lines.append(f"undo details: {display_line(p.undo_details)}")
    return lines


def fmt_after(p: PlanResult) -> str:
    return ", ".join(display_line(a) for a in p.after) or DASH


def counts_line(report: DrillReport) -> str:
    parts = [f"{n} {status_word(status)}" for status, n in report.counts.items() if n]
    total = len(report.plans)
    return f"{total} plan{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def table_rows(report: DrillReport) -> list[dict[str, str]]:
    """One flat row of strings per plan, for a Prefect table artifact."""
    left = left_ids(report)
    return [
        {
            "plan": display_line(p.plan),
            "status": status_label(p),
            "after": fmt_after(p),
            "restore_point_requested": fmt_restore_point(p),
            "failover_started_at": fmt_time(p.failover_started_at),
            "failover_completed_at": fmt_time(p.failover_completed_at),
            "rto": fmt_rto(p),
            "undo": fmt_undo(p, left),
            "vao_details": display_line(p.failover_details) if p.failover_details else DASH,
            "reason": display_line(plan_reasons(p)),
            "events": "; ".join(plan_events(p)) or DASH,
        }
        for p in report.plans
    ]
