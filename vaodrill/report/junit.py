"""The JUnit XML report, for Jenkins and GitLab: one testsuite per drill, one testcase per plan."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from vaodrill.report.checks import junit_check_cases
from vaodrill.report.model import DASH, FAILING_STATUSES, DrillReport, PlanResult
from vaodrill.report.text import (
    fmt_event,
    fmt_reason,
    fmt_restore_point,
    fmt_rto,
    fmt_time,
    fmt_undo,
    left_ids,
    plan_events,
    plan_reasons,
    status_word,
    without_plan,
)

__all__ = ["render_junit"]

_XML_ILLEGAL = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def _junit_details(p: PlanResult, left: set[int]) -> str:
    lines = [
        f"plan: {p.plan}",
        f"id: {p.id or DASH}",
        f"status: {status_word(p.status)}",
        f"restore point requested: {fmt_restore_point(p)}",
        f"failover started: {fmt_time(p.failover_started_at)}",
        f"failover completed: {fmt_time(p.failover_completed_at)}",
        f"RTO achieved / target: {fmt_rto(p)}",
        f"undo: {fmt_undo(p, left)}",
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
    yield from ((e.kind, fmt_event(e)) for e in p.events)
    yield from (("note", n) for n in p.notes)
    if p.undo_details:
        yield "undo_details", p.undo_details


def _junit_outcome(p: PlanResult, left: set[int]) -> tuple[str, dict[str, str]] | None:
    """The child element (tag, attributes) marking a non-passing testcase, or None if it passed."""
    if p.status in FAILING_STATUSES:
        return "failure", {"type": p.status, "message": _x(fmt_reason(p) or status_word(p.status))}
    if p.status == "skipped":
        return "skipped", {"message": _x(fmt_reason(p) or "skipped")}
    if p.undo == "failed" or id(p) in left:
        message = without_plan(p.plan, p.undo_reason) if p.undo_reason else f"undo {p.undo}: plan left failed over"
        return "failure", {"type": "cleanup", "message": _x(message)}
    return None


def render_junit(report: DrillReport) -> str:
    """JUnit XML: one testsuite per drill, one testcase per plan; time is the achieved RTO."""
    left = left_ids(report)
    outcomes = [(p, _junit_outcome(p, left)) for p in report.plans]
    checks = [c for p in report.plans for c in p.checks]
    failures = sum(1 for _, o in outcomes if o and o[0] == "failure") + sum(
        1 for c in checks if c.critical and c.status == "failed"
    )
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
                el.text = _x(plan_reasons(p) or status_word(p.status))
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
