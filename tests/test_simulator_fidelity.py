"""The simulator shows what a real server may show, so no client needs a proxy to see it: an undo that finished
with errors stays visible whatever ``after_undo`` says, warnings and errors per stage, ``planInUse`` and the
details wording set from the control plane; and a drill sees each of them in its report. The client's Continue
falls back once when the path it learnt on one plan answers 404 on another."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sim
from tests.test_engine import by_name, drill
from tests.test_simulator_support import P_ID, Api, one_plan_scenario

RUN = {"mode": "FailoverNow", "planlaunchOptions": {"restorePointRule": {"date": "2027-01-15T08:00:00"}}}


async def finished(api: Api, op: str, body: Any = None) -> dict[str, Any]:
    """Send ``op`` and read until its 2 steps are done (tick progression)."""
    assert (await api.op(P_ID, op, body)).status_code == 200
    await api.plan(P_ID)
    return await api.plan(P_ID)


@pytest.mark.parametrize("after_undo", ["Enabled", "UndoFailover"])
async def test_an_undo_with_errors_stays_visible_whatever_after_undo(
    make_api: Callable[..., Api], after_undo: str
) -> None:
    api = make_api(one_plan_scenario(after_undo=after_undo, errors={"undo": 1}), progression="tick")
    failed_over = await finished(api, "Run", RUN)
    assert (failed_over["planState"], failed_over["planStateDetails"]) == (
        "Failover",
        "Complete, no errors, no warnings",
    )
    undone = await finished(api, "Undo")
    assert (undone["planState"], undone["planStateDetails"], undone["planInUse"]) == (
        "UndoFailover",
        "Complete, 1 errors",
        False,
    )
    assert (await api.plan(P_ID))["planState"] == "UndoFailover"  # it stays: a client polling later sees it


async def test_an_undo_without_errors_still_returns_to_enabled(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario(errors={"failover": 1}), progression="tick")
    assert (await finished(api, "Run", RUN))["planStateDetails"] == "Complete, 1 errors"
    undone = await finished(api, "Undo")
    assert (undone["planState"], undone["planStateDetails"]) == ("Enabled", "Ready")


@pytest.mark.parametrize(
    ("warnings", "failover", "undo"),
    [
        ({"failover": 1}, "Complete, 1 warnings", "Complete, no errors, no warnings"),
        ({"undo": 2}, "Complete, no errors, no warnings", "Complete, 2 warnings"),
        (3, "Complete, 3 warnings", "Complete, 3 warnings"),
    ],
)
async def test_warnings_per_stage(make_api: Callable[..., Api], warnings: Any, failover: str, undo: str) -> None:
    api = make_api(one_plan_scenario(after_undo="UndoFailover", warnings=warnings), progression="tick")
    assert (await finished(api, "Run", RUN))["planStateDetails"] == failover
    assert (await finished(api, "Undo"))["planStateDetails"] == undo


async def test_the_control_plane_sets_plan_in_use_and_the_details_wording(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario(), progression="tick")
    patch = {"in_use_shown": True, "details_words": {"complete": "Complete, with warnings"}}
    assert (await api.http.patch(f"/_sim/plans/{P_ID}", json=patch)).status_code == 200
    idle = await api.plan(P_ID)
    assert (idle["planState"], idle["planInUse"], idle["planStateDetails"]) == ("Enabled", True, "Ready")
    complete = await finished(api, "Run", RUN)
    assert complete["planStateDetails"] == "Complete, with warnings"
    assert (
        await api.http.patch(f"/_sim/plans/{P_ID}", json={"in_use_shown": None, "details_words": {}})
    ).status_code == 200
    plain = await api.plan(P_ID)
    assert (plain["planInUse"], plain["planStateDetails"]) == (False, "Complete, no errors, no warnings")


@pytest.mark.parametrize(
    "body",
    [
        {"warnings": {"failback": 1}},
        {"warnings": -1},
        {"errors": {"undo": -1}},
        {"details_words": {"idle": ""}},
        {"details_words": {"paused": "x"}},
        {"in_use_shown": "maybe"},
        {"warnings": None},
    ],
)
async def test_bad_fidelity_settings_are_refused_in_one_line(
    make_api: Callable[..., Api], body: dict[str, Any]
) -> None:
    api = make_api(one_plan_scenario())
    answer = await api.http.patch(f"/_sim/plans/{P_ID}", json=body)
    assert answer.status_code == 400 and "\n" not in answer.json()["Message"], (body, answer.text)


# -- what a drill makes of them (over loopback HTTP) ---------------------------------------------------------

ONE = "  - plan: Core Network\n"


async def test_a_drill_sees_an_undo_that_finished_with_errors(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", errors={"undo": 1})  # the demo's after_undo is Enabled
    report, _, _ = await drill(sim, tmp_path, ONE)
    core = by_name(report)["Core Network"]
    assert core.status == "passed" and core.undo == "failed"
    assert core.undo_reason is not None and "Complete, 1 errors" in core.undo_reason
    assert report.verdict == "failed" and [p.plan for p in report.left_failed_over] == ["Core Network"]


@pytest.mark.parametrize(
    ("patch", "wording"),
    [
        ({"details_words": {"complete": "Complete, with warnings"}}, "Complete, with warnings"),
        ({"details_style": "veeam", "warnings": {"failover": 1}}, "Complete, no errors, 1 warning"),
    ],
)
async def test_a_drill_marks_a_failover_complete_with_warnings(
    sim: Sim, tmp_path: Path, patch: dict[str, Any], wording: str
) -> None:
    sim.patch("Core Network", **patch)
    report, _, _ = await drill(sim, tmp_path, ONE)
    core = by_name(report)["Core Network"]
    assert (core.status, core.undo, core.failover_details) == ("passed", "verified", wording)
    assert core.warnings == [f"VAO: {wording}"]


async def test_a_drill_refuses_an_idle_plan_shown_in_use(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", in_use_shown=True)
    report, _, _ = await drill(sim, tmp_path, ONE)
    core = by_name(report)["Core Network"]
    assert core.status == "failed" and core.reason is not None and "precondition" in core.reason
    assert sim.requests(method="POST", path=sim.path("Run")) == []


async def test_continue_falls_back_when_the_path_learnt_on_one_plan_is_404_on_another(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", halt_at_step=2, continue_path="Run/Continue")
    sim.patch("Active Directory", halt_at_step=2)  # the demo's path: /Continue
    plans = "  - plan: Core Network\n  - plan: Active Directory\n    after: [Core Network]\n"
    report, _, _ = await drill(sim, tmp_path, plans, on_halt="{continue: RetryFailedStep, max: 1}")
    assert report.verdict == "passed", report.reason
    ids = {sim.plan_id(name).lower(): name for name in ("Core Network", "Active Directory")}
    posts = [
        (ids[e["path"].split("/")[3].lower()], e["path"].split("/", 4)[4], e["status"])
        for e in sim.requests(method="POST", path="/v2/FailoverPlans/*")
        if "Continue" in e["path"]
    ]
    assert posts == [
        ("Core Network", "Continue", 404),
        ("Core Network", "Run/Continue", 200),
        ("Active Directory", "Run/Continue", 404),
        ("Active Directory", "Continue", 200),
    ]
    # what the first reading after the Continue showed: still failing over, or (on a slow machine) already done
    assert [e.outcome for e in by_name(report)["Active Directory"].events if e.kind == "continue"] in (
        ["resumed"],
        ["completed"],
    )
