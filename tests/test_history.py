"""``vaodrill history`` as a user runs it, over report files generated here: passes, failures, a regression, an
overdue plan, a plan never drilled, an old-schema file, a torn file and a foreign one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import html5lib
import pytest

from vaodrill.report.model import DrillReport, PlanResult, PlanStatus, report_directory, report_to_json

VAODRILL = str(Path(sys.executable).parent / "vaodrill")
NOW = datetime.now(UTC)
POLICY = "history: {max_age: 90d, rto_regression: 25%}\n"
PLANS = ["Failing", "Never", "Regressed", "Steady"]


def plan(name: str, status: PlanStatus, rto: float | None) -> PlanResult:
    return PlanResult(
        plan=name,
        status=status,
        undo="verified" if status == "passed" else "not_needed",
        rto_seconds=rto,
        rto_target_seconds=600.0,
        rto_met=None if rto is None else rto <= 600,
    )


def write(root: Path, days_ago: float, plans: list[PlanResult], run_id: str) -> Path:
    start = NOW - timedelta(days=days_ago)
    report = DrillReport(
        drill="nightly",
        run_id=run_id,
        mode="drill",
        started_at=start,
        finished_at=start + timedelta(hours=1),
        plans=plans,
        verdict="passed" if all(p.status == "passed" for p in plans) else "failed",
    )
    folder = report_directory(report, root)
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(report_to_json(report))
    return folder


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """Six weekly-ish runs: Steady passes at 300 s; Regressed passes at 300 s, then 450 s (+50%); Failing passed
    200 days ago and has failed three times since. Plus three files that are not readable reports."""
    root = tmp_path / "reports"
    for i, days in enumerate([250, 200, 60, 40, 20, 10]):
        last = i == 5
        failing: PlanResult | None = plan("Failing", "passed", 280.0) if i < 2 else plan("Failing", "failed", None)
        if i in (2, 3):  # Failing was not in these two runs' scope
            failing = None
        plans = [plan("Steady", "passed", 300.0 + i), plan("Regressed", "passed", 450.0 if last else 300.0)]
        write(root, days, plans + ([failing] if failing else []), f"run-{i}")
    write(root, 30, [plan("Failing", "failed", None)], "run-x")
    old = write(root, 5, [plan("Steady", "passed", 1.0)], "old-schema")
    (old / "report.json").write_text(json.dumps({"schema_version": 0, "drill": "nightly", "plans": []}))
    (write(root, 4, [plan("Steady", "passed", 1.0)], "torn") / "report.json").write_text('{"schema_version": 1, "dri')
    (write(root, 3, [plan("Steady", "passed", 1.0)], "foreign") / "report.json").write_text("[1, 2, 3]")
    (root / "journal").mkdir()
    (root / "journal" / "run-1.jsonl").write_text("{}\n")  # journals are not reports
    return root


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text("name: nightly\n" + POLICY + "plans: [" + ", ".join(PLANS) + "]\n")
    return path


def history(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "COLUMNS": "250", "VAODRILL_CACHE_DIR": str(cache)}
    return subprocess.run([VAODRILL, "history", *args], capture_output=True, text=True, timeout=60, env=env)


def test_json_has_the_figures_and_names_every_skipped_file(reports: Path, spec: Path, tmp_path: Path) -> None:
    result = history("--report-dir", str(reports), "--spec", str(spec), "--json", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plans = {p["plan"]: p for p in data["plans"]}
    assert sorted(plans) == PLANS and data["flagged"] == 3
    steady, regressed, failing, never = (plans[n] for n in ("Steady", "Regressed", "Failing", "Never"))
    assert (steady["runs"], steady["passes"], steady["failure_streak"]) == (6, 6, 0)
    assert steady["last_good_rto_seconds"] == 305.0 and steady["margin_seconds"] == 295.0
    assert (steady["rto_min_seconds"], steady["rto_max_seconds"]) == (300.0, 305.0)
    assert steady["overdue"] is None and steady["regressed"] is None
    assert round(steady["days_since_good"]) == 10
    assert regressed["baseline_rto_seconds"] == 300.0 and regressed["margin_seconds"] == 150.0
    assert regressed["regressed"] == "RTO 7m 30s is 50% over the median 5m of its 5 passed drills before (max 25%)"
    assert regressed["overdue"] is None
    assert (failing["runs"], failing["passes"], failing["failures"], failing["failure_streak"]) == (5, 2, 3, 3)
    assert failing["overdue"] == "last passed 200 days ago (max 90)" and failing["last_status"] == "failed"
    assert [t["status"] for t in failing["trend"]] == ["passed", "passed", "failed", "failed", "failed"]
    assert never["runs"] == 0 and never["overdue"] == "never drilled"
    skipped = {Path(s["path"]).parent.name.split("-", 1)[1]: s["reason"] for s in data["skipped"]}
    assert skipped == {
        "old-sche": "schema_version 0, this vaodrill reads 1",
        "torn": "not JSON, torn or foreign (Unterminated string starting at: line 1 column 23 (char 22))",
        "foreign": "not a vaodrill drill report",
    }
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3 and all(w.startswith("warning: skipped ") for w in warnings)
    assert "Traceback" not in result.stderr


def test_the_table_shows_trend_streak_and_flags(reports: Path, spec: Path, tmp_path: Path) -> None:
    result = history("--report-dir", str(reports), "--spec", str(spec), cache=tmp_path / "cache")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0])[:4] == ["Drill", "Plan", "Runs", "Passed"]
    rows = {cells[1]: cells for cells in (re.split(r"\s{2,}", line) for line in lines[1:5])}
    assert rows["Steady"][2:4] == ["6", "6"] and rows["Steady"][7] == "██████" and rows["Steady"][10] == "—"
    assert rows["Regressed"][7] == "▆▆▆▆▆█" and rows["Regressed"][10].startswith("REGRESSED: RTO 7m 30s")
    assert rows["Failing"][7] == "██✗✗✗" and rows["Failing"][9] == "3 runs"
    assert rows["Failing"][10].startswith("OVERDUE: last passed 200 days ago")
    assert rows["Never"][2] == "0" and rows["Never"][10] == "OVERDUE: never drilled"
    assert lines[6].startswith("4 plans, 3 flagged.")
    assert "\x1b[" not in result.stdout  # no colour in a pipe


def test_check_exits_1_naming_each_flagged_plan(reports: Path, spec: Path, tmp_path: Path) -> None:
    result = history("--report-dir", str(reports), "--spec", str(spec), "--check", cache=tmp_path / "cache")
    assert result.returncode == 1
    named = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert named == [
        "nightly / Failing: overdue (last passed 200 days ago (max 90))",
        "nightly / Never: overdue (never drilled)",
        "nightly / Regressed: regressed (RTO 7m 30s is 50% over the median 5m of its 5 passed drills before (max 25%))",
    ]
    # The default policy (365 days, no regression check) flags nothing here; --plan narrows what is checked.
    assert history("--report-dir", str(reports), "--check", cache=tmp_path / "cache").returncode == 0
    only = history(
        "--report-dir", str(reports), "--spec", str(spec), "--check", "--plan", "Steady", cache=tmp_path / "cache"
    )
    assert only.returncode == 0, only.stderr


def test_filters_and_html(reports: Path, tmp_path: Path) -> None:
    page = tmp_path / "history.html"
    result = history(
        "--report-dir",
        str(reports),
        "--since",
        (NOW - timedelta(days=45)).date().isoformat(),
        "--plan",
        "Failing",
        "--json",
        "--html",
        str(page),
        cache=tmp_path / "cache",
    )
    data = json.loads(result.stdout)
    assert [(p["plan"], p["runs"], p["passes"]) for p in data["plans"]] == [("Failing", 3, 0)]
    doc = html5lib.HTMLParser(strict=True).parse(page.read_text())
    assert "never passed in 3 runs" in "".join(doc.itertext())
    assert len(doc.findall(".//{http://www.w3.org/2000/svg}svg")) == 1
    xhtml = "{http://www.w3.org/1999/xhtml}"
    heads = ["".join(th.itertext()) for th in doc.iter(f"{xhtml}th")]
    cells = ["".join(td.itertext()) for td in doc.iter(f"{xhtml}td")]
    table = history("--report-dir", str(reports), "--plan", "Failing", cache=tmp_path / "cache").stdout.splitlines()
    assert heads == re.split(r"\s{2,}", table[0])  # the page's columns are the terminal's, in the same order
    assert cells[heads.index("Failing for")] == "3 runs" and cells[heads.index("Runs")] == "3"


def test_the_index_follows_the_files(reports: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = json.loads(history("--report-dir", str(reports), "--json", cache=cache).stdout)
    assert list(cache.glob("history-*.sqlite"))
    folder = write(reports, 1, [plan("Steady", "failed", None)], "new-run")
    second = json.loads(history("--report-dir", str(reports), "--json", cache=cache).stdout)
    steady = {p["plan"]: p for p in second["plans"]}["Steady"]
    assert (steady["runs"], steady["failure_streak"]) == (7, 1)
    (folder / "report.json").unlink()
    (folder / "report.json").write_text("not json")
    third = json.loads(history("--report-dir", str(reports), "--json", cache=cache).stdout)
    assert third["plans"] == first["plans"] and len(third["skipped"]) == 4
    for sqlite in cache.glob("*"):
        sqlite.unlink()
    assert json.loads(history("--report-dir", str(reports), "--json", cache=cache).stdout)["plans"] == first["plans"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--since", "last tuesday"], "--since: not a date: 'last tuesday'"),
        (["--since", "2026-13-01"], "--since: not a date"),
        (["--spec", "/nonexistent.yaml"], "nonexistent.yaml"),
        (["--frobnicate"], "No such option"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(reports: Path, tmp_path: Path, args: list[str], fragment: str) -> None:
    result = history("--report-dir", str(reports), *args, cache=tmp_path / "cache")
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr


def test_an_empty_report_dir(tmp_path: Path) -> None:
    result = history("--report-dir", str(tmp_path / "none"), "--check", cache=tmp_path / "cache")
    assert result.returncode == 0 and "no drill reports under" in result.stderr
