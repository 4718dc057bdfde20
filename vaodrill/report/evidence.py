"""The evidence pack: one self-contained HTML file per drill run with what an auditor checks.

Test id, scope, scenario, times, timeline, per plan the RTO against target, halts and continues, the cleanup,
approvals, deficiencies (each with an empty action / owner / due line), each plan's last drills, every call sent
to VAO (from the journal) and the hashes that ``vaodrill verify`` checks. Inline CSS and SVG only: no script, no
network, prints cleanly to PDF. Every text from a server or a spec is escaped; the file is written beside
report.json by ``write_reports``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from vaodrill import __version__
from vaodrill.journal import MAX_JOURNAL_BYTES
from vaodrill.report.history import ReportSkipped, report_rows
from vaodrill.report.model import DASH, FAILING_STATUSES, DrillReport, PlanResult, report_directory
from vaodrill.report.text import (
    STATUS_LABELS,
    STOPPED_WORDS,
    UNDO_WORDS,
    format_duration,
    plan_events,
    plan_reasons,
    rto_text,
)

__all__ = ["HISTORY_RUNS", "deficiencies", "evidence_hashes", "journal_records", "render_evidence", "spark_svg"]

#: Earlier drills of the same drill shown per plan.
HISTORY_RUNS = 10
_WARNING = re.compile(r"\b([1-9]\d*) warnings?\b|\b([1-9]\d*) errors?\b", re.IGNORECASE)
#: How verify finds the pack's hashes again: ``<td class="sha256" data-file="NAME">HEX</td>``.
_HASH_CELL = re.compile(r'<td class="sha256" data-file="([^"]+)">([0-9a-f]{64})</td>')

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1b1f23;margin:24px auto;
max-width:1180px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;border-bottom:2px solid #d0d7de;padding-bottom:3px;margin:26px 0 8px}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;
vertical-align:top}th{background:#f3f5f7}tr{page-break-inside:avoid}dl{display:grid;grid-template-columns:200px 1fr;
gap:2px 12px;margin:0}dt{font-weight:600}dd{margin:0}.verdict{display:inline-block;padding:2px 10px;border-radius:4px;
color:#fff;font-weight:700}.passed{background:#2e8b57}.failed{background:#c0392b}.bad{color:#c0392b;font-weight:600}
.ok{color:#2e8b57}.muted{color:#6a737d}.fill{height:1.6em}.sha256{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:12px;word-break:break-all}.alert{border:3px solid #c0392b;padding:8px 12px;background:#fdecea}
svg{max-width:100%;height:auto}.timeline svg{border:1px solid #d0d7de}
@media print{body{margin:0;max-width:none;font-size:11px}h2{page-break-after:avoid}.timeline{page-break-inside:avoid}
a{color:inherit;text-decoration:none}}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else DASH


def _rows(cells: Iterable[Sequence[str]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{_rows(rows)}</tbody></table>"


def _dl(items: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


# --------------------------------------------------------------------------------------------- inputs


def journal_records(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's records in order, a line at a time (unreadable lines skipped: verify is where they are
    judged)."""
    try:
        if path.stat().st_size > MAX_JOURNAL_BYTES:
            return
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


#: The journal's milestones, as the pack's list of calls names them.
_MILESTONES = {
    "open": "drill started",
    "resume": "run resumed from its journal",
    "close": "journal closed",
    "recover": "recovery started",
    "approval": "real failover approved",
}
#: The journal records the pack lists as calls and milestones (the plans' own records are summed up per plan).
_LISTED = frozenset({"intent", "outcome", *_MILESTONES})


@dataclass
class JournalFacts:
    """What the pack shows of a run's journal, gathered in one pass: a 500-plan journal holds megabytes of plan
    records, of which the pack needs only each plan's Continue count and halt policy."""

    opened: Mapping[str, Any]
    continues: dict[str, dict[str, Any]]  # plan name -> continues and on_halt policy, from its last record
    listed: list[dict[str, Any]]  # the calls and milestones, in order

    @classmethod
    def read(cls, path: Path | None) -> JournalFacts:
        facts = cls({}, {}, [])
        for r in journal_records(path) if path is not None else ():
            kind = r.get("type")
            if kind == "plan" and isinstance(record := r.get("record"), dict):
                target: dict[str, Any] = record["target"] if isinstance(record.get("target"), dict) else {}
                facts.continues[str(target.get("name", r.get("plan")))] = {
                    "continues": record.get("continues"),
                    "halt": target.get("halt"),
                }
            elif kind in _LISTED:
                facts.listed.append(r)
                if kind == "open" and not facts.opened:
                    facts.opened = r
        return facts


@dataclass(frozen=True)
class EarlierRun:
    started: str
    run_id: str
    statuses: dict[str, tuple[str, float | None]]  # plan -> (status, rto)


def earlier_runs(report: DrillReport, root: Path, limit: int = HISTORY_RUNS) -> list[EarlierRun]:
    """The drill's last runs before this one, newest first, from their report.json files (unreadable skipped)."""
    here = report_directory(report, root)
    folders = (
        sorted((p for p in here.parent.iterdir() if p.is_dir() and p.name < here.name), reverse=True)
        if here.parent.is_dir()
        else []
    )
    runs: list[EarlierRun] = []
    for folder in folders:
        try:
            rows = report_rows((folder / "report.json").read_bytes())
        except (OSError, ReportSkipped):
            continue
        if rows and rows[0][0] == report.drill:
            runs.append(EarlierRun(rows[0][2], rows[0][3], {r[1]: (r[4], r[5]) for r in rows}))
        if len(runs) == limit:
            break
    return runs


def evidence_hashes(page: str) -> dict[str, str]:
    """The file hashes an evidence pack lists (for ``vaodrill verify``)."""
    return dict(_HASH_CELL.findall(page))


# -------------------------------------------------------------------------------------------- sections


def _header(report: DrillReport) -> str:
    word = report.verdict
    out = [
        f"<h1>DR test evidence: drill {_e(report.drill)} <span class='verdict {word}'>{word.upper()}</span></h1>",
        f"<p class='muted'>Test id (run id) <b>{_e(report.run_id)}</b> · written by vaodrill {_e(__version__)} at "
        f"{_time(datetime.now(UTC))}</p>",
    ]
    if left := report.left_failed_over:
        out.append(
            f"<p class='alert'><b>{len(left)} PLAN(S) LEFT FAILED OVER</b>: "
            f"{_e(', '.join(p.plan for p in left))}. Workloads may run from the DR site.</p>"
        )
    return "".join(out)


#: The modes that change nothing for good, as the pack names them; anything else is a real failover.
_MODE_WORDS = {"drill": "drill (fail over, then undo)", "readiness": "readiness check (no failover, no undo)"}
_NO_APPROVAL = {
    "drill": "Drill mode: plans are failed over and undone; no approval is required.",
    "readiness": "Readiness mode: each plan's readiness check only; no approval is required.",
}


def _scope(report: DrillReport, opened: Mapping[str, Any]) -> str:
    plans = ", ".join(p.plan for p in report.plans) or DASH
    items = [
        ("Test id (run id)", _e(report.run_id)),
        ("Drill", _e(report.drill)),
        ("Mode", _MODE_WORDS.get(report.mode, "<b>REAL failover</b> (no undo)")),
        ("Plans in scope", f"{len(report.plans)}: {_e(plans)}"),
        ("VAO server", _e(report.vao_server or DASH)),
        ("vaodrill version", _e(__version__)),
        ("Drill spec file", _e(opened.get("spec_file") or DASH)),
        ("Flow run", _e(report.flow_run_url or DASH)),
        ("Started", _time(report.started_at)),
        ("Finished", _time(report.finished_at)),
        ("Duration", format_duration(report.duration_seconds)),
        ("Verdict", f"<b>{report.verdict}</b>" + (f": {_e(report.reason)}" if report.reason else "")),
    ]
    if report.stopped:
        items.append(("Stopped early", _e(STOPPED_WORDS.get(report.stopped, report.stopped))))
    items += [("Warning", f"<span class='bad'>{_e(w)}</span>") for w in report.warnings]
    return "<h2>Test and scope</h2>" + _dl(items)


def _scenario(report: DrillReport, opened: Mapping[str, Any]) -> str:
    settings = (
        f"poll interval {opened.get('poll_interval', DASH)} s, give up after {opened.get('give_up_after', DASH)} s"
    )
    rows = [
        (
            _e(p.plan),
            _e(", ".join(p.after) or DASH),
            _e(p.restore_point_rule or DASH),
            _e(p.restore_point or DASH),
            _e(DASH if p.restore_point_seed is None else p.restore_point_seed),
        )
        for p in report.plans
    ]
    return (
        "<h2>Scenario</h2>"
        + _dl([("Description", _e(report.description or DASH)), ("Engine", settings)])
        + "<p class='muted'>Date asked: the restorePointRule.date sent to VAO, in VAO server time; VAO fails over "
        "to the nearest restore point at or before it.</p>"
        + _table(["Plan", "After", "Restore-point rule", "Date asked", "Seed"], rows)
    )


def _timeline(svg: str | None) -> str:
    picture = re.sub(r"^<\?xml[^>]*>\s*", "", svg) if svg else "<p class='muted'>No picture.</p>"
    return "<h2>Timeline</h2><div class='timeline'>" + picture + "</div>"


def _calls(records: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for r in records:
        kind = r.get("type")
        if kind in ("intent", "outcome"):
            what = f"{str(r.get('op', '?')).capitalize()} " + (
                "sent" if kind == "intent" else ("answered OK" if r.get("ok") else f"failed: {r.get('error', '')}")
            )
        elif kind in _MILESTONES:
            what = _MILESTONES[str(kind)]
        else:
            continue
        rows.append((_e(str(r.get("at", ""))[:23].replace("T", " ")), _e(r.get("plan") or DASH), _e(what)))
    return (
        "<h2>Calls to VAO</h2><p class='muted'>From the run's journal: every Run, Undo and Halt sent to VAO, "
        "written before it was sent, and its answer (UTC).</p>" + _table(["When", "Plan", "What"], rows)
    )


def _halts(p: PlanResult, record: Mapping[str, Any]) -> str:
    """Halts, Continues, warnings, notes and the undo's details (the report's lines); the journal's Continue count
    for a report written before the events were kept."""
    parts = []
    if p.status == "halted":
        parts.append(f"<span class='bad'>halted</span>: {_e(p.reason or '')}")
    if lines := plan_events(p):
        parts += [_e(line) for line in lines]
    elif continues := record.get("continues"):
        policy = record.get("halt")
        parts.append(f"{_e(continues)} Continue sent" + (f" (on_halt {_e(policy)})" if policy else ""))
    return "<br>".join(parts) or DASH


def _rto(p: PlanResult) -> str:
    text = rto_text(p)
    if p.rto_met is None:
        return text
    return text + (" <span class='ok'>met</span>" if p.rto_met else " <span class='bad'>MISSED</span>")


def _results(report: DrillReport, continues: Mapping[str, Mapping[str, Any]]) -> str:
    left = {id(p) for p in report.left_failed_over}
    rows = []
    for p in report.plans:
        undo = UNDO_WORDS.get(p.undo, p.undo)
        undo_cell = f"<span class='bad'>{_e(undo.upper())}: LEFT FAILED OVER</span>" if id(p) in left else _e(undo)
        if p.undo_completed_at:
            undo_cell += f"<br><span class='muted'>{_time(p.undo_completed_at)}</span>"
        status = STATUS_LABELS.get(p.status, p.status)
        rows.append(
            (
                _e(p.plan),
                f"<span class='{'bad' if p.status in FAILING_STATUSES else ''}'>{_e(status)}</span>",
                _time(p.failover_started_at),
                _time(p.failover_completed_at),
                _rto(p),
                _e(p.failover_details or DASH),
                _halts(p, continues.get(p.plan, {})),
                undo_cell,
                _e(plan_reasons(p) or DASH),
            )
        )
    return (
        "<h2>Results per plan</h2><p class='muted'>RTO: from the Run sent to the completion observed, against "
        "the target. Cleanup: the undo verified by reading the plan back idle.</p>"
        + _table(
            [
                "Plan",
                "Status",
                "Check sent" if report.mode == "readiness" else "Run sent",
                "Completed",
                "RTO achieved / target",
                "VAO details",
                "Halts, continues, warnings, notes",
                "Cleanup",
                "Reason",
            ],
            rows,
        )
    )


def _approvals(report: DrillReport, records: Sequence[Mapping[str, Any]]) -> str:
    found = [r for r in records if r.get("type") == "approval"]
    if not found:
        text = (
            _NO_APPROVAL[report.mode]
            if report.mode in _NO_APPROVAL
            else "<span class='bad'>No approval recorded in this run's journal</span>: see the approval input of "
            f"the flow run {_e(report.flow_run_url or '')}."
        )
        return f"<h2>Approvals</h2><p>{text}</p>"
    rows = [
        (_e(r.get("approver")), _e(r.get("change_ticket") or "—"), _e(r.get("how") or "—"), _e(r.get("at")))
        for r in found
    ]
    return "<h2>Approvals</h2>" + _table(["Approved by", "Change ticket", "How", "When"], rows)


def deficiencies(report: DrillReport) -> list[tuple[str, str]]:
    """(plan, what) for every failed, missed or warned item."""
    found = []
    for p in report.plans:
        if p.status != "passed":
            found.append((p.plan, f"{p.status.replace('_', ' ')}: {plan_reasons(p) or 'no reason given'}"))
        if p.rto_met is False:
            measured = p.rto_verified_seconds if p.rto_verified_seconds is not None else p.rto_seconds
            found.append(
                (
                    p.plan,
                    f"RTO target missed: {format_duration(measured)} against {format_duration(p.rto_target_seconds)}",
                )
            )
        if p.failover_details and _WARNING.search(p.failover_details):
            found.append((p.plan, f"VAO reported: {p.failover_details}"))
        found += [(p.plan, f"warning: {w}") for w in p.warnings if not w.startswith("VAO: ")]
        if p.undo == "failed":
            found.append((p.plan, f"cleanup not verified: {p.undo_reason or 'no reason given'}"))
    if report.stopped:
        found.append(("(drill)", f"stopped early: {STOPPED_WORDS.get(report.stopped, report.stopped)}"))
    found += [("(drill)", f"warning: {w}") for w in report.warnings]
    return found


def _deficiencies(report: DrillReport) -> str:
    found = deficiencies(report)
    if not found:
        return "<h2>Deficiencies</h2><p class='ok'>None: every plan passed within its target and was cleaned up.</p>"
    rows = [(_e(plan), _e(what), "<div class='fill'></div>", "", "") for plan, what in found]
    return (
        f"<h2>Deficiencies ({len(found)})</h2><p>Each item is to be followed up: fill in the action, its owner "
        "and the due date.</p>" + _table(["Plan", "Deficiency", "Action", "Owner", "Due"], rows)
    )


def spark_svg(
    points: Sequence[tuple[str, float | None]], target: float | None, *, width: int = 160, height: int = 34
) -> str:
    """A small inline SVG of RTOs, oldest first: passed runs as green dots joined by a line, any other run as a
    red cross on the baseline, the target as a dashed line."""
    values = [v for _, v in points if v is not None] + ([target] if target else [])
    if not values:
        return DASH
    top = max(values) * 1.1 or 1.0
    step = width / max(len(points), 1)

    def y(v: float) -> float:
        return round(height - 3 - (height - 6) * v / top, 1)

    marks, path = [], []
    for i, (status, v) in enumerate(points):
        x = round(step * (i + 0.5), 1)
        if status != "passed" or v is None:
            marks.append(f"<path d='M{x - 3},{height - 7}l6,6m0,-6l-6,6' stroke='#c0392b' stroke-width='1.5'/>")
        else:
            path.append(f"{x},{y(v)}")
            marks.append(f"<circle cx='{x}' cy='{y(v)}' r='2.5' fill='#2e8b57'/>")
    line = (
        f"<polyline points='{' '.join(path)}' fill='none' stroke='#2e8b57' stroke-opacity='.45'/>"
        if len(path) > 1
        else ""
    )
    goal = (
        f"<line x1='0' x2='{width}' y1='{y(target)}' y2='{y(target)}' stroke='#888' stroke-dasharray='3,2'/>"
        if target
        else ""
    )
    return (
        f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>{goal}{line}"
        f"{''.join(marks)}</svg>"
    )


def _history(report: DrillReport, earlier: Sequence[EarlierRun]) -> str:
    rows = []
    for p in report.plans:
        mine = [(run.statuses[p.plan], run.started[:10]) for run in reversed(earlier) if p.plan in run.statuses]
        points = [(status, rto) for (status, rto), _ in mine] + [(p.status, p.rto_seconds)]
        passes = sum(1 for status, _ in points if status == "passed")
        last_good = next((day for (status, _), day in reversed(mine) if status == "passed"), DASH)
        rows.append((_e(p.plan), f"{passes} of {len(points)}", _e(last_good), spark_svg(points, p.rto_target_seconds)))
    return (
        f"<h2>History</h2><p class='muted'>This run and up to {HISTORY_RUNS} earlier runs of drill "
        f"{_e(report.drill)} ({len(earlier)} found). Green: RTO of a passed run; red cross: not passed; dashed: "
        "target.</p>" + _table(["Plan", "Passed", "Last passed before this run", "RTO, oldest to this run"], rows)
    )


def _hashes(hashes: Mapping[str, str], head: Mapping[str, Any] | None) -> str:
    table = (
        "<table><thead><tr><th>File</th><th>SHA-256</th></tr></thead><tbody>"
        + "".join(
            f'<tr><td>{_e(name)}</td><td class="sha256" data-file="{_e(name)}">{digest}</td></tr>'
            for name, digest in sorted(hashes.items())
        )
        + "</tbody></table>"
    )
    journal = (
        "<p class='bad'>No journal: the run's steps are not chained.</p>"
        if head is None
        else _dl(
            [
                ("Journal", _e(head.get("path"))),
                ("Lines at report time", _e(head.get("lines"))),
                ("Hash of its last line", f"<span class='sha256'>{_e(head.get('last_hash'))}</span>"),
            ]
        )
    )
    return (
        "<h2>Integrity</h2><p>Each journal line carries the SHA-256 of the line before it. "
        "<code>vaodrill verify &lt;this folder&gt;</code> recomputes the chain and these hashes. This is tamper "
        "evidence, not a signature: sign this file with your own tools to prove who wrote it.</p>" + table + journal
    )


def render_evidence(
    report: DrillReport,
    *,
    root: Path,
    hashes: Mapping[str, str],
    journal_head: Mapping[str, Any] | None,
    journal_path: Path | None,
    timeline_svg: str | None,
) -> str:
    """The whole evidence pack as one HTML document."""
    journal = JournalFacts.read(journal_path)
    body = "".join(
        [
            _header(report),
            _scope(report, journal.opened),
            _scenario(report, journal.opened),
            _timeline(timeline_svg),
            _results(report, journal.continues),
            _approvals(report, journal.listed),
            _deficiencies(report),
            _history(report, earlier_runs(report, root)),
            _calls(journal.listed),
            _hashes(hashes, journal_head),
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>DR test evidence: {_e(report.drill)} {_e(report.run_id)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
