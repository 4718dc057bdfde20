"""``mode: readiness``: VRO's readiness check for every plan of the DAG over the simulator, asserted from its request
log; VAO v2, which has none for failover plans, refuses in one line before anything is sent."""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import Sim
from tests.test_cli import DRILLS, vaodrill
from tests.test_engine import DEMO_PLANS, Recorder, by_name, drill, one_plan_ledger, settings_for, write_spec
from vaodrill.engine.drill import Drill
from vaodrill.engine.runs import IllegalTransition, Phase, Transition
from vaodrill.errors import VaoUsageError
from vaodrill.journal import Journal
from vaodrill.report.junit import render_junit
from vaodrill.report.markdown import render_markdown
from vaodrill.spec.loader import SpecError, load_spec

PLANS = 6


def writes(sim: Sim) -> list[str]:
    """Every POST but the login (``/api/token``, ``/v2/Token``), as ``op`` (the last path segment)."""
    ops = [e["path"].rsplit("/", 1)[1] for e in sim.requests(method="POST")]
    return [op for op in ops if op.lower() != "token"]


@pytest.mark.parametrize("scenario", ["demo", "veeam-docs"])
async def test_a_readiness_drill_sends_one_check_per_plan_and_nothing_else(
    sim_factory: Callable[..., Sim], scenario: str, tmp_path: Path
) -> None:
    sim = sim_factory(scenario, time_scale=600, api="vro")
    report, recorder, engine = await drill(sim, tmp_path, mode="readiness")
    assert report.verdict == "passed", report.reason
    assert recorder.phases("SQL Tier") == ["checking", "starting", "checking readiness", "ready"]
    assert report.mode == "readiness"
    assert writes(sim) == ["ReadinessCheck"] * PLANS  # no Failover, no Undo, no Halt
    assert sorted(sim.posts("ReadinessCheck").values()) == [1] * PLANS
    bodies = [e["body"] for e in sim.requests(method="POST", path="/api/v13/Plans/*/ReadinessCheck")]
    assert bodies == [{"generateReport": False}] * PLANS
    for name in (p.plan for p in report.plans):
        record = sim.plans()[name]
        assert record["run_requests"] == 0 and record["stages"] == [] and record["planState"] == "VERIFIED"
    for plan in report.plans:
        assert plan.status == "passed" and plan.undo == "not_needed" and plan.rto_seconds is None
        assert plan.failover_details == "Complete, no errors"
    # every plan's check started after the checks of its dependencies had ended
    plans = by_name(report)
    assert plans["SQL Tier"].failover_started_at >= plans["Active Directory"].failover_completed_at
    journal = Journal(tmp_path / "reports" / ".journal", "run-1")
    state = journal.read() if journal.exists() else engine.journal.read()
    assert not state.is_open and state.may_be_failed_over() == []
    assert [i["op"] for i in state.intents] == ["readiness"] * PLANS
    assert "Mode **readiness**" in render_markdown(report) and "| Check started | Check completed" in render_markdown(
        report
    )
    assert 'name="mode" value="readiness"' in render_junit(report)
    [evidence] = (tmp_path / "reports").glob("test-drill/*/evidence.html")
    html = evidence.read_text()
    assert "readiness check (no failover, no undo)" in html and "Readiness mode: each plan" in html
    assert "REAL failover" not in html and "<th>Check sent</th>" in html


async def test_a_failing_check_fails_its_plan_with_the_result_and_its_dependents_still_run(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    sim = sim_factory("demo", time_scale=600, api="vro")
    sim.patch("SQL Tier", readiness_errors=2, readiness_duration=120)
    report, _, _ = await drill(sim, tmp_path, mode="readiness")
    plans = by_name(report)
    assert report.verdict == "failed" and "SQL Tier" in (report.reason or "")
    assert plans["SQL Tier"].status == "failed"
    assert plans["SQL Tier"].reason == "readiness check failed: NOT VERIFIED (Complete, 2 errors)"
    assert [p for p, r in plans.items() if r.status != "passed"] == ["SQL Tier"]
    assert {r.undo for r in report.plans} == {"not_needed"}
    assert plans["App Tier"].status == "passed"  # a dependent of the failed plan is still checked
    assert writes(sim) == ["ReadinessCheck"] * PLANS


async def test_a_disabled_plan_is_refused_without_a_check(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("demo", time_scale=600, api="vro")
    sim.patch("Reporting", state="Disabled")
    report, _, _ = await drill(sim, tmp_path, mode="readiness")
    assert by_name(report)["Reporting"].status == "failed"
    assert "precondition" in (by_name(report)["Reporting"].reason or "")
    assert sim.plan_id("Reporting").lower() not in sim.posts("ReadinessCheck")
    assert len(writes(sim)) == PLANS - 1


async def test_vao_v2_has_no_readiness_check_and_says_so_before_sending_anything(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    sim = sim_factory("demo", time_scale=600)
    with pytest.raises(VaoUsageError, match=r"^a readiness check is not available on this server \(VAO v2"):
        await drill(sim, tmp_path, mode="readiness")
    assert writes(sim) == [] and not list((tmp_path / "reports").glob("**/report.json"))


def test_the_mode_is_validated_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"drill\.yaml: mode: .*'drill', 'failover' or 'readiness'"):
        load_spec(write_spec(tmp_path, DEMO_PLANS, mode="readyness"))
    assert load_spec(write_spec(tmp_path, DEMO_PLANS, mode="readiness")).mode == "readiness"


def cli_env(url: str) -> dict[str, str]:
    """No Prefect API (the engine runs in the process) and the simulator as the server."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_API"))}
    return clean | {"VAO_URL": url, "VAO_USERNAME": "demo", "VAO_PASSWORD": "demo", "COLUMNS": "160"}


def test_the_shipped_weekly_readiness_drill_validates() -> None:
    result = vaodrill("validate", str(DRILLS / "readiness-weekly.yaml"), env=cli_env("http://127.0.0.1:9"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "readiness mode" in result.stdout


def test_run_on_vao_v2_is_one_line_and_exit_2(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("demo", time_scale=600)
    spec = write_spec(tmp_path, DEMO_PLANS, mode="readiness")
    result = vaodrill("run", str(spec), "--report-dir", str(tmp_path / "r"), env=cli_env(sim.url))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "a readiness check is not available on this server" in result.stderr
    assert "Traceback" not in result.stderr and writes(sim) == []


def test_a_passed_check_has_nothing_to_undo(tmp_path: Path) -> None:
    ledger, run = one_plan_ledger(tmp_path, "readiness")
    for phase in (Phase.CHECKING, Phase.STARTING, Phase.CHECKING_READINESS, Phase.READY):
        ledger.move(run, phase)
    assert run.outcome is Phase.READY and not run.run_sent and ledger.unclean() == []
    with pytest.raises(IllegalTransition):
        ledger.move(run, Phase.UNDOING)


async def test_a_resumed_run_never_sends_a_check_twice(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    """Stopped while SQL Tier's check runs, the same run id resumed: SQL Tier's result is waited for, not asked
    again; the plans not yet checked are checked once."""
    sim = sim_factory("demo", time_scale=600, api="vro")
    sim.patch("SQL Tier", readiness_duration=900)  # 1.5 s on the clock

    class StopDuringCheck(Recorder):
        def on_transition(self, transition: Transition) -> None:
            super().on_transition(transition)
            if transition.run.name == "SQL Tier" and transition.new is Phase.CHECKING_READINESS:
                engine.stop("test stop")

    spec = load_spec(write_spec(tmp_path, DEMO_PLANS, mode="readiness"))
    engine = Drill(spec, settings_for(sim), run_id="r", report_dir=tmp_path / "reports", observers=[StopDuringCheck()])
    first = await engine.run()
    assert by_name(first)["SQL Tier"].status == "interrupted" and first.verdict == "failed"
    assert writes(sim) == ["ReadinessCheck"] * 3
    again = await Drill(spec, settings_for(sim), run_id="r", report_dir=tmp_path / "reports").run()
    assert again.verdict == "passed", [p.reason for p in again.plans]
    assert sorted(sim.posts("ReadinessCheck").values()) == [1] * PLANS
    assert writes(sim) == ["ReadinessCheck"] * PLANS


async def test_a_verified_plan_whose_check_never_shows_is_not_taken_as_passed(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    """VERIFIED from last week's check is no result for this one: with the check's answer lost and the plan showing
    no check, the plan fails after the start grace, never passes on the old words."""
    sim = sim_factory("demo", time_scale=600, api="vro")
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    await drill(sim, tmp_path / "first", "- plan: Core Network", mode="readiness")  # Core Network now VERIFIED
    sim.control.post(
        "/_sim/faults", json={"method": "POST", "path": "/api/v13/Plans/*/ReadinessCheck", "drop": "before"}
    ).raise_for_status()
    report, _, _ = await drill(sim, tmp_path / "second", "- plan: Core Network", mode="readiness", run_id="r2")
    [plan] = report.plans
    assert plan.status == "failed", plan
    assert plan.reason is not None and "never showed: still VERIFIED" in plan.reason


def test_a_dry_run_shows_one_check_per_plan_and_no_undo(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("demo", time_scale=600, api="vro")
    spec = write_spec(tmp_path, DEMO_PLANS, mode="readiness")
    result = vaodrill("run", str(spec), "--dry-run", env=cli_env(f"{sim.url}/api/v13"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count('/ReadinessCheck {"generateReport": false}') == PLANS
    assert "Undo" not in result.stdout and "Failover" not in result.stdout and writes(sim) == []


def test_run_over_vro_passes_and_exits_0(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("demo", time_scale=600, api="vro")
    shipped = (DRILLS / "readiness-weekly.yaml").read_text()
    assert "poll_interval: 10s" in shipped
    spec = tmp_path / "weekly.yaml"  # the shipped drill, polling fast enough for a test
    spec.write_text(shipped.replace("poll_interval: 10s", "poll_interval: 0.05s"))
    result = vaodrill("run", str(spec), "--report-dir", str(tmp_path), env=cli_env(f"{sim.url}/api/v7.2"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Drill app-stack-readiness-weekly: PASSED" in result.stdout and "Check started" in result.stdout
    assert writes(sim) == ["ReadinessCheck"] * PLANS
    [report] = tmp_path.glob("app-stack-readiness-weekly/*/report.json")
    assert '"mode": "readiness"' in report.read_text()


async def test_max_parallel_caps_checks_at_once(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("demo", time_scale=600, api="vro")
    report, _, _ = await drill(sim, tmp_path, mode="readiness", max_parallel=1)
    assert report.verdict == "passed", report.reason
    spans = sorted((p.failover_started_at, p.failover_completed_at) for p in report.plans)
    assert all(
        ended is not None and following is not None and ended <= following
        for (_, ended), (following, _) in pairwise(spans)
    )


async def test_the_simulator_s_check_runs_for_its_duration_and_blocks_a_run_meanwhile(
    sim_factory: Callable[..., Sim],
) -> None:
    from vaodrill.errors import VaoResponseError
    from vaodrill.vao.vro import VroClient

    sim = sim_factory("demo", time_scale=600, api="vro")
    sim.patch("SQL Tier", readiness_duration=6000, readiness_errors=1)  # 10 s on the clock
    target = sim.plan_id("SQL Tier")
    async with VroClient(f"{sim.url}/api/v13", "demo", "demo") as vro:
        await vro.readiness_check(target)
        checking = await vro.get_plan(target)
        assert (checking.state_raw, checking.state_details) == ("CHECKING", "In progress: readiness check")
        with pytest.raises(VaoResponseError, match="running a readiness check"):
            await vro.run_failover(target)
        with pytest.raises(VaoResponseError, match="cannot run a readiness check while it is CHECKING"):
            await vro.readiness_check(target)
        sim.patch("SQL Tier", state="Disabled")  # forgets the check
        sim.patch("SQL Tier", state="Enabled", readiness_duration=0.6)
        await vro.readiness_check(target)
        [failed] = [p for p in await vro.list_plans() if p.id == target]
        while failed.state_raw == "CHECKING":
            [failed] = [p for p in await vro.list_plans() if p.id == target]
        assert (failed.state_raw, failed.state_details) == ("NOT VERIFIED", "Complete, 1 error")
    assert sim.plans()["SQL Tier"]["stages"] == []  # the refused Run started nothing
    v2 = sim.control.post(f"/v2/FailoverPlans/{target}/ReadinessCheck")
    assert v2.status_code in (401, 404, 405)


@pytest.mark.usefixtures("prefect_api")
async def test_a_readiness_drill_as_a_flow_run(
    sim_factory: Callable[..., Sim], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under Prefect the same steps run as tasks: one ReadinessCheck per plan, the failing one named."""
    from vaodrill.report.model import load_report
    from vaodrill_prefect.flows.drill import DrillRequest, dr_drill

    sim = sim_factory("demo", time_scale=600, api="vro")
    sim.patch("Web Tier", readiness_errors=1)
    monkeypatch.setenv("VAO_URL", sim.api_url)
    monkeypatch.setenv("VAO_USERNAME", "demo")
    monkeypatch.setenv("VAO_PASSWORD", "demo")
    spec = write_spec(tmp_path, DEMO_PLANS, mode="readiness")
    await dr_drill(request=DrillRequest(drill_file=str(spec), report_dir=str(tmp_path / "reports")), return_state=True)
    [file] = (tmp_path / "reports").glob("*/*/report.json")
    report = load_report(file)
    assert report.mode == "readiness" and report.verdict == "failed"
    assert [(p.plan, p.reason) for p in report.plans if p.status != "passed"] == [
        ("Web Tier", "readiness check failed: NOT VERIFIED (Complete, 1 error)")
    ]
    assert writes(sim) == ["ReadinessCheck"] * PLANS
