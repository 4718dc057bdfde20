"""How ``vaodrill history`` shows drills over time: a terminal table, JSON for machines, a self-contained HTML page
and the rows of a Prefect table artifact. Everything here reads a :class:`vaodrill.report.history.History`."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from vaodrill.report.evidence import spark_svg
from vaodrill.report.history import TREND, History, PlanHistory
from vaodrill.report.model import DASH
from vaodrill.report.text import format_duration

__all__ = ["history_html", "history_json", "history_table", "sparkline", "trend_rows"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(p: PlanHistory) -> str:
    """The trend in one line of text: a bar per passed run scaled to the largest RTO, ``✗`` for any other run."""
    if not p.trend:
        return DASH
    values = [rto for _, _, rto, _ in p.trend if rto is not None]
    top = max(values, default=0.0) or 1.0
    return "".join(
        _BARS[min(int(rto / top * (len(_BARS) - 1) + 0.5), len(_BARS) - 1)]
        if status == "passed" and rto is not None
        else "✗"
        for _, status, rto, _ in p.trend
    )


def _day(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d") if value else DASH


def _last_good(p: PlanHistory, now: datetime) -> str:
    days = p.days_since_good(now)
    return DASH if days is None else f"{_day(p.last_good_at)} ({days:.0f} d)"


def _margin(p: PlanHistory) -> str:
    if p.margin is None:
        return DASH
    return ("+" if p.margin >= 0 else "-") + format_duration(abs(p.margin))


def _stats(p: PlanHistory) -> str:
    stats = p.rto_stats()
    return DASH if stats is None else " / ".join(format_duration(v) for v in stats)


def _flags(p: PlanHistory) -> str:
    return "; ".join(f"{word}: {why}" for word, why in (("OVERDUE", p.overdue), ("REGRESSED", p.regressed)) if why)


def _streak(p: PlanHistory) -> str:
    return f"{p.failure_streak} run{'s' if p.failure_streak != 1 else ''}" if p.failure_streak else DASH


#: The columns of both views, in order: each title and its cell. The trend is a bar line in the terminal and a
#: picture on the page; the flags come last, where a long reason can run on.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("drill", "Drill"),
    ("plan", "Plan"),
    ("runs", "Runs"),
    ("passed", "Passed"),
    ("last_good", "Last passed (days ago)"),
    ("rto_last_good", "RTO last / target"),
    ("margin", "Margin"),
    ("trend", f"RTO, last {TREND} runs"),
    ("rto_min_median_max", "RTO min / median / max"),
    ("failing_for", "Failing for"),
    ("flags", "Flags"),
)


def trend_rows(history: History) -> list[dict[str, str]]:
    """One flat row of strings per plan, keyed as :data:`COLUMNS` (the Prefect table artifact, the terminal)."""
    return [
        {
            "drill": p.drill,
            "plan": p.plan,
            "runs": str(p.runs),
            "passed": str(p.passes),
            "last_good": _last_good(p, history.now),
            "rto_last_good": f"{format_duration(p.last_good_rto)} / {format_duration(p.rto_target)}",
            "margin": _margin(p),
            "trend": sparkline(p),
            "rto_min_median_max": _stats(p),
            "failing_for": _streak(p),
            "flags": _flags(p) or DASH,
        }
        for p in history.plans
    ]


def history_table(history: History, *, colour: bool = False) -> str:
    """The terminal view: aligned columns, one line per plan (plain text: a Rich table of 5,000 rows takes
    seconds to lay out), flagged plans in red when ``colour``."""
    rows = [[title for _, title in COLUMNS]] + [[row[key] for key, _ in COLUMNS] for row in trend_rows(history)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for i, r in enumerate(rows):
        line = "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=False)) + "  " + r[-1]
        flagged = i > 0 and r[-1] != DASH
        lines.append(f"\x1b[31m{line.rstrip()}\x1b[0m" if colour and flagged else line.rstrip())
    caption = (
        f"{len(history.plans)} plans, {len(history.flagged())} flagged. RTO, last {TREND} runs: a bar per passed "
        "run's RTO, ✗ a run that did not pass; RTO min / median / max over them; margin: target minus the last "
        "passed RTO."
    )
    return "\n".join([*lines, "", caption]) + "\n"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def plan_json(p: PlanHistory, now: datetime) -> dict[str, Any]:
    stats = p.rto_stats()
    days = p.days_since_good(now)
    return {
        "drill": p.drill,
        "plan": p.plan,
        "runs": p.runs,
        "passes": p.passes,
        "failures": p.runs - p.passes,
        "last_run_at": _iso(p.last_run_at),
        "last_status": p.last_status,
        "last_good_at": _iso(p.last_good_at),
        "days_since_good": None if days is None else round(days, 2),
        "last_good_rto_seconds": p.last_good_rto,
        "rto_target_seconds": p.rto_target,
        "margin_seconds": p.margin,
        "rto_min_seconds": stats[0] if stats else None,
        "rto_median_seconds": stats[1] if stats else None,
        "rto_max_seconds": stats[2] if stats else None,
        "failure_streak": p.failure_streak,
        "baseline_rto_seconds": p.baseline_rto,
        "overdue": p.overdue,
        "regressed": p.regressed,
        "trend": [
            {"at": _iso(at), "status": status, "rto_seconds": rto, "run_id": run_id}
            for at, status, rto, run_id in p.trend
        ],
    }


def history_json(history: History, report_dir: str) -> dict[str, Any]:
    return {
        "report_dir": report_dir,
        "generated_at": _iso(history.now),
        "skipped": [{"path": s.path, "reason": s.reason} for s in history.skipped],
        "flagged": len(history.flagged()),
        "plans": [plan_json(p, history.now) for p in history.plans],
    }


_CSS = """body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1b1f23;margin:24px}
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:middle;
white-space:nowrap}td.flags{white-space:normal;min-width:260px}
th{background:#f3f5f7}tr.flag td{background:#fdecea}.bad{color:#c0392b;font-weight:600}.muted{color:#6a737d}
tr{page-break-inside:avoid}"""


def history_html(history: History, report_dir: str) -> str:
    """A self-contained page (inline CSS and SVG, no script): a row per plan with its RTO trend picture."""
    rows = []
    for p, row in zip(history.plans, trend_rows(history), strict=True):
        flagged = bool(p.overdue or p.regressed)
        cells = []
        for key, _ in COLUMNS:
            if key == "trend":
                picture = spark_svg(
                    [(status, rto) for _, status, rto, _ in p.trend], p.rto_target, width=260, height=52
                )
                cells.append(f"<td>{picture}</td>")
            elif key == "flags":
                cells.append(f"<td class='flags bad'>{escape(row[key])}</td>" if flagged else "<td></td>")
            else:
                cells.append(f"<td>{escape(row[key])}</td>")
        rows.append(f"<tr class='{'flag' if flagged else ''}'>{''.join(cells)}</tr>")
    skipped = "".join(f"<li>{escape(s.path)}: {escape(s.reason)}</li>" for s in history.skipped)
    heads = [title for _, title in COLUMNS]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Drill history</title>"
        f"<style>{_CSS}</style></head><body><h1>Drill history</h1><p class='muted'>{escape(report_dir)} · "
        f"{len(history.plans)} plans, {len(history.flagged())} flagged · "
        f"{history.now.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')} · trend: green dot a passed run's RTO, "
        "red cross a run that did not pass, dashed line the target</p><table><thead><tr>"
        + "".join(f"<th>{escape(h)}</th>" for h in heads)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + (f"<h2>Skipped files</h2><ul>{skipped}</ul>" if skipped else "")
        + "</body></html>\n"
    )
