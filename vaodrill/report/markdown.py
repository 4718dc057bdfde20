"""The Markdown report, for humans and Prefect artifacts; a loud warning leads when a plan was left failed over."""

from __future__ import annotations

import re
from urllib.parse import quote

from vaodrill.report.model import DASH, STAGE_WORD, DrillReport, PlanResult
from vaodrill.report.text import (
    RESTORE_POINT_NOTE,
    STOPPED_WORDS,
    UNDO_WORDS,
    WARNING_MARK,
    counts_line,
    display_line,
    fmt_after,
    fmt_reason,
    fmt_restore_point,
    fmt_rto,
    fmt_time,
    fmt_undo,
    format_duration,
    plan_events,
    status_label,
    without_plan,
)

__all__ = ["render_markdown"]

_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&])")


def _md(text: str) -> str:
    """Escape inline Markdown/HTML so plan names and server messages render as text, on one line."""
    return _MD_SPECIAL.sub(r"\\\1", display_line(text))


def _md_url(url: str | None) -> str:
    """An autolink; characters that would end it early are percent-encoded."""
    return f"<{quote(url, safe=_URL_SAFE)}>" if url else DASH


def _md_details(p: PlanResult) -> str | None:
    """One line of everything the table has no room for, or None when there is nothing to add."""
    parts = []
    if reason := fmt_reason(p):
        parts.append(_md(reason))
    elif p.status != "passed":
        parts.append("no reason given")
    if p.failover_details and f"VAO: {p.failover_details}" not in p.warnings:  # else its warning line says it
        parts.append(f"VAO: {_md(p.failover_details)}")
    if p.undo_reason:
        parts.append(f"undo {UNDO_WORDS.get(p.undo, p.undo)}: {_md(without_plan(p.plan, p.undo_reason))}")
    parts += [_md(line) for line in plan_events(p)]
    if not parts:
        return None
    return f"- **{_md(p.plan)}** ({status_label(p)}): {'; '.join(parts)}"


def render_markdown(report: DrillReport) -> str:
    """An auditor-friendly report; a loud warning leads when a plan was left failed over."""
    ok = report.verdict == "passed"
    out: list[str] = [f"# {'✅' if ok else '❌'} DR drill {_md(report.drill)}: {report.verdict.upper()}", ""]
    out += _md_left_failed_over(report) + _md_summary(report) + _md_plans(report)
    details = [line for p in report.plans if (line := _md_details(p))]
    if details:
        out += ["## Details", "", *details, ""]
    return "\n".join(out)


def _md_left_failed_over(report: DrillReport) -> list[str]:
    """The loud warning that leads the report when a plan was left failed over; nothing otherwise."""
    left = report.left_failed_over
    out: list[str] = []
    if left:
        out += [
            f"> 🚨 **WARNING: {len(left)} PLAN{'S' if len(left) != 1 else ''} LEFT FAILED OVER** 🚨",
            ">",
            "> These plans were failed over by the drill and were **not** verifiably put back. Workloads",
            "> may be running from the DR site. Undo the failover in VAO and verify each plan now:",
            ">",
        ]
        for p in left:
            detail = f" ({_md(without_plan(p.plan, p.undo_reason))})" if p.undo_reason else ""
            out.append(f"> - **{_md(p.plan)}**: undo {UNDO_WORDS.get(p.undo, p.undo)}{detail}")
        out.append("")
    return out


def _md_summary(report: DrillReport) -> list[str]:
    """The mode's note, the description and the run's facts."""
    out: list[str] = []
    if report.mode == "failover":
        out += ["> Mode **failover**: plans were failed over for real and intentionally left failed over.", ""]
    if report.mode == "readiness":
        out += ["> Mode **readiness**: each plan's readiness check was run; nothing was failed over or undone.", ""]

    if report.description:
        out += [_md(report.description), ""]

    out += [
        f"- **Run id:** {_md(report.run_id)}",
        f"- **Mode:** {report.mode}",
        f"- **Verdict:** {report.verdict}",
        f"- **Started:** {fmt_time(report.started_at)}",
        f"- **Finished:** {fmt_time(report.finished_at)}",
        f"- **Duration:** {format_duration(report.duration_seconds)}",
        f"- **VAO server:** {_md_url(report.vao_server)}",
    ]
    if report.flow_run_url:
        out.append(f"- **Flow run:** {_md_url(report.flow_run_url)}")
    out.append(f"- **Plans:** {counts_line(report)}")
    if report.stopped:
        out.append(f"- **Stopped early:** {STOPPED_WORDS.get(report.stopped, report.stopped)}")
    if report.reason:
        out.append(f"- **Reason:** {_md(report.reason)}")
    out += [f"- **{WARNING_MARK} Warning:** {_md(w)}" for w in report.warnings]
    out.append("")
    return out


def _md_plans(report: DrillReport) -> list[str]:
    """The plans' table, with its footnote."""
    left_ids = {id(p) for p in report.left_failed_over}
    out: list[str] = []
    out += ["## Plans", ""]
    stage = STAGE_WORD.get(report.mode, "Failover")
    if report.plans:
        out += [
            f"| Plan | Status | After | Restore point requested¹ | {stage} started | {stage} completed "
            "| RTO achieved / target | Undo |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in report.plans:
            undo = fmt_undo(p, left_ids)
            cells = [
                _md(p.plan),
                status_label(p),
                _md(fmt_after(p)),
                _md(fmt_restore_point(p)),
                fmt_time(p.failover_started_at),
                fmt_time(p.failover_completed_at),
                fmt_rto(p),
                f"**{undo}**" if id(p) in left_ids else undo,
            ]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", f"¹ Restore point requested: {RESTORE_POINT_NOTE}."]
    else:
        out.append("_No plans were run._")
    out.append("")
    return out
