"""A real server's vocabulary over real HTTP: the simulator shows the words VAO 1.0 to VRO 13 use (per plan and per
phase, and a numeric ``scheduleType``), and the engine, ``recover`` and ``doctor`` work through them.

Before the vocabulary, each of these drills failed: idle plans shown ``Verified (passed check)`` or
``NEEDS VERIFIED`` were refused, a failover shown ``Processing`` failed at the first poll, an undo shown ``Undoing``
ended the cleanup, and ``scheduleType: 0`` made the whole plan list unreadable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import CONTROL_TIMEOUT, Sim
from tests.test_engine import assert_all_clean, by_name, drill, settings_for
from vaodrill.app.doctor import diagnose
from vaodrill.simulator import load_scenario


def real_words_scenario() -> dict[str, Any]:
    """The built-in ``veeam-words`` scenario as data (the demo plans shown in VAO 1.0 to VRO 13 words)."""
    return load_scenario("veeam-words").model_dump(mode="json")


async def watch_words(url: str, stop: asyncio.Event) -> set[str]:
    """Every planState word the server showed while the drill ran (read beside it, as an operator's UI would)."""
    seen: set[str] = set()
    async with httpx.AsyncClient(base_url=url, timeout=CONTROL_TIMEOUT) as http:
        token = (
            await http.post("/v2/Token", data={"grant_type": "password", "username": "demo", "password": "demo"})
        ).json()["access_token"]
        while not stop.is_set():
            answer = await http.get("/v2/FailoverPlans", headers={"Authorization": f"Bearer {token}"})
            seen |= {plan["planState"] for plan in answer.json()}
            await asyncio.sleep(0.01)
    return seen


async def test_a_drill_passes_on_a_real_servers_words(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("veeam-words", time_scale=600)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_words(sim.url, stop))
    try:
        report, recorder, _ = await drill(sim, tmp_path)
    finally:
        stop.set()
    seen = await watcher
    assert report.verdict == "passed", report.reason
    assert {p.undo for p in report.plans} == {"verified"}
    ids = {sim.plan_id(p.plan).lower() for p in report.plans}
    assert sim.posts("Run") == dict.fromkeys(ids, 1) and sim.posts("Undo") == dict.fromkeys(ids, 1)
    assert recorder.phases("SQL Tier") == ["checking", "starting", "failing over", "failed over", "undoing", "clean"]
    assert {
        "Processing",
        "PROCESSING",
        "Running",
        "Undoing",
        "Undo in progress",
        "Failover",
        "FailoverComplete",
        "Verified (passed check)",
        "NEEDS VERIFIED",
    } <= seen
    listed = sim.control.get("/_sim/plans").json()
    assert {p["name"]: p["planState"] for p in listed}["SQL Tier"] == "UNDO FAILOVER"  # left undone, counted clean
    assert_all_clean(sim)


async def test_a_halt_shown_halted_is_reported_and_undone_or_continued(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    sim = sim_factory("veeam-words", time_scale=600)
    sim.patch("Web Tier", halt_at_step=2)
    report, _, _ = await drill(sim, tmp_path)
    web = by_name(report)["Web Tier"]
    assert web.status == "halted" and web.undo == "verified" and report.left_failed_over == []
    assert "Halted at step 2" in (web.reason or "")
    assert_all_clean(sim)
    again = sim_factory("veeam-words", time_scale=600)
    again.patch("Web Tier", halt_at_step=2)
    (tmp_path / "continued").mkdir()
    report, _, _ = await drill(again, tmp_path / "continued", on_halt="{continue: ProceedToNextStep, max: 1}")
    assert report.verdict == "passed", report.reason
    assert len(again.requests(method="POST", path="/v2/FailoverPlans/*/Continue")) == 1


async def test_an_undo_that_halts_is_reported_left_failed_over(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("veeam-words", time_scale=600)
    sim.patch("Reporting", fail_undo=True)
    report, _, engine = await drill(sim, tmp_path)
    assert [p.plan for p in report.left_failed_over] == ["Reporting"]
    assert "Halted" in (by_name(report)["Reporting"].undo_reason or "")
    assert engine.journal.read().may_be_failed_over() == ["Reporting"]


async def test_a_processing_plan_this_drill_did_not_start_is_refused_by_name(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    sim = sim_factory(real_words_scenario(), time_scale=600)
    sim.patch("Core Network", never_finish=True)
    answer = sim.control.post("/v2/Token", data={"grant_type": "password", "username": "demo", "password": "demo"})
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    sim.control.post(
        f"/v2/FailoverPlans/{sim.plan_id('Core Network')}/Run", headers=headers, json={"mode": "FailoverNow"}
    ).raise_for_status()
    report, _, _ = await drill(sim, tmp_path, plans="\n  - plan: Core Network\n")
    assert report.verdict != "passed"
    assert "Processing" in (by_name(report)["Core Network"].reason or "")
    assert sim.posts("Undo") == {} and sim.posts("Run") == {sim.plan_id("Core Network").lower(): 1}


async def test_recover_halts_and_undoes_a_processing_failover_its_journal_started(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    """An engine killed while its failover shows ``Processing``: its journal says a Run left, so recover halts
    that failover and undoes it, waiting for the undo shown ``Undoing``."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from tests.test_engine import write_spec
    from vaodrill.engine.recovery import recover, survey
    from vaodrill.journal import open_journals

    sim = sim_factory(real_words_scenario(), time_scale=600)
    sim.patch("Core Network", never_finish=True)
    spec = write_spec(tmp_path, "\n  - plan: Core Network\n")
    code = textwrap.dedent("""
        import asyncio, sys
        from pydantic import SecretStr
        from vaodrill.vao.connection import ConnectionSettings
        from vaodrill.engine.drill import Drill
        from vaodrill.spec.loader import load_spec
        settings = ConnectionSettings(url=sys.argv[2], username="demo", password=SecretStr("demo"))
        asyncio.run(Drill(load_spec(sys.argv[1]), settings, run_id="killed", report_dir=sys.argv[3]).run())
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(spec), sim.url, str(tmp_path / "reports")],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ},
    )
    try:
        for _ in range(600):
            if sim.posts("Run"):
                break
            assert child.poll() is None
            await asyncio.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert sim.plans()["Core Network"]["planState"] == "Processing"
    (journal,) = open_journals(tmp_path / "reports" / "journal")
    surveyed = await survey(journal, settings_for(sim))
    assert [(p.state.split(" (")[0], p.action) for p in surveyed.plans] == [("Processing", "halt and undo")]
    recovery = await recover(journal, settings_for(sim), surveyed=surveyed)
    assert recovery.clean, [(p.name, p.outcome) for p in recovery.plans]
    assert_all_clean(sim)
    core = sim.plan_id("Core Network").lower()
    assert sim.posts("Halt") == {core: 1} and sim.posts("Undo") == {core: 1} and sim.posts("Run") == {core: 1}


async def test_doctor_lists_each_raw_state_with_its_reading(sim_factory: Callable[..., Sim]) -> None:
    scenario = real_words_scenario()
    scenario["plans"][3]["state_words"]["idle"] = "Awaiting verification"
    sim = sim_factory(scenario, time_scale=600)
    diagnosis = await diagnose(settings_for(sim))
    states = {c.name: c for c in diagnosis.checks if c.name.startswith("state ")}
    assert set(states) == {
        "state 'Verified (passed check)'",
        "state 'NEEDS VERIFIED'",
        "state 'Verified (passed test and check)'",
        "state 'Awaiting verification'",
        "state 'DISABLED'",
    }
    assert "on 2 plans" in states["state 'NEEDS VERIFIED'"].detail
    assert "idle" in states["state 'NEEDS VERIFIED'"].detail
    assert "unknown: refused" in states["state 'Awaiting verification'"].detail
    assert "VAO_STATES" in states["state 'Awaiting verification'"].hint
    assert diagnosis.exit_code == 1  # App Tier cannot run in a state vaodrill does not know
    mapped = await diagnose(settings_for(sim).model_copy(update={"states": {"Awaiting verification": "idle"}}))
    assert mapped.exit_code == 0
    assert (
        "added in the connection settings" in {c.name: c for c in mapped.checks}["state 'Awaiting verification'"].detail
    )
