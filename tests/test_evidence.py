"""The evidence pack (evidence.html): the demo drill's pack parsed as HTML and rendered by headless Chromium to PNG
and PDF; its deficiencies, history and hashes from reports built here."""

from __future__ import annotations

import asyncio
import hashlib
import re
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import html5lib
import pytest
from pydantic import SecretStr

from vaodrill.engine.drill import Drill
from vaodrill.report.evidence import evidence_hashes, render_evidence
from vaodrill.report.files import write_reports
from vaodrill.report.model import DrillReport, PlanResult
from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer
from vaodrill.spec.loader import load_spec
from vaodrill.vao.connection import ConnectionSettings

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = [
    "Test and scope",
    "Scenario",
    "Timeline",
    "Results per plan",
    "Approvals",
    "Deficiencies",
    "History",
    "Calls to VAO",
    "Integrity",
]
NS = {"h": "http://www.w3.org/1999/xhtml"}


@pytest.fixture(scope="module")
def demo_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """evidence.html of the demo drill (deployments/drills/demo.yaml) run by the engine against the simulator."""
    tmp = tmp_path_factory.mktemp("demo")
    with BackgroundServer(create_app("demo", time_scale=600)) as server:
        settings = ConnectionSettings(url=server.url, username="demo", password=SecretStr("demo"), simulated=True)
        drill = Drill(
            load_spec(ROOT / "deployments" / "drills" / "demo.yaml"), settings, run_id="demo-run", report_dir=tmp
        )
        report = asyncio.run(drill.run())
    assert report.verdict == "passed", report.reason
    return next(tmp.glob("demo-app-stack/*/evidence.html"))


def _text(element: object) -> str:
    return "".join(element.itertext())  # type: ignore[attr-defined]


def test_the_demo_pack_is_valid_self_contained_html(demo_pack: Path) -> None:
    page = demo_pack.read_text(encoding="utf-8")
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=True)
    doc = parser.parse(page)  # strict: raises on any parse error
    headings = [_text(h) for h in doc.iterfind(".//h:h2", NS)]
    assert [h.split(" (")[0] for h in headings] == SECTIONS
    assert not doc.findall(".//h:script", NS) and not doc.findall(".//h:link", NS)
    assert not doc.findall(".//h:img", NS) and not doc.findall(".//h:iframe", NS)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "no network"
    text = _text(doc)
    assert "demo-run" in text and "PASSED" in text and "vaodrill version" in text
    tables = doc.findall(".//h:table", NS)  # scenario, results, ...
    plan_rows = [[_text(td) for td in tr.findall("h:td", NS)] for tr in tables[1].findall(".//h:tbody/h:tr", NS)]
    assert [r[0] for r in plan_rows] == [
        "Core Network",
        "Active Directory",
        "SQL Tier",
        "App Tier",
        "Web Tier",
        "Reporting",
    ]
    assert all("passed" in r[1] and "met" in r[4] and r[7].startswith("verified") for r in plan_rows)
    assert "None: every plan passed" in text
    calls = [[_text(td) for td in tr.findall("h:td", NS)] for tr in tables[-2].findall(".//h:tbody/h:tr", NS)]
    assert calls[0][1:] == ["—", "drill started"]
    whats = [c[2] for c in calls]
    assert all(whats.count(w) == 6 for w in ("Run sent", "Run answered OK", "Undo sent", "Undo answered OK"))
    svgs = doc.findall(".//{http://www.w3.org/2000/svg}svg")
    assert len(svgs) == 1 + 6  # the timeline and a trend per plan
    hashes = evidence_hashes(page)
    assert set(hashes) == {"report.json", "report.md", "junit.xml", "timeline.svg"}
    for name, digest in hashes.items():
        assert hashlib.sha256((demo_pack.parent / name).read_bytes()).hexdigest() == digest


def _chromium(*args: str) -> None:
    assert CHROMIUM.exists(), "install Chromium: .ci/install-chromium"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-pdf-header-footer",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_the_demo_pack_renders_to_png_and_pdf(demo_pack: Path, tmp_path: Path) -> None:
    png, pdf = tmp_path / "pack.png", tmp_path / "pack.pdf"
    _chromium("--window-size=1280,1800", f"--screenshot={png}", demo_pack.as_uri())
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1280, 1800)
    assert png.stat().st_size > 50_000  # a page of text and pictures, not a blank screen
    _chromium(f"--print-to-pdf={pdf}", demo_pack.as_uri())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 2


# -- reports built here -------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def plan(name: str, status: str = "passed", rto: float | None = 300.0, **extra: object) -> PlanResult:
    started = T0 + timedelta(minutes=1)
    fields: dict[str, object] = {
        "plan": name,
        "status": status,
        "undo": "verified",
        "rto_seconds": rto,
        "rto_target_seconds": 600.0,
        "failover_started_at": started,
    }
    if rto is not None:
        fields.update(failover_completed_at=started + timedelta(seconds=rto), rto_met=rto <= 600)
    return PlanResult.model_validate({**fields, **extra})


def report(plans: list[PlanResult], *, day: int = 0, run_id: str = "r0") -> DrillReport:
    start = T0 + timedelta(days=day)
    bad = any(p.status != "passed" or p.undo == "failed" for p in plans)
    return DrillReport(
        drill="nightly",
        run_id=run_id,
        mode="drill",
        verdict="failed" if bad else "passed",
        started_at=start,
        finished_at=start + timedelta(hours=1),
        plans=plans,
    )


def test_every_deficiency_gets_an_action_line_and_names_are_escaped(tmp_path: Path) -> None:
    plans = [
        plan("<script>alert(1)</script>"),
        plan("Slow", rto=900.0),
        plan("Warned", failover_details="Complete, no errors, 1 warning"),
        plan("Halted", status="halted", rto=None, reason="halted at step 3"),
        plan("Dirty", undo="failed", undo_reason="undo failed: VAO said no"),
    ]
    page = render_evidence(
        report(plans), root=tmp_path, hashes={}, journal_head=None, journal_path=None, timeline_svg=None
    )
    doc = html5lib.HTMLParser(strict=True).parse(page)
    assert not doc.findall(".//h:script", NS) and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    table = doc.findall(".//h:table", NS)[2]  # scenario, results, deficiencies
    heads = [_text(th) for th in table.findall(".//h:th", NS)]
    assert heads == ["Plan", "Deficiency", "Action", "Owner", "Due"]
    rows = [[_text(td) for td in tr.findall("h:td", NS)] for tr in table.findall(".//h:tbody/h:tr", NS)]
    assert [(r[0], r[1].split(":")[0]) for r in rows] == [
        ("Slow", "RTO target missed"),
        ("Warned", "VAO reported"),
        ("Halted", "halted"),
        ("Dirty", "cleanup not verified"),
    ]
    assert all(r[2:] == ["", "", ""] for r in rows)
    assert "PLAN(S) LEFT FAILED OVER" in page and "No journal" in page


def test_the_pack_shows_each_plans_earlier_drills(tmp_path: Path) -> None:
    write_reports(report([plan("A"), plan("B", status="failed", rto=None)], day=0, run_id="r0"), tmp_path)
    write_reports(report([plan("A", rto=420.0), plan("B")], day=7, run_id="r1"), tmp_path)
    (tmp_path / "nightly" / "20261105T020000Z-torn").mkdir()
    (tmp_path / "nightly" / "20261105T020000Z-torn" / "report.json").write_text("{")
    files = write_reports(report([plan("A", rto=500.0), plan("B")], day=14, run_id="r2"), tmp_path)
    assert files.evidence is not None
    doc = html5lib.HTMLParser(strict=True).parse(files.evidence.read_text())
    history = doc.findall(".//h:table", NS)[-3]  # history, calls, hashes
    rows = {
        r[0]: r[1:3]
        for r in ([_text(td) for td in tr.findall("h:td", NS)] for tr in history.findall(".//h:tbody/h:tr", NS))
    }
    assert rows == {"A": ["3 of 3", "2026-11-08"], "B": ["2 of 3", "2026-11-08"]}
    assert "(2 found)" in files.evidence.read_text()


def test_a_real_failover_shows_its_approval_or_says_none_was_recorded(tmp_path: Path) -> None:
    failover = report([plan("A", undo="skipped")]).model_copy(update={"mode": "failover"})
    journal = tmp_path / "j.jsonl"
    journal.write_text('{"type": "open", "at": "2026-11-01T02:00:00+00:00"}\n')
    bare = render_evidence(
        failover, root=tmp_path, hashes={}, journal_head=None, journal_path=journal, timeline_svg=None
    )
    assert "No approval recorded in this run's journal" in bare and "REAL failover" in bare
    with journal.open("a") as f:
        f.write(
            '{"type": "approval", "approver": "Dana <ops>", "change_ticket": "CHG-42", '
            '"how": "approval form of the paused flow run", "at": "2026-11-01T01:55:00+00:00"}\n'
        )
    page = render_evidence(
        failover, root=tmp_path, hashes={}, journal_head=None, journal_path=journal, timeline_svg=None
    )
    doc = html5lib.HTMLParser(strict=True).parse(page)
    approvals = doc.findall(".//h:table", NS)[2]  # scenario, results, approvals
    assert [[_text(td) for td in tr.findall("h:td", NS)] for tr in approvals.findall(".//h:tbody/h:tr", NS)] == [
        ["Dana <ops>", "CHG-42", "approval form of the paused flow run", "2026-11-01T01:55:00+00:00"]
    ]


def test_a_plans_continue_count_comes_from_its_last_journal_record_when_the_report_kept_no_events(
    tmp_path: Path,
) -> None:
    """A report written before plan events were kept: the pack reads each plan's Continues from the journal, one
    record at a time, and lists the calls in order; torn lines are skipped (verify is where they are judged)."""
    journal = tmp_path / "j.jsonl"
    journal.write_text(
        '{"type": "open", "at": "2026-11-01T02:00:00+00:00", "poll_interval": 10}\n'
        '{"type": "plan", "plan": "a", "record": {"continues": 0, "target": {"name": "A", "halt": "Stop"}}}\n'
        '{"type": "intent", "op": "run", "plan": "a", "at": "2026-11-01T02:00:01+00:00"}\n'
        "{torn\n"
        '{"type": "plan", "plan": "a", "record": {"continues": 2, "target": {"name": "A", '
        '"halt": "RetryFailedStep"}}}\n'
        '{"type": "outcome", "op": "run", "plan": "a", "ok": true, "at": "2026-11-01T02:00:02+00:00"}\n'
        '{"type": "plan", "plan": "b", "record": {"target": {"name": "B"}}}\n'
    )
    page = render_evidence(
        report([plan("A"), plan("B")]),
        root=tmp_path,
        hashes={},
        journal_head=None,
        journal_path=journal,
        timeline_svg=None,
    )
    doc = html5lib.HTMLParser(strict=True).parse(page)
    results, calls = doc.findall(".//h:table", NS)[1], doc.findall(".//h:table", NS)[-2]
    halts = {
        r[0]: r[6]
        for r in ([_text(td) for td in tr.findall("h:td", NS)] for tr in results.findall(".//h:tbody/h:tr", NS))
    }
    assert halts == {"A": "2 Continue sent (on_halt RetryFailedStep)", "B": "—"}
    assert [[_text(td) for td in tr.findall("h:td", NS)][2] for tr in calls.findall(".//h:tbody/h:tr", NS)] == [
        "drill started",
        "Run sent",
        "Run answered OK",
    ]
    assert "poll interval 10 s" in page
