"""The drill timeline picture: valid SVG, one row per plan, bars where the times say, the critical path on the
plans that decided the drill's end, RTO targets where they fall, and server text that stays text."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.conftest import Sim
from tests.test_engine import DEMO_PLANS, write_spec
from vaodrill.engine.drill import Drill
from vaodrill.report.model import DrillReport, PlanResult
from vaodrill.report.timeline import PLOT_W, PLOT_X, critical_path, render_svg
from vaodrill.spec.loader import load_spec
from vaodrill.vao.connection import ConnectionSettings

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def plan(
    name: str,
    start: float | None,
    end: float | None,
    *,
    after: tuple[str, ...] = (),
    undone: float | None = None,
    **kw: object,
) -> PlanResult:
    fields: dict[str, object] = {
        "plan": name,
        "status": "passed" if end is not None else "skipped",
        "after": list(after),
        "undo": "verified" if start is not None else "not_needed",
        "failover_started_at": at(start) if start is not None else None,
        "failover_completed_at": at(end) if end is not None else None,
        "undo_completed_at": at(undone) if undone is not None else None,
    }
    fields.update(kw)
    return PlanResult.model_validate(fields)


def drill(*plans: PlanResult, finished: float = 600, **kw: object) -> DrillReport:
    fields: dict[str, object] = {
        "drill": "nightly", "run_id": "run-1234", "mode": "drill", "verdict": "passed",
        "started_at": T0, "finished_at": at(finished), "plans": list(plans),
    }  # fmt: skip
    fields.update(kw)
    return DrillReport.model_validate(fields)


def stack() -> DrillReport:
    """Core → AD → SQL → {App → Web, Reporting}; Reporting finishes last, Billing is independent."""
    return drill(
        plan("Core", 0, 100, undone=590),
        plan("AD", 101, 200, after=("Core",), undone=580),
        plan("SQL", 201, 300, after=("AD",), undone=570),
        plan("App", 301, 350, after=("SQL",), undone=560),
        plan("Web", 351, 380, after=("App",), undone=550),
        plan("Reporting", 302, 450, after=("SQL",), undone=540),
        plan("Billing", 0, 440, undone=530),
    )


def svg(report: DrillReport) -> ET.Element:
    return ET.fromstring(render_svg(report))  # raises on anything that is not well-formed XML


def rows(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{NS}g") if g.get("data-plan") is not None]


def row(root: ET.Element, name: str) -> ET.Element:
    (found,) = [g for g in rows(root) if g.get("data-plan") == name]
    return found


def x_of(seconds: float, axis_end: float) -> float:
    return PLOT_X + seconds / axis_end * PLOT_W


def test_svg_is_well_formed_with_one_row_per_plan_in_report_order() -> None:
    report = stack()
    root = svg(report)
    assert root.tag == f"{NS}svg"
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert [g.get("data-plan") for g in rows(root)] == [p.plan for p in report.plans]
    labels = [g.find(f"{NS}text[@class='label']") for g in rows(root)]
    assert [t.text for t in labels if t is not None] == [p.plan for p in report.plans]
    ys = [float(t.get("y", "")) for t in labels if t is not None]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)  # one row each, top to bottom


def test_bars_start_and_end_at_the_plan_times() -> None:
    root = svg(stack())  # the drill ends at 600 s: a tick every 2 minutes up to 10
    axis = [t.text for t in root.iter(f"{NS}text") if t.get("text-anchor") == "middle" and t.text != "drill end"]
    assert axis == ["0s", "2m", "4m", "6m", "8m", "10m"]
    sql = row(root, "SQL")
    failover = sql.find(f"{NS}rect[@class='failover']")
    undo = sql.find(f"{NS}rect[@class='undo']")
    assert failover is not None and undo is not None
    assert float(failover.get("x", "")) == pytest.approx(x_of(201, 600), abs=0.06)
    assert float(failover.get("width", "")) == pytest.approx(x_of(300, 600) - x_of(201, 600), abs=0.1)
    # the undo bar runs from the completion to the verified undo
    assert float(undo.get("x", "")) == pytest.approx(x_of(300, 600), abs=0.06)
    assert float(undo.get("x", "")) + float(undo.get("width", "")) == pytest.approx(x_of(570, 600), abs=0.1)
    assert failover.get("fill") == "#2e8b57"  # passed


def test_critical_path_is_the_chain_that_finished_last() -> None:
    report = stack()
    assert [report.plans[i].plan for i in critical_path(report)] == ["Core", "AD", "SQL", "Reporting"]
    root = svg(report)
    marked = {g.get("data-plan"): g.get("data-critical") for g in rows(root)}
    assert marked == {"Core": "true", "AD": "true", "SQL": "true", "App": "false", "Web": "false",
                      "Reporting": "true", "Billing": "false"}  # fmt: skip
    bar = row(root, "Reporting").find(f"{NS}rect[@class='failover']")
    assert bar is not None and bar.get("stroke-width") == "3"
    assert row(root, "Web").find(f"{NS}rect[@class='failover']").get("stroke") is None  # type: ignore[union-attr]
    edges = {(p.get("data-from"), p.get("data-to")): p.get("class") for p in root.iter(f"{NS}path")
             if p.get("data-from")}  # fmt: skip
    assert edges == {
        ("Core", "AD"): "dependency critical",
        ("AD", "SQL"): "dependency critical",
        ("SQL", "App"): "dependency",
        ("App", "Web"): "dependency",
        ("SQL", "Reporting"): "dependency critical",
    }


def test_critical_path_follows_the_dependency_that_ended_last() -> None:
    report = drill(
        plan("Fast", 0, 50),
        plan("Slow", 0, 250),
        plan("Join", 251, 400, after=("Fast", "Slow")),
        plan("Early", 0, 390),
    )
    assert [report.plans[i].plan for i in critical_path(report)] == ["Slow", "Join"]
    # a longer independent plan takes the path over
    longer = report.model_copy(update={"plans": [*report.plans[:3], plan("Early", 0, 410)]})
    assert [longer.plans[i].plan for i in critical_path(longer)] == ["Early"]
    # no failover ended: no path, and nothing is marked
    idle = drill(plan("A", None, None), plan("B", None, None, after=("A",)))
    assert critical_path(idle) == []
    assert {g.get("data-critical") for g in rows(svg(idle))} == {"false"}


def test_dependencies_match_names_spelled_differently_and_ignore_unknown_ones() -> None:
    report = drill(plan("SQL Tier", 0, 100), plan("App", 101, 200, after=("sql  tier", "Gone")))
    edges = [(p.get("data-from"), p.get("data-to")) for p in svg(report).iter(f"{NS}path") if p.get("data-from")]
    assert edges == [("SQL Tier", "App")]
    assert critical_path(report) == [0, 1]


def test_rto_target_is_a_tick_at_start_plus_target() -> None:
    report = drill(
        plan("A", 60, 200, rto_target_seconds=180.0), plan("B", 0, 100, rto_target_seconds=3600.0), finished=600
    )
    root = svg(report)
    tick = row(root, "A").find(f"{NS}line[@class='rto-target']")
    assert tick is not None and float(tick.get("x1", "")) == pytest.approx(x_of(240, 600), abs=0.06)
    title = tick.find(f"{NS}title")
    assert title is not None and title.text == "RTO target 3m"
    # six times the drill: not squashed onto the axis, a pointer at its edge instead
    beyond = row(root, "B").find(f"{NS}path[@class='rto-target beyond']")
    assert beyond is not None and row(root, "B").find(f"{NS}line[@class='rto-target']") is None
    assert beyond.find(f"{NS}title").text == "RTO target 1h (beyond the axis)"  # type: ignore[union-attr]


def test_a_target_within_twice_the_drill_widens_the_axis() -> None:
    root = svg(drill(plan("A", 0, 100, rto_target_seconds=900.0), finished=600))
    tick = row(root, "A").find(f"{NS}line[@class='rto-target']")
    assert tick is not None and float(tick.get("x1", "")) <= PLOT_X + PLOT_W


def test_skipped_plans_and_missing_times_render() -> None:
    report = drill(
        plan("Core", 0, 100, undone=500),
        plan(
            "Halted",
            101,
            None,
            after=("Core",),
            status="halted",
            reason="Halted: halted (step 2 of 5)",
            failover_ended_at=at(160),
            undone=450,
        ),
        plan("No end recorded", 101, None, status="timed_out", reason="timed out", undone=400),
        plan("Dirty", 0, 200, undo="failed", undo_reason="Undo refused"),
        plan("Skipped", None, None, after=("Halted",), reason="dependency 'Halted' ended halted"),
        verdict="failed",
    )
    root = svg(report)
    assert len(rows(root)) == 5
    halted = row(root, "Halted")
    bar = halted.find(f"{NS}rect[@class='failover']")
    assert bar is not None and bar.get("fill") == "#e67e22"
    assert float(bar.get("width", "")) == pytest.approx(x_of(160, 600) - x_of(101, 600), abs=0.1)
    note = halted.find(f"{NS}text[@class='note']")
    assert note is not None and note.text == "halted (step 2 of 5)"  # no "halted: halted", no plan name
    open_bar = row(root, "No end recorded").find(f"{NS}rect[@class='failover open']")
    assert open_bar is not None and open_bar.find(f"{NS}title") is not None
    dirty = row(root, "Dirty")
    unverified = dirty.find(f"{NS}rect[@class='undo unverified']")
    assert unverified is not None  # runs to the drill's end: nobody saw it undone
    assert float(unverified.get("x", "")) + float(unverified.get("width", "")) == pytest.approx(x_of(600, 600), abs=0.1)
    assert dirty.find(f"{NS}text[@class='note']").text.startswith("LEFT FAILED OVER")  # type: ignore[union-attr]
    skipped = row(root, "Skipped")
    assert skipped.find(f"{NS}rect") is None and skipped.get("data-status") == "skipped"
    assert "dependency 'Halted' ended halted" in " ".join(
        t.text or "" for t in skipped.iter() if t.tag in (f"{NS}text", f"{NS}title")
    )
    # the skipped plan's dependency is drawn from where its dependency ended, straight down
    (edge,) = [p for p in root.iter(f"{NS}path") if p.get("data-to") == "Skipped"]
    assert re.fullmatch(r"M([\d.]+),[\d.]+ L\1,[\d.]+", edge.get("d", ""))


def test_empty_drill_renders() -> None:
    root = svg(drill())
    assert rows(root) == [] and "No plans were run." in [t.text for t in root.iter(f"{NS}text")]


def test_hostile_names_stay_text() -> None:
    name = '<script>alert("x")</script> & ]]> \x1b[31m\x00 --> <!-- '
    reason = "<img src=x onerror=alert(1)> \ud800 \ufffe"
    report = drill(
        plan(name, 0, 100, undone=200),
        plan("B", None, None, after=(name,), reason=reason),
        drill='evil"><svg onload=alert(1)>',
        run_id="r&d<1>",
    )
    text = render_svg(report)
    root = ET.fromstring(text)
    assert not [el for el in root.iter() if el.tag.removeprefix(NS) in ("script", "img", "foreignObject")]
    assert not [k for el in root.iter() for k in el.attrib if k.startswith("on")]
    assert "<script" not in text and "<img" not in text and "\x1b" not in text
    cleaned = '<script>alert("x")</script> & ]]> [31m --> <!--'
    assert row(root, cleaned).get("data-plan") == cleaned
    edge = [p for p in root.iter(f"{NS}path") if p.get("data-to") == "B"]
    assert [p.get("data-from") for p in edge] == [cleaned]
    title = root.find(f"{NS}text")
    assert title is not None and title.text is not None and title.text.startswith('evil"><svg onload=alert(1)>')


def test_long_names_are_cut_with_the_full_name_kept_in_the_tooltip() -> None:
    name = "A very long failover plan name that would run into the bars"
    root = svg(drill(plan(name, 0, 100)))
    label = row(root, name).find(f"{NS}text[@class='label']")
    assert label is not None and label.text is not None
    assert label.text.endswith("…") and len(label.text) <= 30 and name.startswith(label.text[:-1])
    assert name in (row(root, name).find(f"{NS}title").text or "")  # type: ignore[union-attr]


async def test_timeline_of_a_real_drill_on_the_simulator(sim: Sim, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, DEMO_PLANS.replace("  - plan: Web Tier\n    after: [App Tier]\n", ""), name="timeline-test"
    )
    settings = ConnectionSettings(url=sim.url, username="demo", password=SecretStr("demo"), simulated=True)
    report = await Drill(load_spec(spec), settings, run_id="timeline-1", report_dir=tmp_path / "reports").run()
    assert report.verdict == "passed", report.reason

    (picture,) = (tmp_path / "reports").rglob("timeline.svg")
    root = ET.parse(picture).getroot()
    assert [g.get("data-plan") for g in rows(root)] == [p.plan for p in report.plans]
    path = [report.plans[i] for i in critical_path(report)]
    last = max(report.plans, key=lambda p: p.failover_completed_at or T0)
    assert path[0].plan == "Core Network" and path[-1] is last
    assert all(a.plan in b.after for a, b in itertools.pairwise(path))
    assert {g.get("data-plan") for g in rows(root) if g.get("data-critical") == "true"} == {p.plan for p in path}
    for g in rows(root):
        bar = g.find(f"{NS}rect[@class='failover']")
        assert bar is not None and PLOT_X <= float(bar.get("x", "")) <= PLOT_X + PLOT_W
        assert g.find(f"{NS}rect[@class='undo']") is not None  # every plan was put back and verified
