"""Every event of a plan reaches every report: a drill over the simulator (no Prefect), then the files read back.

Halts and Continues, VAO's warnings, restore-point notes and the server-zone warning must each show in
report.json, report.md, junit.xml, the CLI table and the evidence pack, not only in the journal.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console

from tests.conftest import Sim
from tests.test_engine import by_name, drill, write_spec
from vaodrill.engine.drill import Drill
from vaodrill.report.model import DrillReport, load_report, report_directory
from vaodrill.report.terminal import summary_table
from vaodrill.spec.loader import load_spec
from vaodrill.vao.connection import ConnectionSettings


class Files:
    """One run's report files, read back as a reader would."""

    def __init__(self, report: DrillReport, root: Path) -> None:
        directory = report_directory(report, root)
        self.json: dict[str, Any] = json.loads((directory / "report.json").read_text())
        self.markdown = (directory / "report.md").read_text()
        self.junit = ET.parse(directory / "junit.xml").getroot()
        self.evidence = (directory / "evidence.html").read_text()
        self.loaded = load_report(directory)
        console = Console(record=True, width=400, color_system=None)
        console.print(summary_table(self.loaded))
        self.table = console.export_text()

    def plan(self, name: str) -> dict[str, Any]:
        return next(p for p in self.json["plans"] if p["plan"] == name)

    def case(self, name: str) -> ET.Element:
        return next(c for c in self.junit.iter("testcase") if c.get("name") == name)

    def case_properties(self, name: str) -> list[tuple[str, str]]:
        return [(p.get("name", ""), p.get("value", "")) for p in self.case(name).iter("property")]

    def table_line(self, name: str) -> str:
        return next(line for line in self.table.splitlines() if f" {name} " in line)


async def test_a_halt_and_its_continue_reach_every_report(sim: Sim, tmp_path: Path) -> None:
    sim.patch("App Tier", halt_at_step=2)
    report, _, _ = await drill(sim, tmp_path, on_halt="{continue: RetryFailedStep, max: 1}")
    assert report.verdict == "passed", report.reason
    files = Files(report, tmp_path / "reports")

    events = files.plan("App Tier")["events"]
    assert [e["kind"] for e in events] == ["halt", "continue"]
    assert events[0]["step"] == 2 and "step 2" in events[0]["details"]
    assert events[1]["option"] == "RetryFailedStep" and events[1]["outcome"] in ("resumed", "completed")
    assert events[0]["at"] <= events[1]["at"]
    assert files.plan("Web Tier")["events"] == []
    assert files.loaded.plans[3].events[1].option == "RetryFailedStep"

    app_line = next(line for line in files.markdown.splitlines() if line.startswith("- **App Tier**"))
    assert "halted at step 2" in app_line and "Continue RetryFailedStep" in app_line
    names = [n for n, _ in files.case_properties("App Tier")]
    assert names == ["halt", "continue"]
    out = files.case("App Tier").findtext("system-out") or ""
    assert "halted at step 2" in out and "Continue RetryFailedStep" in out
    assert "halted at step 2" in files.table and "Continue RetryFailedStep" in files.table
    assert "halted at step 2" in files.evidence and "Continue RetryFailedStep" in files.evidence


async def test_a_failover_complete_with_warnings_is_marked(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Reporting", warnings=1)
    report, _, _ = await drill(sim, tmp_path)
    assert report.verdict == "passed", report.reason
    reporting = by_name(report)["Reporting"]
    assert reporting.status == "passed" and reporting.failover_details == "Complete, 1 warnings"
    files = Files(report, tmp_path / "reports")

    assert files.plan("Reporting")["warnings"] == ["VAO: Complete, 1 warnings"]
    assert files.plan("SQL Tier")["warnings"] == []
    assert "⚠️ 1 warning" in files.table_line("Reporting")
    assert "⚠️" not in files.table_line("SQL Tier")
    assert ("warning", "VAO: Complete, 1 warnings") in files.case_properties("Reporting")
    assert files.case_properties("SQL Tier") == []
    assert files.case("Reporting").find("failure") is None  # a warning is not a failure
    row = next(line for line in files.markdown.splitlines() if line.startswith("| Reporting "))
    assert "⚠️ 1 warning" in row
    assert "warning: VAO: Complete, 1 warnings" in files.evidence


async def test_restore_point_notes_reach_every_report(sim: Sim, tmp_path: Path) -> None:
    plans = """
      - plan: Core Network
        restore_point: {at: "2099-01-01 00:00"}
      - plan: Active Directory
    """
    report, _, _ = await drill(sim, tmp_path, plans)
    files = Files(report, tmp_path / "reports")
    note = files.plan("Core Network")["notes"]
    assert len(note) == 1 and "is after now" in note[0]
    assert files.plan("Active Directory")["notes"] == []
    assert f"note: {note[0]}" in files.markdown
    assert ("note", note[0]) in files.case_properties("Core Network")
    assert "is after now" in files.table_line("Core Network")
    assert "is after now" in files.evidence


async def test_a_repeated_hour_on_the_server_is_a_note(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory("demo", time_scale=600)
    sim.patch("Core Network", restore_points=["2026-10-24T22:00:00Z"])  # one before the date asked
    plans = """
      - plan: Core Network
        restore_point: {at: "2026-10-25 02:30"}
    """
    spec = load_spec(write_spec(tmp_path, plans, timezone="Europe/Berlin"))
    settings = ConnectionSettings(
        url=sim.api_url, username="demo", password=SecretStr("demo"), simulated=True, server_timezone="Europe/Berlin"
    )
    report = await Drill(spec, settings, run_id="dst", report_dir=tmp_path / "reports").run()
    assert report.verdict == "passed", report.reason
    files = Files(report, tmp_path / "reports")
    notes = files.plan("Core Network")["notes"]
    assert notes and any("2026-10-25" in n and "02:30" in n for n in notes), notes
    assert all(f"note: {n}" in files.markdown for n in notes)
    assert [v for k, v in files.case_properties("Core Network") if k == "note"] == notes
    assert report.warnings == []  # the server's zone is set: nothing to warn about


async def test_a_server_zone_left_unset_is_a_warning_in_the_report(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAO_TIMEZONE", raising=False)
    report, _, _ = await drill(sim, tmp_path, timezone="America/New_York")
    files = Files(report, tmp_path / "reports")
    assert report.verdict == "passed"
    (warning,) = files.json["warnings"]
    assert "UTC assumed" in warning and "America/New_York" in warning and "VAO_TIMEZONE" in warning
    (line,) = [line for line in files.markdown.splitlines() if line.startswith("- **⚠️ Warning:**")]
    assert "UTC assumed" in line and "America/New\\_York" in line  # Markdown-escaped
    assert ("warning", warning) in [
        (p.get("name"), p.get("value")) for p in files.junit.find("testsuite/properties") or []
    ]
    assert "UTC assumed" in files.table
    assert "UTC assumed" in files.evidence


async def test_a_utc_drill_has_no_zone_warning(sim: Sim, tmp_path: Path) -> None:
    report, _, _ = await drill(sim, tmp_path, "  - plan: Core Network\n")
    assert report.warnings == []
    assert "warnings" in Files(report, tmp_path / "reports").json


def test_an_old_report_without_the_new_fields_still_loads(tmp_path: Path) -> None:
    old = {
        "schema_version": 1,
        "drill": "d",
        "run_id": "r",
        "mode": "drill",
        "verdict": "passed",
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:10:00Z",
        "plans": [{"plan": "P", "status": "passed", "undo": "verified"}],
    }
    (tmp_path / "report.json").write_text(json.dumps(old))
    report = load_report(tmp_path)
    assert report.warnings == [] and report.plans[0].events == [] and report.plans[0].notes == []
    assert report.plans[0].undo_details is None
