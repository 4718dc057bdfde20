"""The report as a coloured terminal table."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from vaodrill.report.model import STAGE_WORD, DrillReport
from vaodrill.report.text import (
    RESTORE_POINT_NOTE,
    STOPPED_WORDS,
    WARNING_MARK,
    counts_line,
    display_line,
    fmt_restore_point,
    fmt_rto,
    fmt_time,
    fmt_undo,
    left_ids,
    plan_events,
    plan_reasons,
    status_label,
)

__all__ = ["summary_table"]

_STATUS_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "halted": "red",
    "timed_out": "red",
    "skipped": "dim",
    "interrupted": "yellow",
}
_UNDO_STYLE = {"verified": "green", "not_needed": "dim", "failed": "bold red", "skipped": "yellow"}


def summary_table(report: DrillReport) -> Table:
    """A colored terminal table. Cells are :class:`Text`, so ``[`` in names is never read as markup."""
    left = left_ids(report)
    ok = report.verdict == "passed"
    caption = [f"run {display_line(report.run_id)} · {report.mode} · {counts_line(report)}"]
    if report.stopped:
        caption.append(f"stopped early: {STOPPED_WORDS.get(report.stopped, report.stopped)}")
    caption += [f"{WARNING_MARK} warning: {display_line(w)}" for w in report.warnings]
    caption.append(f"* {RESTORE_POINT_NOTE}")
    table = Table(
        title=Text.assemble(
            f"{display_line(report.drill)} ",
            ("PASSED" if ok else "FAILED", "bold green" if ok else "bold red"),
        ),
        caption=Text("\n".join(caption)),
    )
    stage = STAGE_WORD.get(report.mode, "Failover")
    for header in ("Plan", "Status", "Restore point requested*", f"{stage} started", "RTO (achieved / target)", "Undo"):
        table.add_column(header)
    table.add_column("Reason", overflow="fold")
    for p in report.plans:
        undo_style = "bold white on red" if id(p) in left else _UNDO_STYLE.get(p.undo, "")
        rto_style = "" if p.rto_met is None else ("green" if p.rto_met else "red")
        table.add_row(
            Text(display_line(p.plan)),
            Text(
                status_label(p),
                style="yellow" if p.warnings and p.status == "passed" else _STATUS_STYLE.get(p.status, ""),
            ),
            Text(display_line(fmt_restore_point(p))),
            Text(fmt_time(p.failover_started_at)),
            Text(fmt_rto(p), style=rto_style),
            Text(fmt_undo(p, left), style=undo_style),
            Text("\n".join(([r] if (r := display_line(plan_reasons(p))) else []) + plan_events(p)), style="dim"),
        )
    return table
