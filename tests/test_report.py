"""Drill report model and writers: the JSON schema is public, the warnings must be loud, the XML must parse."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError
from rich.console import Console

from vaodrill.report import files as files_mod
from vaodrill.report.files import write_reports
from vaodrill.report.junit import render_junit
from vaodrill.report.markdown import render_markdown
from vaodrill.report.model import (
    SCHEMA_VERSION,
    DrillReport,
    PlanResult,
    load_report,
    report_from_json,
    report_to_json,
)
from vaodrill.report.terminal import summary_table
from vaodrill.report.text import format_duration, table_rows
from vaodrill.report.timeline import render_svg

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
REPORT_FILES = ["evidence.html", "junit.xml", "report.json", "report.md", "timeline.svg"]

TOP_KEYS = {
    "schema_version", "drill", "run_id", "mode", "verdict", "started_at", "finished_at", "plans",
    "description", "vao_server", "flow_run_url", "reason", "stopped", "warnings",
}  # fmt: skip
PLAN_KEYS = {
    "plan", "id", "status", "reason", "after", "restore_point", "failover_started_at",
    "failover_completed_at", "rto_seconds", "rto_target_seconds", "rto_met", "undo",
    "restore_point_rule", "restore_point_seed", "undo_reason", "undo_completed_at", "failover_ended_at",
    "failover_details", "undo_details", "events", "warnings", "notes", "checks", "verified_at",
    "rto_verified_seconds",
}  # fmt: skip


def plan(name: str = "Web Tier", **kw: object) -> PlanResult:
    fields: dict[str, object] = {
        "plan": name,
        "id": f"id-{name}",
        "status": "passed",
        "undo": "verified",
        "restore_point": "2024-05-01 06:00:00",
        "restore_point_rule": "ago 6h",
        "restore_point_seed": 42,
        "failover_started_at": T0,
        "failover_completed_at": T0 + timedelta(seconds=252),
        "rto_seconds": 252.0,
        "rto_target_seconds": 2700.0,
        "rto_met": True,
        "undo_completed_at": T0 + timedelta(minutes=10),
    }
    fields.update(kw)
    return PlanResult.model_validate(fields)


def drill(*plans: PlanResult, **kw: object) -> DrillReport:
    fields: dict[str, object] = {
        "drill": "nightly",
        "run_id": "0123456789abcdef-run",
        "mode": "drill",
        "verdict": "passed",
        "started_at": T0,
        "finished_at": T0 + timedelta(minutes=47, seconds=3),
        "vao_server": "https://vao.example.com:9899",
        "plans": list(plans),
    }
    fields.update(kw)
    return DrillReport.model_validate(fields)


def mixed() -> DrillReport:
    return drill(
        plan("Web Tier"),
        plan("SQL Tier", status="failed", reason="RTO exceeded", undo="failed", undo_reason="VAO 500",
             rto_seconds=4000.0, rto_met=False),
        plan("App Tier", status="skipped", reason="upstream failed", undo="skipped", after=["SQL Tier"],
             failover_started_at=None, failover_completed_at=None, rto_seconds=None, rto_met=None),
        plan("Files", status="timed_out", reason="no answer in 2h", undo="verified"),
        plan("DNS", status="halted", reason="operator halt", undo="not_needed"),
        verdict="failed",
        reason="3 plans failed; cleanup could not be verified for: SQL Tier",
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ model


def test_json_round_trip_and_documented_key_set() -> None:
    report = mixed()
    data = json.loads(report_to_json(report))
    assert set(data) == TOP_KEYS
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert next(iter(data)) == "schema_version"
    assert all(set(p) == PLAN_KEYS for p in data["plans"])
    assert data["started_at"] == "2024-05-01T12:00:00Z"
    assert data["plans"][0]["restore_point"] == "2024-05-01 06:00:00"  # server wall time, untouched
    assert report_from_json(report_to_json(report)) == report


def test_datetimes_are_normalized_to_utc_and_naive_ones_rejected() -> None:
    cet = timezone(timedelta(hours=2))
    p = plan(failover_started_at=datetime(2024, 5, 1, 14, 0, tzinfo=cet))
    assert p.failover_started_at == T0
    assert p.failover_started_at is not None and p.failover_started_at.utcoffset() == timedelta(0)
    assert json.loads(report_to_json(drill(p)))["plans"][0]["failover_started_at"] == "2024-05-01T12:00:00Z"
    with pytest.raises(ValidationError):
        plan(failover_started_at=datetime(2024, 5, 1, 12, 0))


def test_unknown_fields_and_bad_literals_are_rejected() -> None:
    with pytest.raises(ValidationError):
        plan(undo="done")
    with pytest.raises(ValidationError):
        plan(rto_second=12)  # typo must not vanish silently
    with pytest.raises(ValidationError):
        plan(rto_seconds=float("nan"))


def test_vao_server_never_keeps_credentials() -> None:
    r = drill(vao_server="https://admin:hunter2@vao.example.com:9899/api?token=abc#x")
    assert r.vao_server == "https://vao.example.com:9899/api"
    assert drill(vao_server="admin:pw@vao:9899").vao_server == "vao:9899"
    assert "hunter2" not in report_to_json(r) + render_markdown(r) + render_junit(r)


def test_load_report_refuses_other_schema_versions(tmp_path: Path) -> None:
    data = json.loads(report_to_json(mixed()))
    data["schema_version"] = 2
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="schema_version 2"):
        load_report(path)


def test_left_failed_over_and_counts() -> None:
    report = drill(
        plan("ok"),
        plan("undo failed", status="failed", undo="failed"),
        plan("undo skipped", undo="skipped"),
        plan("never started", status="skipped", undo="skipped", failover_started_at=None),
        plan("nothing to undo", status="halted", undo="not_needed"),
    )
    assert [p.plan for p in report.left_failed_over] == ["undo failed", "undo skipped"]
    assert report.counts == {"passed": 2, "failed": 1, "skipped": 1, "halted": 1, "timed_out": 0, "interrupted": 0}
    # A real failover is supposed to stay failed over.
    assert report.model_copy(update={"mode": "failover"}).left_failed_over == []


# ----------------------------------------------------------------------------------------- Markdown


def test_markdown_warns_loudly_only_when_plans_are_left_failed_over() -> None:
    clean = render_markdown(drill(plan("Web Tier"), plan("SQL Tier", undo="not_needed")))
    assert "LEFT FAILED OVER" not in clean
    assert clean.startswith("# ✅ DR drill nightly: PASSED")
    assert (
        "| Web Tier | ✅ passed | — | 2024-05-01 06:00:00 (ago 6h) | 2024-05-01 12:00:00 UTC | 2024-05-01 12:04:12 UTC"
        " | 4m 12s / 45m ✅ | verified |"
    ) in clean
    assert "| SQL Tier | ✅ passed |" in clean and "| 4m 12s / 45m ✅ | not needed |" in clean
    assert "47m 03s" in clean and "https://vao.example.com:9899" in clean

    dirty = render_markdown(mixed())
    assert dirty.startswith("# ❌ DR drill nightly: FAILED")
    warning = dirty.split("## Plans")[0]
    assert "WARNING: 1 PLAN LEFT FAILED OVER" in warning
    assert "> - **SQL Tier**: undo failed (VAO 500)" in warning
    assert "1h 07m / 45m ❌" in dirty and "| **FAILED — left failed over** |" in dirty
    assert "- **Files** (⏱️ timed out): no answer in 2h" in dirty
    assert "- **App Tier** (⏭️ skipped): upstream failed" in dirty
    assert "- **SQL Tier** (❌ failed): RTO exceeded; undo failed: VAO 500" in dirty

    failover = render_markdown(mixed().model_copy(update={"mode": "failover"}))
    assert "LEFT FAILED OVER" not in failover and "intentionally left failed over" in failover


def test_markdown_escapes_table_breaking_text() -> None:
    md = render_markdown(drill(plan("Web|Tier <b>", status="failed", reason="bad\n| row", undo="verified")))
    assert "| Web\\|Tier \\<b\\> | ❌ failed |" in md
    assert "bad \\| row" in md
    assert all(line.count("|") - line.count("\\|") == 9 for line in md.splitlines() if line.startswith("| "))


def test_restore_point_is_shown_only_for_plans_that_asked_for_one() -> None:
    report = drill(
        plan("ran"),
        plan("skipped", status="skipped", undo="not_needed", failover_started_at=None),
        plan("refused", status="failed", reason="precondition: plan is Disabled", undo="not_needed",
             failover_started_at=None, failover_completed_at=None),
        # The Run was sent but its answer was an error: the request named a restore point.
        plan("run refused", status="failed", reason="Run refused: 500", undo="verified", failover_started_at=None),
        plan("real failover, not started", status="skipped", undo="not_needed", failover_started_at=None),
    )  # fmt: skip
    shown = {r["plan"]: r["restore_point_requested"] for r in table_rows(report)}
    assert shown == {
        "ran": "2024-05-01 06:00:00 (ago 6h)",
        "skipped": "—",
        "refused": "—",
        "run refused": "2024-05-01 06:00:00 (ago 6h)",
        "real failover, not started": "—",
    }
    md = render_markdown(report)
    assert "| refused | ❌ failed | — | — | — | — |" in md
    assert "Restore point requested¹" in md and "nearest restore point at or before it" in md
    junit = ET.fromstring(render_junit(report))
    out = junit.find(".//testcase[@name='skipped']/system-out")
    assert out is not None and "restore point requested: —" in (out.text or "")


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("App Tier: halted (App Tier: halted (step 2 of 5: VM not found))", "halted (step 2 of 5: VM not found)"),
        ("App Tier: timed out after 2h", "timed out after 2h"),
        ("halted (App Tier: no details)", "halted (no details)"),
        ("dependency 'App Tier' ended halted", "dependency 'App Tier' ended halted"),  # a name, not a repeat
        ("App Tiers: other plan", "App Tiers: other plan"),
        ("run (running late)", "run (running late)"),
    ],
)
def test_reasons_do_not_repeat_the_plan_name(reason: str, shown: str) -> None:
    report = drill(plan("App Tier", status="halted", reason=reason, undo="verified"))
    assert table_rows(report)[0]["reason"] == shown
    assert f"- **App Tier** (🛑 halted): {shown}" in render_markdown(report).replace("\\", "")
    failure = ET.fromstring(render_junit(report)).find(".//failure")
    assert failure is not None and failure.get("message") == shown


def test_undo_reason_and_left_failed_over_warning_drop_the_plan_name_too() -> None:
    report = drill(plan("SQL Tier", undo="failed", undo_reason="SQL Tier: cannot undo from Failback"))
    assert table_rows(report)[0]["reason"] == "undo failed: cannot undo from Failback"
    assert "> - **SQL Tier**: undo failed (cannot undo from Failback)" in render_markdown(report)


def test_every_status_has_an_icon_everywhere() -> None:
    statuses = ["passed", "failed", "halted", "skipped", "timed_out", "interrupted"]
    report = drill(*(plan(f"p{i}", status=s, undo="verified") for i, s in enumerate(statuses)))
    icons = ["✅ passed", "❌ failed", "🛑 halted", "⏭️ skipped", "⏱️ timed out", "⚠️ interrupted"]
    assert [r["status"] for r in table_rows(report)] == icons
    md = render_markdown(report)
    assert all(f"| p{i} | {icon} |" in md for i, icon in enumerate(icons))
    console = Console(record=True, width=300, color_system=None)
    console.print(summary_table(report))
    text = console.export_text()
    assert all(icon in text for icon in icons)
    assert "timed_out" not in md + text and "not_needed" not in md + text


def test_markdown_has_completion_dependencies_vao_details_and_why_the_drill_stopped() -> None:
    report = drill(
        plan("Core Network", failover_details="Complete, no errors, 1 warning"),
        plan("SQL Tier", after=["Core Network"], status="interrupted", reason="interrupted: signal",
             failover_completed_at=None, rto_seconds=None, rto_met=None, undo="verified"),
        verdict="failed", stopped="signal",
    )  # fmt: skip
    md = render_markdown(report)
    assert "| Failover completed |" in md.splitlines()[md.splitlines().index("## Plans") + 2]
    assert (
        "| Core Network | ✅ passed | — | 2024-05-01 06:00:00 (ago 6h) | 2024-05-01 12:00:00 UTC | "
        "2024-05-01 12:04:12 UTC |" in md
    )
    assert "| SQL Tier | ⚠️ interrupted | Core Network |" in md
    assert "- **Core Network** (✅ passed): VAO: Complete, no errors, 1 warning" in md
    assert "- **SQL Tier** (⚠️ interrupted): interrupted: signal" in md
    assert "- **Stopped early:** stopped by a signal (Ctrl-C or SIGTERM)" in md
    assert "Stopped early" not in render_markdown(report.model_copy(update={"stopped": None}))
    junit = ET.fromstring(render_junit(report)).find(".//testcase[@name='Core Network']/system-out")
    assert junit is not None and "VAO details: Complete, no errors, 1 warning" in (junit.text or "")
    assert table_rows(report)[0]["vao_details"] == "Complete, no errors, 1 warning"


def test_new_fields_round_trip_and_older_v1_reports_still_load() -> None:
    report = drill(
        plan(failover_details="Complete, 1 warning", failover_ended_at=T0 + timedelta(seconds=252)), stopped="auth"
    )
    assert report_from_json(report_to_json(report)) == report
    old = json.loads(report_to_json(mixed()))
    del old["stopped"]
    for p in old["plans"]:
        del p["failover_details"], p["failover_ended_at"]
    assert report_from_json(json.dumps(old)) == mixed()


# -------------------------------------------------------------------------------------------- JUnit


def test_junit_parses_with_right_counts_and_outcomes() -> None:
    root = ET.fromstring(render_junit(mixed()))
    suites = root.findall("testsuite")
    assert root.tag == "testsuites" and len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "nightly"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == (
        "5", "3", "1", "0",
    )  # fmt: skip
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["run_id"] == "0123456789abcdef-run"
    assert (props["mode"], props["verdict"], props["left_failed_over"]) == ("drill", "failed", "SQL Tier")

    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["Web Tier", "SQL Tier", "App Tier", "Files", "DNS"]
    assert cases["Web Tier"].get("classname") == "vaodrill.nightly"
    assert cases["Web Tier"].get("time") == "252.000"
    assert cases["App Tier"].get("time") == "0.000"
    assert cases["Web Tier"].find("failure") is None and cases["Web Tier"].find("skipped") is None
    failures = {name: f for name, c in cases.items() if (f := c.find("failure")) is not None}
    assert {n: (f.get("type"), f.get("message")) for n, f in failures.items()} == {
        "SQL Tier": ("failed", "RTO exceeded"),
        "Files": ("timed_out", "no answer in 2h"),
        "DNS": ("halted", "operator halt"),
    }
    skipped = cases["App Tier"].find("skipped")
    assert skipped is not None and skipped.get("message") == "upstream failed"


@pytest.mark.parametrize("undo", ["failed", "skipped"])
def test_junit_passed_plan_with_failed_cleanup_is_a_failure(undo: str) -> None:
    root = ET.fromstring(render_junit(drill(plan("ok"), plan("dirty", undo=undo, undo_reason="undo hung"))))
    failure = root.find(".//testcase[@name='dirty']/failure")
    assert failure is not None
    assert (failure.get("type"), failure.get("message")) == ("cleanup", "undo hung")
    assert root.find("testsuite").get("failures") == "1"  # type: ignore[union-attr]


def test_junit_escapes_special_and_illegal_characters() -> None:
    name = 'SQL <Tier> & "DB"'
    reason = "error <500> & 'boom'\x1b[31m\x00 done"
    xml = render_junit(drill(plan(name, status="failed", reason=reason, undo="verified"), drill='prod "a&b" <dr>'))
    root = ET.fromstring(xml)  # raises on an unescaped or illegal character
    case = root.find(".//testcase")
    assert case is not None and case.get("name") == name
    assert case.get("classname") == 'vaodrill.prod "a&b" <dr>'
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "error <500> & 'boom' [31m done"  # control characters dropped


# ------------------------------------------------------------------------------------ tables


def test_table_rows_are_flat_strings() -> None:
    rows = table_rows(mixed())
    assert len(rows) == 5
    assert all(isinstance(v, str) for row in rows for v in row.values())
    sql = rows[1]
    assert sql["undo"] == "FAILED — left failed over"
    assert sql["reason"] == "RTO exceeded; undo failed: VAO 500"
    assert rows[2]["rto"] == "— / 45m" and rows[2]["failover_started_at"] == "—"
    assert rows[2]["after"] == "SQL Tier" and rows[0]["after"] == "—"
    assert [r["status"] for r in rows] == ["✅ passed", "❌ failed", "⏭️ skipped", "⏱️ timed out", "🛑 halted"]
    assert rows[4]["undo"] == "not needed" and rows[0]["failover_completed_at"] == "2024-05-01 12:04:12 UTC"
    assert rows[0]["restore_point_requested"] == "2024-05-01 06:00:00 (ago 6h)"
    assert rows[2]["restore_point_requested"] == "—"  # skipped before any Run: it asked for nothing


def test_summary_table_does_not_interpret_markup_in_names() -> None:
    console = Console(record=True, width=200, color_system=None)
    console.print(summary_table(drill(plan("App [bold]x[/bold]"), mixed().plans[1])))
    text = console.export_text()
    assert "App [bold]x[/bold]" in text
    assert "FAILED — left failed over" in text and "nightly PASSED" in text
    assert "Restore point requested*" in text and "nearest restore point at or before it" in text


# -------------------------------------------------------------------------------------------- files


def test_write_reports_layout_and_round_trip(tmp_path: Path) -> None:
    report = mixed()
    files = write_reports(report, tmp_path)
    assert files.directory == tmp_path / "nightly" / "20240501T120000Z-01234567"
    assert (files.json, files.markdown, files.junit, files.timeline) == (
        files.directory / "report.json", files.directory / "report.md", files.directory / "junit.xml",
        files.directory / "timeline.svg",
    )  # fmt: skip
    assert sorted(os.listdir(files.directory)) == REPORT_FILES  # no temp files
    assert load_report(files.json) == report == load_report(files.directory)
    assert files.markdown.read_text(encoding="utf-8") == render_markdown(report)
    ET.parse(files.junit)
    assert files.timeline is not None
    assert files.timeline.read_text(encoding="utf-8") == render_svg(report)
    assert len(ET.parse(files.timeline).getroot().findall(".//{http://www.w3.org/2000/svg}g[@data-plan]")) == 5

    # Writing the same run again replaces the files in place.
    files2 = write_reports(report.model_copy(update={"verdict": "passed"}), tmp_path)
    assert files2 == files and load_report(files.json).verdict == "passed"


def test_write_reports_keeps_hostile_names_inside_the_directory(tmp_path: Path) -> None:
    files = write_reports(drill(plan(), drill="../../etc", run_id="../x/y"), tmp_path / "out")
    assert files.directory.resolve().is_relative_to((tmp_path / "out").resolve())
    assert files.directory.parent.name == "etc"


def test_text_utf8_cannot_carry_still_gives_every_report_file(tmp_path: Path) -> None:
    # A server's JSON can carry "\\ud800", which Python decodes to a lone surrogate.
    report = drill(plan("x\ud800", status="failed", reason="bad \ud800 answer", undo="verified"))
    assert report.plans[0].plan == "x?"
    files = write_reports(report, tmp_path)
    assert sorted(os.listdir(files.directory)) == REPORT_FILES
    assert load_report(files.json).plans[0].reason == "bad ? answer"
    ET.parse(files.junit)
    assert files.timeline is not None
    ET.parse(files.timeline)


def test_write_is_atomic_when_rendering_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = mixed()
    files = write_reports(report, tmp_path)
    before = files.json.read_bytes()

    def boom(text: str) -> int:
        raise OSError("disk full")

    real_fdopen = os.fdopen

    def fdopen(*args: object, **kw: object):  # type: ignore[no-untyped-def]
        f = real_fdopen(*args, **kw)  # type: ignore[call-overload]
        f.write = boom
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)  # the very module report/files.py writes through
    with pytest.raises(OSError, match="disk full"):
        write_reports(report.model_copy(update={"verdict": "passed"}), tmp_path)
    assert files.json.read_bytes() == before  # old report intact, not truncated
    assert sorted(os.listdir(files.directory)) == REPORT_FILES  # temp cleaned


def test_a_timeline_that_cannot_be_drawn_costs_no_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    report = mixed()
    first = write_reports(report, tmp_path)
    assert first.timeline is not None and first.timeline.exists()

    def broken(report: DrillReport) -> str:
        raise ZeroDivisionError("drawing bug")

    monkeypatch.setattr(files_mod, "render_svg", broken)  # the name write_reports draws with
    files = write_reports(report.model_copy(update={"verdict": "passed"}), tmp_path)
    assert files.timeline is None and load_report(files.json).verdict == "passed"
    # The picture of the earlier write is gone rather than shown beside a report it no longer matches.
    assert sorted(os.listdir(files.directory)) == ["evidence.html", "junit.xml", "report.json", "report.md"]
    assert "timeline could not be drawn" in caplog.text


# ---------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "—"),
        (float("nan"), "—"),
        (0, "0s"),
        (0.4, "0s"),
        (45, "45s"),
        (59.4, "59s"),
        (59.6, "1m"),
        (60, "1m"),
        (252, "4m 12s"),
        (245, "4m 05s"),
        (2700, "45m"),
        (3599.4, "59m 59s"),
        (3600, "1h"),
        (3720, "1h 02m"),
        (3749, "1h 02m"),
        (3750, "1h 03m"),
        (90000, "25h"),
        (-5, "-5s"),
    ],
)
def test_format_duration(seconds: float | None, expected: str) -> None:
    assert format_duration(seconds) == expected
