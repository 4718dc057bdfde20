"""The drill report: what an auditor, a CI dashboard and an on-call engineer read after a drill.

One data model (:class:`DrillReport`) and its writers: JSON (the documented, versioned public schema),
Markdown (for humans and Prefect artifacts), JUnit XML (for Jenkins/GitLab), a flat table (Prefect table
artifact), a Rich table (terminal) and the timeline picture (:mod:`vaodrill.report.timeline`). Nothing here imports
Prefect, so reports can be read and rendered anywhere.

The one thing a report must never hide is a plan left failed over after a drill: production may be
running from the DR site. :attr:`DrillReport.left_failed_over` finds them and every writer shouts.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from rich.table import Table
from rich.text import Text

from vaodrill.report.checks import CheckResult, check_lines, junit_check_cases

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_LABELS",
    "UNDO_WORDS",
    "DrillReport",
    "Mode",
    "PlanEvent",
    "PlanResult",
    "PlanStatus",
    "UndoStatus",
    "Verdict",
    "format_duration",
    "load_report",
    "plan_events",
    "plan_reasons",
    "render_junit",
    "render_markdown",
    "report_directory",
    "report_from_json",
    "report_to_json",
    "rto_text",
    "summary_table",
    "table_rows",
]

#: Version of the JSON schema, written as ``schema_version``. Bump on any incompatible change.
SCHEMA_VERSION = 1

PlanStatus = Literal["passed", "failed", "skipped", "halted", "timed_out", "interrupted"]
UndoStatus = Literal["verified", "failed", "not_needed", "skipped"]
Verdict = Literal["passed", "failed"]
Mode = Literal["drill", "failover", "readiness"]
#: What the stage columns hold, by mode: a readiness drill's are its checks (started, completed).
STAGE_WORD: dict[str, str] = {"readiness": "Check"}
#: auth: credentials refused mid-drill; unreachable: the server failed longer than give_up_after;
#: signal: SIGINT/SIGTERM; cancelled: the flow run was cancelled.
Stopped = Literal["auth", "unreachable", "signal", "cancelled"]

PLAN_STATUSES: tuple[str, ...] = get_args(PlanStatus)
#: Plan statuses that count as a JUnit failure.
FAILING_STATUSES = frozenset({"failed", "halted", "timed_out", "interrupted"})
#: Undo outcomes after which a drilled plan is known to be back where it started.
CLEAN_UNDO = frozenset({"verified", "not_needed"})

DASH = "—"



# --------------------------------------------------------------------------------------------- model


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: Aware datetimes only: a naive one is ambiguous in an audit trail, so it is rejected rather than guessed.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _strip_url_secrets(value: str | None) -> str | None:
    """Keep scheme, host, port and path: user info, query and fragment may carry credentials or tokens.

    Stripped rather than rejected, so a report is never lost at the end of a drill over a URL's form.
    """
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:  # not a number: keep whatever followed the host, minus secrets
        port = None
    if not parts.scheme or not parts.hostname:
        return value.split("@")[-1].split("?")[0].split("#")[0]
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


SafeUrl = Annotated[str | None, AfterValidator(_strip_url_secrets)]


def _encodable(value: object) -> object:
    """A lone surrogate (a server's JSON may carry "\\ud800") becomes "?": pydantic would refuse the name, and
    with it the whole report, at the end of a drill."""
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value


#: A plan name as the server spelled it, minus what UTF-8 cannot carry.
PlanName = Annotated[str, BeforeValidator(_encodable)]

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


class PlanEvent(BaseModel):
    """A halt VAO showed, or a Continue vaodrill sent, while a plan failed over; in the order they happened."""

    model_config = _CONFIG

    kind: Literal["halt", "continue"]
    at: UtcDatetime = Field(description="When vaodrill saw the halt, or sent the Continue")
    step: int | None = Field(None, description="halt: the step VAO halted at, when its details name one")
    details: str | None = Field(None, description="halt: VAO's planStateDetails")
    option: str | None = Field(None, description="continue: the Continue option sent")
    outcome: str | None = Field(None, description="continue: what the plan did next (resumed, halted again, ...)")


class PlanResult(BaseModel):
    """The outcome of one failover plan in a drill.

    ``undo`` is required on purpose: whether a plan was put back is the question an auditor asks first.
    """

    model_config = _CONFIG

    plan: PlanName = Field(min_length=1, description="Failover plan name")
    id: str | None = Field(None, description="VAO plan id")
    status: PlanStatus
    reason: str | None = Field(None, description="Why the plan did not pass")
    after: list[str] = Field(default_factory=list, description="Plans this one waited for (DAG edges)")
    restore_point: str | None = Field(
        None, description="restorePointRule.date exactly as sent: VAO server wall time, no offset"
    )
    restore_point_rule: str | None = Field(None, description="Human form of the rule, e.g. 'ago 6h'")
    restore_point_seed: int | None = Field(None, description="Seed used to pick a random restore point")
    failover_started_at: UtcDatetime | None = None
    failover_completed_at: UtcDatetime | None = None
    failover_ended_at: UtcDatetime | None = Field(
        None, description="When the failover stage ended however it ended (completed, halted, timed out, failed)"
    )
    failover_details: str | None = Field(
        None, description="VAO's planStateDetails when the failover completed (its warnings and errors)"
    )
    rto_seconds: float | None = Field(None, description="Achieved recovery time")
    rto_target_seconds: float | None = Field(None, description="The plan's RTO target")
    rto_met: bool | None = None
    undo: UndoStatus
    undo_reason: str | None = None
    undo_completed_at: UtcDatetime | None = None
    undo_details: str | None = Field(None, description="VAO's planStateDetails when the undo finished")
    events: list[PlanEvent] = Field(default_factory=list, description="Halts and Continues during the failover")
    warnings: list[str] = Field(default_factory=list, description="Passed, but not cleanly: e.g. VAO's warnings")
    notes: list[str] = Field(default_factory=list, description="How the restore-point rule was read (after now, "
                             "a repeated hour on the server...)")
    checks: list[CheckResult] = Field(default_factory=list, description="Application checks after the failover")
    verified_at: UtcDatetime | None = Field(None, description="When the last critical check passed")
    rto_verified_seconds: float | None = Field(
        None, description="From the Run POST to all critical checks passed; rto_met compares this one when set")


class DrillReport(BaseModel):
    """Everything a drill (or a real failover) did, plan by plan; serialized as schema v1."""

    model_config = _CONFIG

    drill: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    mode: Mode
    verdict: Verdict
    started_at: UtcDatetime
    finished_at: UtcDatetime
    description: str | None = None
    vao_server: SafeUrl = Field(None, description="VAO base URL; credentials are stripped")
    flow_run_url: SafeUrl = None
    reason: str | None = Field(None, description="Drill-level reason when the verdict is failed")
    stopped: Stopped | None = Field(None, description="Why the drill stopped early, if it did")
    warnings: list[str] = Field(default_factory=list, description="Drill-level warnings (e.g. the server's zone)")
    plans: list[PlanResult] = Field(default_factory=list)

    @property
    def left_failed_over(self) -> list[PlanResult]:
        """Drilled plans whose failover started but were not verifiably put back.

        Empty in ``failover`` mode, where staying failed over is the point.
        """
        if self.mode != "drill":
            return []
        return [p for p in self.plans if p.failover_started_at is not None and p.undo not in CLEAN_UNDO]

    @property
    def counts(self) -> dict[str, int]:
        """Plans per status; every status is present (zero included) so consumers need no defaults."""
        counts = dict.fromkeys(PLAN_STATUSES, 0)
        for p in self.plans:
            counts[p.status] += 1
        return counts

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


# ------------------------------------------------------------------------------------------ JSON


def report_to_json(report: DrillReport, integrity: Mapping[str, Any] | None = None) -> str:
    """The documented JSON form, ``schema_version`` first; ``integrity`` (hashes, see :func:`write_reports`) last."""
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **report.model_dump(mode="json")}
    if integrity is not None:
        data["integrity"] = integrity
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def report_from_json(data: str | bytes) -> DrillReport:
    """Parse a report written by :func:`report_to_json`; refuses other schema versions instead of guessing."""
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("drill report JSON must be an object")
    version = raw.pop("schema_version", None)
    raw.pop("integrity", None)  # about the files, not the drill: vaodrill.report.verify reads it
    if version != SCHEMA_VERSION:
        raise ValueError(f"unsupported drill report schema_version {version!r} (expected {SCHEMA_VERSION})")
    return DrillReport.model_validate(raw)


def load_report(path: Path | str) -> DrillReport:
    """Read a ``report.json`` (or a report directory containing one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    return report_from_json(path.read_bytes())


# ------------------------------------------------------------------------------------ formatting


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _line(text: str) -> str:
    """One display line: control characters (ANSI escapes from server logs) dropped, whitespace collapsed."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _fmt_time(value: datetime | None) -> str:
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


def _status_word(status: str) -> str:
    return status.replace("_", " ")


def rto_text(p: PlanResult) -> str:
    """``3m / 15m``, or with checks ``3m VAO, 3m20s verified / 15m``: achieved against the target."""
    if p.rto_verified_seconds is not None:
        return (f"{format_duration(p.rto_seconds)} VAO, {format_duration(p.rto_verified_seconds)} verified / "
                f"{format_duration(p.rto_target_seconds)}")
    return f"{format_duration(p.rto_seconds)} / {format_duration(p.rto_target_seconds)}"


def _fmt_rto(p: PlanResult) -> str:
    if p.rto_seconds is None and p.rto_target_seconds is None:
        return DASH
    text = rto_text(p)
    if p.rto_met is not None:
        text += " ✅" if p.rto_met else " ❌"
    return text


def _asked_for_restore_point(p: PlanResult) -> bool:
    """False for a plan that got no Run (skipped, refused): it never asked VAO for any restore point."""
    return p.failover_started_at is not None or (p.status != "skipped" and p.undo != "not_needed")


def _fmt_restore_point(p: PlanResult) -> str:
    if not _asked_for_restore_point(p):
        return DASH
    if p.restore_point and p.restore_point_rule:
        return f"{p.restore_point} ({p.restore_point_rule})"
    return p.restore_point or p.restore_point_rule or DASH


def _fmt_undo(p: PlanResult, left: set[int]) -> str:
    word = UNDO_WORDS.get(p.undo, p.undo)
    return f"{word.upper()} — left failed over" if id(p) in left else word


def _left_ids(report: DrillReport) -> set[int]:
    """Identities, not names, of the plans left failed over: names are not guaranteed unique."""
    return {id(p) for p in report.left_failed_over}


_NESTED = re.compile(r"(?P<head>[^()]+?) \((?P<inner>.*)\)")


def _without_plan(plan: str, text: str) -> str:
    """The message minus repeats of the plan name, which every place showing it already names.

    Drops ``<plan>: `` wherever a message part starts, then collapses ``halted (halted (x))`` to ``halted (x)``.
    """
    text = re.sub(r"(^|[(;]\s*)" + re.escape(plan) + r":\s*", r"\1", _line(text))
    while (m := _NESTED.fullmatch(text)) and (m["inner"] == m["head"] or m["inner"].startswith(m["head"] + " ")):
        text = m["inner"]
    return text


def _reason(p: PlanResult) -> str | None:
    return _without_plan(p.plan, p.reason) if p.reason else None


def plan_reasons(p: PlanResult) -> str:
    """Why the plan and its undo ended as they did, one line, without repeating the plan's name."""
    parts = [r] if (r := _reason(p)) else []
    if p.undo_reason:
        parts.append(f"undo {UNDO_WORDS.get(p.undo, p.undo)}: {_without_plan(p.plan, p.undo_reason)}")
    return "; ".join(parts)


#: The mark of a plan that passed with warnings, wherever its status is shown.
WARNING_MARK = "⚠️"


def _status_label(p: PlanResult) -> str:
    label = STATUS_LABELS.get(p.status, p.status)
    if p.warnings:
        label += f" {WARNING_MARK} {len(p.warnings)} warning{'s' if len(p.warnings) != 1 else ''}"
    return label


def _fmt_event(e: PlanEvent) -> str:
    if e.kind == "halt":
        where = f" at step {e.step}" if e.step is not None else ""
        return f"halted{where} at {_fmt_time(e.at)}" + (f" ({_line(e.details)})" if e.details else "")
    return f"Continue {e.option or DASH} sent at {_fmt_time(e.at)}" + (f": {_line(e.outcome)}" if e.outcome else "")


def plan_events(p: PlanResult) -> list[str]:
    """What happened to the plan beyond its status, one line each: halts and Continues in order, warnings,
    restore-point notes and the undo's own details; every report shows these lines."""
    lines = [_fmt_event(e) for e in p.events]
    lines += [_line(c) for c in check_lines(p.checks)]
    lines += [f"warning: {_line(w)}" for w in p.warnings]
    lines += [f"note: {_line(n)}" for n in p.notes]
    if p.undo_details:
        lines.append(f"undo details: {_line(p.undo_details)}")
    return lines


def _after(p: PlanResult) -> str:
    return ", ".join(_line(a) for a in p.after) or DASH


def table_rows(report: DrillReport) -> list[dict[str, str]]:
    """One flat row of strings per plan, for a Prefect table artifact."""
    left = _left_ids(report)
    return [
        {
            "plan": _line(p.plan),
            "status": _status_label(p),
            "after": _after(p),
            "restore_point_requested": _fmt_restore_point(p),
            "failover_started_at": _fmt_time(p.failover_started_at),
            "failover_completed_at": _fmt_time(p.failover_completed_at),
            "rto": _fmt_rto(p),
            "undo": _fmt_undo(p, left),
            "vao_details": _line(p.failover_details) if p.failover_details else DASH,
            "reason": _line(plan_reasons(p)),
            "events": "; ".join(plan_events(p)) or DASH,
        }
        for p in report.plans
    ]


# -------------------------------------------------------------------------------------- Markdown

_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&])")


def _md(text: str) -> str:
    """Escape inline Markdown/HTML so plan names and server messages render as text, on one line."""
    return _MD_SPECIAL.sub(r"\\\1", _line(text))


def _md_url(url: str | None) -> str:
    """An autolink; characters that would end it early are percent-encoded."""
    return f"<{quote(url, safe=_URL_SAFE)}>" if url else DASH


def _counts_line(report: DrillReport) -> str:
    parts = [f"{n} {_status_word(status)}" for status, n in report.counts.items() if n]
    total = len(report.plans)
    return f"{total} plan{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def _md_details(p: PlanResult) -> str | None:
    """One line of everything the table has no room for, or None when there is nothing to add."""
    parts = []
    if reason := _reason(p):
        parts.append(_md(reason))
    elif p.status != "passed":
        parts.append("no reason given")
    if p.failover_details and f"VAO: {p.failover_details}" not in p.warnings:  # else its warning line says it
        parts.append(f"VAO: {_md(p.failover_details)}")
    if p.undo_reason:
        parts.append(f"undo {UNDO_WORDS.get(p.undo, p.undo)}: {_md(_without_plan(p.plan, p.undo_reason))}")
    parts += [_md(line) for line in plan_events(p)]
    if not parts:
        return None
    return f"- **{_md(p.plan)}** ({_status_label(p)}): {'; '.join(parts)}"


def render_markdown(report: DrillReport) -> str:
    """An auditor-friendly report; a loud warning leads when a plan was left failed over."""
    ok = report.verdict == "passed"
    left = report.left_failed_over
    left_ids = {id(p) for p in left}
    out: list[str] = [f"# {'✅' if ok else '❌'} DR drill {_md(report.drill)}: {report.verdict.upper()}", ""]

    if left:
        out += [
            f"> 🚨 **WARNING: {len(left)} PLAN{'S' if len(left) != 1 else ''} LEFT FAILED OVER** 🚨",
            ">",
            "> These plans were failed over by the drill and were **not** verifiably put back. Workloads",
            "> may be running from the DR site. Undo the failover in VAO and verify each plan now:",
            ">",
        ]
        for p in left:
            detail = f" ({_md(_without_plan(p.plan, p.undo_reason))})" if p.undo_reason else ""
            out.append(f"> - **{_md(p.plan)}**: undo {UNDO_WORDS.get(p.undo, p.undo)}{detail}")
        out.append("")

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
        f"- **Started:** {_fmt_time(report.started_at)}",
        f"- **Finished:** {_fmt_time(report.finished_at)}",
        f"- **Duration:** {format_duration(report.duration_seconds)}",
        f"- **VAO server:** {_md_url(report.vao_server)}",
    ]
    if report.flow_run_url:
        out.append(f"- **Flow run:** {_md_url(report.flow_run_url)}")
    out.append(f"- **Plans:** {_counts_line(report)}")
    if report.stopped:
        out.append(f"- **Stopped early:** {STOPPED_WORDS.get(report.stopped, report.stopped)}")
    if report.reason:
        out.append(f"- **Reason:** {_md(report.reason)}")
    out += [f"- **{WARNING_MARK} Warning:** {_md(w)}" for w in report.warnings]
    out.append("")

    out += ["## Plans", ""]
    stage = STAGE_WORD.get(report.mode, "Failover")
    if report.plans:
        out += [
            f"| Plan | Status | After | Restore point requested¹ | {stage} started | {stage} completed "
            "| RTO achieved / target | Undo |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in report.plans:
            undo = _fmt_undo(p, left_ids)
            cells = [
                _md(p.plan),
                _status_label(p),
                _md(_after(p)),
                _md(_fmt_restore_point(p)),
                _fmt_time(p.failover_started_at),
                _fmt_time(p.failover_completed_at),
                _fmt_rto(p),
                f"**{undo}**" if id(p) in left_ids else undo,
            ]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", f"¹ Restore point requested: {RESTORE_POINT_NOTE}."]
    else:
        out.append("_No plans were run._")
    out.append("")

    details = [line for p in report.plans if (line := _md_details(p))]
    if details:
        out += ["## Details", "", *details, ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- JUnit

# Characters XML 1.0 cannot carry at all (not even escaped); ANSI escapes from server logs would be one.
_XML_ILLEGAL = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def _junit_details(p: PlanResult, left: set[int]) -> str:
    lines = [
        f"plan: {p.plan}",
        f"id: {p.id or DASH}",
        f"status: {_status_word(p.status)}",
        f"restore point requested: {_fmt_restore_point(p)}",
        f"failover started: {_fmt_time(p.failover_started_at)}",
        f"failover completed: {_fmt_time(p.failover_completed_at)}",
        f"RTO achieved / target: {_fmt_rto(p)}",
        f"undo: {_fmt_undo(p, left)}",
    ]
    if p.after:
        lines.append(f"after: {', '.join(p.after)}")
    if p.failover_details:
        lines.append(f"VAO details: {p.failover_details}")
    if reasons := plan_reasons(p):
        lines.append(f"reason: {reasons}")
    lines += plan_events(p)
    return _x("\n".join(lines))


def _junit_case_properties(p: PlanResult) -> Iterable[tuple[str, str]]:
    """A testcase's properties: what a CI shows beside a passed test (Jenkins, GitLab read them)."""
    yield from (("warning", w) for w in p.warnings)
    yield from ((e.kind, _fmt_event(e)) for e in p.events)
    yield from (("note", n) for n in p.notes)
    if p.undo_details:
        yield "undo_details", p.undo_details


def _junit_outcome(p: PlanResult, left: set[int]) -> tuple[str, dict[str, str]] | None:
    """The child element (tag, attributes) marking a non-passing testcase, or None if it passed."""
    if p.status in FAILING_STATUSES:
        return "failure", {"type": p.status, "message": _x(_reason(p) or _status_word(p.status))}
    if p.status == "skipped":
        return "skipped", {"message": _x(_reason(p) or "skipped")}
    if p.undo == "failed" or id(p) in left:
        message = _without_plan(p.plan, p.undo_reason) if p.undo_reason else f"undo {p.undo}: plan left failed over"
        return "failure", {"type": "cleanup", "message": _x(message)}
    return None


def render_junit(report: DrillReport) -> str:
    """JUnit XML: one testsuite per drill, one testcase per plan; time is the achieved RTO."""
    left = _left_ids(report)
    outcomes = [(p, _junit_outcome(p, left)) for p in report.plans]
    checks = [c for p in report.plans for c in p.checks]
    failures = sum(1 for _, o in outcomes if o and o[0] == "failure") + sum(
        1 for c in checks if c.critical and c.status == "failed")
    skipped = sum(1 for _, o in outcomes if o and o[0] == "skipped") + sum(1 for c in checks if c.status == "not_run")
    totals = {
        "tests": str(len(outcomes) + len(checks)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
        "time": f"{max(report.duration_seconds, 0.0):.3f}",
    }
    root = ET.Element("testsuites", {"name": _x(f"vaodrill.{report.drill}"), **totals})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": _x(report.drill),
            **totals,
            # JUnit's schema wants a local timestamp without offset; it is UTC.
            "timestamp": report.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in _junit_properties(report):
        ET.SubElement(props, "property", {"name": name, "value": _x(value)})

    for p, outcome in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": _x(f"vaodrill.{report.drill}"),
                "name": _x(p.plan),
                "time": f"{max(p.rto_seconds or 0.0, 0.0):.3f}",
            },
        )
        if case_props := list(_junit_case_properties(p)):
            props_el = ET.SubElement(case, "properties")
            for name, value in case_props:
                ET.SubElement(props_el, "property", {"name": name, "value": _x(value)})
        if outcome:
            tag, attrs = outcome
            el = ET.SubElement(case, tag, attrs)
            if tag == "failure":
                el.text = _x(plan_reasons(p) or _status_word(p.status))
        ET.SubElement(case, "system-out").text = _junit_details(p, left)
        junit_check_cases(suite, p.checks, _x(f"vaodrill.{report.drill}.{p.plan}"))

    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _junit_properties(report: DrillReport) -> Iterable[tuple[str, str]]:
    yield "run_id", report.run_id
    yield "mode", report.mode
    yield "verdict", report.verdict
    optional = {
        "reason": report.reason,
        "vao_server": report.vao_server,
        "flow_run_url": report.flow_run_url,
    }
    yield from ((k, v) for k, v in optional.items() if v)
    if report.left_failed_over:
        yield "left_failed_over", ", ".join(p.plan for p in report.left_failed_over)
    yield from (("warning", w) for w in report.warnings)


# ------------------------------------------------------------------------------------------ Rich

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
    left = _left_ids(report)
    ok = report.verdict == "passed"
    caption = [f"run {_line(report.run_id)} · {report.mode} · {_counts_line(report)}"]
    if report.stopped:
        caption.append(f"stopped early: {STOPPED_WORDS.get(report.stopped, report.stopped)}")
    caption += [f"{WARNING_MARK} warning: {_line(w)}" for w in report.warnings]
    caption.append(f"* {RESTORE_POINT_NOTE}")
    table = Table(
        title=Text.assemble(
            f"{_line(report.drill)} ",
            ("PASSED" if ok else "FAILED", "bold green" if ok else "bold red"),
        ),
        caption=Text("\n".join(caption)),
    )
    stage = STAGE_WORD.get(report.mode, "Failover")
    for header in ("Plan", "Status", "Restore point requested*", f"{stage} started", "RTO (achieved / target)",
                   "Undo"):
        table.add_column(header)
    table.add_column("Reason", overflow="fold")
    for p in report.plans:
        undo_style = "bold white on red" if id(p) in left else _UNDO_STYLE.get(p.undo, "")
        rto_style = "" if p.rto_met is None else ("green" if p.rto_met else "red")
        table.add_row(
            Text(_line(p.plan)),
            Text(_status_label(p), style="yellow" if p.warnings and p.status == "passed"
                 else _STATUS_STYLE.get(p.status, "")),
            Text(_line(_fmt_restore_point(p))),
            Text(_fmt_time(p.failover_started_at)),
            Text(_fmt_rto(p), style=rto_style),
            Text(_fmt_undo(p, left), style=undo_style),
            Text("\n".join(([r] if (r := _line(plan_reasons(p))) else []) + plan_events(p)), style="dim"),
        )
    return table


# ----------------------------------------------------------------------------- where a report lives


_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def _path_part(text: str) -> str:
    """A single safe path component: a drill called ``../prod`` must not write outside the directory."""
    part = _UNSAFE_PATH_CHARS.sub("_", text).strip("._") or "_"
    return part[:100]


def report_directory(report: DrillReport, directory: Path) -> Path:
    """``directory/<drill>/<YYYYmmddTHHMMSSZ>-<run_id[:8]>``, sortable by start time."""
    stamp = report.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(directory) / _path_part(report.drill) / f"{stamp}-{_path_part(report.run_id[:8])}"
