"""The drill engine without Prefect: a whole drill against the simulator over loopback HTTP, in seconds.

Every path runs on both the contract's spelling (``demo``) and Veeam's documented variants (``veeam-docs``:
Verified/NotVerified idle plans, an undo left ``UndoFailover`` complete, ``/Run/Continue``, 400/500 refusals).
Assertions come from the simulator's request log and plan states, the report and the journal.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.conftest import Sim
from vaodrill.engine.drill import Drill
from vaodrill.engine.recovery import recover
from vaodrill.engine.runs import IllegalTransition, Ledger, Observer, Phase, PlanRun, Transition
from vaodrill.engine.targets import PlanTarget
from vaodrill.journal import Journal, open_journals
from vaodrill.report.model import DrillReport
from vaodrill.spec.loader import load_spec
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.rules import is_clean

DEMO_PLANS = """
  - plan: Core Network
  - plan: Active Directory
    after: [Core Network]
  - plan: SQL Tier
    after: [Active Directory]
    restore_point: {ago: 6h}
  - plan: App Tier
    after: [SQL Tier]
  - plan: Web Tier
    after: [App Tier]
  - plan: Reporting
    after: [SQL Tier]
"""


def write_spec(tmp_path: Path, plans: str = DEMO_PLANS, **top: object) -> Path:
    """A drill spec file: the demo DAG by default, polling every 50 ms; ``top`` sets or overrides top-level keys."""
    header = {"name": "test-drill", "mode": "drill", "poll_interval": "0.05s", **top}
    text = "".join(f"{k}: {v}\n" for k, v in header.items()) + "plans:\n" + textwrap.dedent(plans).strip("\n")
    path = tmp_path / "drill.yaml"
    path.write_text(text + "\n")
    return path


def settings_for(sim: Sim) -> ConnectionSettings:
    return ConnectionSettings(url=sim.api_url, username="demo", password=SecretStr("demo"), simulated=True)


#: The engine's main cases run on both scenarios and on both APIs of the simulator (VAO v2 and VRO v13).
BOTH_APIS = ["demo", "veeam-docs", "demo@vro", "veeam-docs@vro"]


def failover_bodies(sim: Sim) -> dict[str, Any]:
    """The body of each plan's Run (v2) or Failover (VRO) POST, by plan id."""
    return {
        e["path"].split("/")[4 if sim.api == "vro" else 3].lower(): e["body"]
        for e in sim.requests(method="POST", path=sim.path("Run"))
    }


def expected_body(sim: Sim, restore_point: str | None) -> dict[str, Any]:
    """The exact failover request of the API: the seed's Run body on v2, VRO's Failover body."""
    if sim.api == "vro":
        return {"restorePointDate": restore_point, "executeChainedPlans": False}
    return {
        "mode": "FailoverNow",
        "planlaunchOptions": {"restorePointRule": {"date": restore_point}, "executeChainedPlans": False},
    }


class Recorder(Observer):
    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self.reports: list[DrillReport] = []

    def on_transition(self, transition: Transition) -> None:
        self.transitions.append(transition)

    async def on_report(self, report: DrillReport) -> None:
        self.reports.append(report)

    def phases(self, plan: str) -> list[str]:
        return [t.new.value for t in self.transitions if t.run.name == plan]


async def drill(
    sim: Sim, tmp_path: Path, plans: str = DEMO_PLANS, *, run_id: str = "run-1", **top: object
) -> tuple[DrillReport, Recorder, Drill]:
    recorder = Recorder()
    engine = Drill(
        load_spec(write_spec(tmp_path, plans, **top)),
        settings_for(sim),
        run_id=run_id,
        report_dir=tmp_path / "reports",
        observers=[recorder],
    )
    report = await engine.run()
    return report, recorder, engine


def by_name(report: DrillReport) -> dict[str, Any]:
    return {p.plan: p for p in report.plans}


def runs_processed(sim: Sim) -> dict[str, int]:
    """Failovers the server started on request, per plan id (from its own records): never more than one."""
    counts: dict[str, int] = {}
    for record in sim.plans().values():
        started = sum(1 for stage in record["stages"] if stage["kind"] == "Failover")
        if started:
            counts[record["id"].lower()] = started
    return counts


def assert_all_clean(sim: Sim) -> None:
    from vaodrill.vao.models import FailoverPlan

    for name, record in sim.plans().items():
        plan = FailoverPlan.model_validate(record)
        assert is_clean(plan) or plan.state.value == "Disabled", f"{name} is {plan.describe_state()}"


def test_the_engine_modules_do_not_import_prefect() -> None:
    import subprocess

    code = (
        "import sys, vaodrill.engine.drill, vaodrill.engine.steps, vaodrill.journal, vaodrill.app.cli; "
        "sys.exit(1 if any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def one_plan_ledger(tmp_path: Path, mode: str = "drill") -> tuple[Ledger, PlanRun]:
    """A journal of one plan ``P`` opened in ``mode``, its ledger, and the plan's record, pending."""
    target = PlanTarget(
        key="p",
        id="1",
        name="P",
        after=(),
        restore_point="2026-01-01T00:00:00",
        rule="latest",
        seed=None,
        rto_target_seconds=None,
        timeout_seconds=60,
    )
    ledger = Ledger("d", "r", Journal(tmp_path, "r"), [])
    ledger.journal.append("open", drill="d", mode=mode, plans=[{"key": "p", "id": "1", "name": "P"}])
    return ledger, PlanRun(target)


def test_the_transition_table_refuses_illegal_moves(tmp_path: Path) -> None:
    ledger, run = one_plan_ledger(tmp_path)
    with pytest.raises(IllegalTransition):
        ledger.move(run, Phase.FAILED_OVER)  # never without checking and starting
    ledger.move(run, Phase.CHECKING)
    ledger.move(run, Phase.REFUSED, reason="disabled")
    with pytest.raises(IllegalTransition):
        ledger.move(run, Phase.UNDOING)  # nothing was sent, nothing to undo
    assert Journal(tmp_path, "r").read().plans["p"]["phase"] == "refused"


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_a_drill_passes_with_one_run_and_one_undo_per_plan(any_sim: Sim, tmp_path: Path) -> None:
    report, recorder, engine = await drill(any_sim, tmp_path)
    assert report.verdict == "passed", report.reason
    assert {p.undo for p in report.plans} == {"verified"}
    assert all(p.rto_seconds is not None and p.rto_met for p in report.plans)
    ids = {any_sim.plan_id(p.plan).lower() for p in report.plans}
    assert runs_processed(any_sim) == dict.fromkeys(ids, 1)
    assert any_sim.posts("Undo") == dict.fromkeys(ids, 1)
    assert failover_bodies(any_sim) == {
        any_sim.plan_id(p.plan).lower(): expected_body(any_sim, p.restore_point) for p in report.plans
    }
    for entry in any_sim.requests(method="POST", path=any_sim.path("Undo")):  # each Undo after its failover ended
        record = next(r for r in any_sim.plans().values() if r["id"].lower() in entry["path"].lower())
        failover = next(st for st in record["stages"] if st["kind"] == "Failover")
        assert failover["ended_at"] is not None and failover["ended_at"] <= entry["at"], record["name"]
    assert recorder.phases("SQL Tier") == ["checking", "starting", "failing over", "failed over", "undoing", "clean"]
    # no wait longer than the stage itself plus two polls: the completion is seen by the first or second plan-list
    # read after the simulator finished the stage (counted in its request log, so machine load cannot fake it)
    from datetime import datetime

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    lists = [at(e["at"]) for e in any_sim.requests(method="GET", path=any_sim.path()) if e["status"] == 200]
    for name, record in any_sim.plans().items():
        stages = [st for st in record["stages"] if st["kind"] == "Failover"]
        if stages:
            ended, seen = at(stages[0]["ended_at"]), by_name(report)[name].failover_completed_at
            assert seen is not None and seen >= ended, (name, ended, seen)
            reads_between = sum(1 for moment in lists if ended <= moment < seen)
            assert reads_between <= 2, (name, reads_between)
    assert_all_clean(any_sim)
    journal = engine.journal.read()
    assert not journal.is_open and journal.may_be_failed_over() == []
    assert (tmp_path / "reports").glob("*/*/report.json")
    assert recorder.reports == [report]


async def test_syncs_that_overlap_share_fsyncs_and_each_covers_its_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync returns only after an fsync that started once its line was written (a wave of intents, each synced
    as the engine does); and syncs that wait together share one fsync (they ran one per line before).

    How many fsyncs an interleaved wave costs depends on how fast the disk is against the event loop, so the count
    is asserted where the rule makes it exact: a hundred syncs waiting on lines already written need one fsync.
    """
    import os

    journal = Journal(tmp_path, "wave")
    journal.append("open")
    written = 1
    fsync_starts: list[int] = []  # lines written when each fsync started
    real_fsync = os.fsync

    def counted(fd: int) -> None:
        fsync_starts.append(written)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)

    async def intent(i: int) -> None:
        nonlocal written
        journal.append("intent", plan=f"plan-{i}")
        written += 1
        mine = written
        await journal.sync()
        assert any(start >= mine for start in fsync_starts), (i, fsync_starts)

    await asyncio.gather(*(intent(i) for i in range(100)))
    assert 1 <= len(fsync_starts) <= 100, fsync_starts
    assert [line.count('"intent"') for line in journal.path.read_text().splitlines()[1:]] == [1] * 100

    for i in range(100):
        journal.append("intent", plan=f"again-{i}")
        written += 1
    before = len(fsync_starts)
    await asyncio.gather(*(journal.sync() for _ in range(100)))
    assert fsync_starts[before:] == [written], fsync_starts[before:]


async def test_a_run_leaves_on_the_reading_that_showed_its_dependencies_done(sim: Sim, tmp_path: Path) -> None:
    """The precondition uses a recent reading (the shared list read, or its own GET for the start right after it;
    ``PlanMonitor.recent``): at most one GET of a plan before its Run, where the engine once read it twice."""
    report, _, _ = await drill(sim, tmp_path, poll_interval="1s")
    assert report.verdict == "passed", report.reason
    entries = sim.requests()
    for name in (p.plan for p in report.plans):
        path = f"/v2/FailoverPlans/{sim.plan_id(name)}".lower()
        run = next(i for i, e in enumerate(entries) if e["method"] == "POST" and e["path"].lower() == path + "/run")
        gets = [i for i, e in enumerate(entries) if e["method"] == "GET" and e["path"].lower() == path]
        assert len([i for i in gets if i < run]) <= 1, name
        assert len(gets) <= 2, name  # and one before the Undo


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_disabled_plan_gets_no_post_and_its_dependents_are_skipped(any_sim: Sim, tmp_path: Path) -> None:
    any_sim.patch("SQL Tier", state="Disabled")
    report, _, engine = await drill(any_sim, tmp_path)
    plans = by_name(report)
    assert plans["SQL Tier"].status == "failed" and "precondition" in plans["SQL Tier"].reason
    for name in ("App Tier", "Web Tier", "Reporting"):
        assert plans[name].status == "skipped" and plans[name].undo == "not_needed"
    sql = any_sim.plan_id("SQL Tier").lower()
    assert sql not in any_sim.posts("Run") and sql not in any_sim.posts("Undo")
    assert len(any_sim.posts("Undo")) == 2 and report.verdict == "failed"
    assert not engine.journal.read().is_open  # nothing left failed over: the journal closes


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_halt_is_reported_and_undone(any_sim: Sim, tmp_path: Path) -> None:
    any_sim.patch("App Tier", halt_at_step=2)
    report, _, _ = await drill(any_sim, tmp_path)
    plans = by_name(report)
    assert plans["App Tier"].status == "halted" and plans["App Tier"].undo == "verified"
    assert plans["Web Tier"].status == "skipped"
    assert report.left_failed_over == []
    assert_all_clean(any_sim)


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_halt_policy_continues_once(any_sim: Sim, tmp_path: Path) -> None:
    any_sim.patch("App Tier", halt_at_step=2)
    report, _, _ = await drill(any_sim, tmp_path, on_halt="{continue: ProceedToNextStep, max: 1}")
    assert report.verdict == "passed", [(p.plan, p.status, p.reason) for p in report.plans]
    continues = [
        e["path"] for e in any_sim.requests(method="POST") if e["path"].endswith("Continue") and e["status"] == 200
    ]
    assert len(continues) == 1


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_a_reading_that_left_while_the_continue_was_held_is_no_second_halt(any_sim: Sim, tmp_path: Path) -> None:
    """The server holds the Continue for a second: the list reads that leave meanwhile still show the halt. Taken
    for a second halt, they failed the plan (``max: 1``): seen once on a loaded fresh-clone run."""
    import datetime as dt

    any_sim.patch("App Tier", halt_at_step=2)
    any_sim.control.post(
        "/_sim/faults", json={"method": "POST", "path": "*/Continue", "latency": 1.0}
    ).raise_for_status()
    report, _, _ = await drill(any_sim, tmp_path, on_halt="{continue: ProceedToNextStep, max: 1}")
    assert report.verdict == "passed", [(p.plan, p.status, p.reason) for p in report.plans]
    (held,) = [
        dt.datetime.fromisoformat(e["at"])
        for e in any_sim.requests(method="POST")
        if e["path"].endswith("/Continue") and e["status"] == 200
    ]
    reads = [dt.datetime.fromisoformat(e["at"]) for e in any_sim.requests(method="GET", path=any_sim.path())]
    assert [at for at in reads if held < at < held + dt.timedelta(seconds=0.9)], "no list read during the hold"


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_a_stage_that_never_finishes_times_out_then_is_halted_and_undone(any_sim: Sim, tmp_path: Path) -> None:
    any_sim.patch("Reporting", never_finish=True)
    plans = DEMO_PLANS.replace("  - plan: Reporting\n", "  - plan: Reporting\n    timeout: 2s\n")
    report, _, _ = await drill(any_sim, tmp_path, plans)
    reporting = by_name(report)["Reporting"]
    assert reporting.status == "timed_out" and reporting.undo == "verified"
    assert len(any_sim.requests(method="POST", path=any_sim.path("Halt"))) == 1
    assert_all_clean(any_sim)


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_a_list_read_taken_before_the_undo_is_no_reading_of_it(any_sim: Sim, tmp_path: Path) -> None:
    """Every list answer is held after the server took it, so the one in flight when the Undo is answered shows the
    halt the Undo ends. Taken for the undo's outcome, it failed the cleanup (seen once on a loaded CI run)."""
    for name in ("Reporting", "App Tier"):  # App Tier, still watched, keeps the list reads going
        any_sim.patch(name, never_finish=True)
    for fault in (
        {"method": "GET", "path": any_sim.path(), "latency_after": 0.3},  # a list read held on its way back
        {"method": "GET", "path": f"{any_sim.path()}/*", "latency": 0.1},  # a list read leaves during a plan's read
    ):
        any_sim.control.post("/_sim/faults", json=fault).raise_for_status()
    plans = DEMO_PLANS.replace("  - plan: Reporting\n", "  - plan: Reporting\n    timeout: 3s\n").replace(
        "  - plan: App Tier\n", "  - plan: App Tier\n    timeout: 6s\n"
    )
    report, _, _ = await drill(any_sim, tmp_path, plans)
    reporting = by_name(report)["Reporting"]
    assert (reporting.status, reporting.undo) == ("timed_out", "verified"), reporting.reason
    assert_all_clean(any_sim)


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_an_undo_that_fails_leaves_the_journal_open_and_says_so(any_sim: Sim, tmp_path: Path) -> None:
    any_sim.patch("Web Tier", fail_undo=True)
    report, _, engine = await drill(any_sim, tmp_path)
    assert [p.plan for p in report.left_failed_over] == ["Web Tier"]
    assert "LEFT FAILED OVER" in (report.reason or "")
    journal = engine.journal.read()
    assert journal.is_open and journal.may_be_failed_over() == ["Web Tier"]
    assert [j.run_id for j in open_journals(engine.journal.path.parent)] == ["run-1"]


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_stop_mid_drill_interrupts_cleans_up_and_reports(any_sim: Sim, tmp_path: Path) -> None:
    """What a first SIGINT/SIGTERM does: stop starting plans, stop waiting, undo, write the report."""
    any_sim.patch("Active Directory", never_finish=True)
    recorder = Recorder()
    engine = Drill(
        load_spec(write_spec(tmp_path)),
        settings_for(any_sim),
        run_id="stopped",
        report_dir=tmp_path / "reports",
        observers=[recorder],
    )
    failing_over = asyncio.Event()

    class Watch(Observer):
        def on_transition(self, t: Transition) -> None:
            if t.run.name == "Active Directory" and t.new is Phase.FAILING_OVER:
                failing_over.set()

    engine.ledger.observers.append(Watch())
    task = asyncio.ensure_future(engine.run())
    await asyncio.wait_for(failing_over.wait(), 30)
    engine.stop("stopped by SIGTERM")
    report = await asyncio.wait_for(task, 30)
    plans = by_name(report)
    assert report.stopped == "signal" and "SIGTERM" in (report.reason or "")
    assert plans["Active Directory"].status == "interrupted" and plans["Active Directory"].undo == "verified"
    assert plans["Core Network"].status == "passed" and plans["Core Network"].undo == "verified"
    assert {plans[n].status for n in ("SQL Tier", "App Tier", "Web Tier", "Reporting")} == {"skipped"}
    assert len(runs_processed(any_sim)) == 2
    assert_all_clean(any_sim)
    assert list((tmp_path / "reports").glob("*/*/report.json"))
    assert not engine.journal.read().is_open


async def test_a_rerun_with_the_same_run_id_never_sends_a_second_run(sim: Sim, tmp_path: Path) -> None:
    plans = "  - plan: Core Network\n  - plan: Legacy ERP\n"
    first, _, _ = await drill(sim, tmp_path, plans, run_id="same")
    assert first.verdict == "failed" and by_name(first)["Core Network"].status == "passed"
    second, _, _ = await drill(sim, tmp_path, plans, run_id="same")
    assert by_name(second)["Core Network"].status == "passed"  # from the journal, not a second Run
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Run")) == 1
    assert len(sim.posts("Undo")) == 1


async def test_a_plan_held_by_an_unclosed_run_names_that_run(sim: Sim, tmp_path: Path) -> None:
    sim.patch("Core Network", fail_undo=True)
    await drill(sim, tmp_path, "  - plan: Core Network\n", run_id="holder")
    report, _, _ = await drill(sim, tmp_path, "  - plan: Core Network\n", run_id="second")
    reason = by_name(report)["Core Network"].reason or ""
    assert "holder" in reason and "vaodrill recover holder" in reason
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Run")) == 1


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_recover_undoes_what_a_killed_engine_left_failed_over(any_sim: Sim, tmp_path: Path) -> None:
    """A real process running the engine is SIGKILLed after two Runs; the journal alone is enough to recover."""
    import os
    import signal
    import subprocess

    any_sim.patch("Active Directory", never_finish=True)
    spec = write_spec(tmp_path)
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
        [sys.executable, "-c", code, str(spec), any_sim.api_url, str(tmp_path / "reports")],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ},
    )
    try:
        for _ in range(600):
            if len(any_sim.posts("Run")) == 2:
                break
            assert child.poll() is None
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the drill never sent two Runs")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert any_sim.posts("Undo") == {}
    (journal,) = open_journals(tmp_path / "reports" / "journal")
    assert sorted(journal.may_be_failed_over()) == ["Active Directory", "Core Network"]
    recorder = Recorder()
    recovery = await recover(journal, settings_for(any_sim), observers=[recorder])
    assert recovery.clean, [(p.name, p.outcome) for p in recovery.plans]
    assert {p.name: p.action for p in recovery.plans} == {"Core Network": "undo", "Active Directory": "halt and undo"}
    assert_all_clean(any_sim)
    assert len(any_sim.requests(method="POST", path=any_sim.path("Halt"))) == 1
    assert open_journals(tmp_path / "reports" / "journal") == []
    assert len(any_sim.requests(method="POST", path=any_sim.path("Run"))) == 2  # recovery never runs a plan


async def test_failure_in_the_middle_keeps_independent_branches(sim: Sim, tmp_path: Path) -> None:
    sim.patch("App Tier", errors={"failover": 2})  # the undo finishes clean
    report, _, _ = await drill(sim, tmp_path)
    plans = by_name(report)
    assert plans["App Tier"].status == "failed" and "error" in (plans["App Tier"].reason or "")
    assert plans["Web Tier"].status == "skipped" and "App Tier" in (plans["Web Tier"].reason or "")
    assert plans["Reporting"].status == "passed"  # the independent branch finished
    assert all(plans[n].undo == "verified" for n in ("Core Network", "SQL Tier", "App Tier", "Reporting"))
    assert_all_clean(sim)


class LostGrouping:
    """The session's steps, with a ``plan`` grouping (a task run in Prefect) that fails for one plan: before
    the plan's work when ``before``, else after it, as a Prefect API going away would."""

    def __init__(self, session: Any, plan: str, *, before: bool) -> None:
        self.session, self.plan_name, self.before = session, plan, before

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    async def plan(self, target: PlanTarget, work: Any) -> Any:
        import httpx

        if target.name == self.plan_name and self.before:
            raise httpx.ConnectError("Prefect API gone")
        result = await work()
        if target.name == self.plan_name:
            raise httpx.ConnectError("Prefect API gone")
        return result


@pytest.mark.parametrize("before", [True, False], ids=["before-the-plan", "after-the-plan"])
async def test_a_lost_grouping_never_runs_a_plan_blind(sim: Sim, tmp_path: Path, before: bool) -> None:
    """Lost before the plan's work: the plan is not started and its dependents are skipped. Lost after it: the
    plan's own outcome stands and its dependents go on."""
    engine = Drill(
        load_spec(write_spec(tmp_path)),
        settings_for(sim),
        run_id="run-1",
        report_dir=tmp_path / "r",
        steps=lambda session: LostGrouping(session, "SQL Tier", before=before),
    )
    plans = by_name(await engine.run())
    if before:
        assert plans["SQL Tier"].status == "skipped" and "Prefect API gone" in (plans["SQL Tier"].reason or "")
        assert plans["App Tier"].status == plans["Web Tier"].status == "skipped"
        assert sim.plan_id("SQL Tier").lower() not in runs_processed(sim)
    else:
        assert {p.status for p in plans.values()} == {"passed"}
    assert set(runs_processed(sim).values()) == {1}
    assert_all_clean(sim)


async def test_failover_mode_sends_no_undo_and_closes_its_journal(sim: Sim, tmp_path: Path) -> None:
    report, _, engine = await drill(sim, tmp_path, "  - plan: Core Network\n", mode="failover")
    assert report.verdict == "passed" and report.plans[0].undo == "skipped"
    assert sim.posts("Undo") == {}
    assert sim.plans()["Core Network"]["planState"] == "Failover"
    assert not engine.journal.read().is_open  # a real failover is meant to stay failed over


async def test_max_parallel_caps_plans_failing_over_at_once(sim: Sim, tmp_path: Path) -> None:
    from datetime import datetime

    independent = "".join(
        f"  - plan: {name}\n"
        for name in ("Core Network", "Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting")
    )
    report, _, _ = await drill(sim, tmp_path, independent, max_parallel=2)
    assert report.verdict == "passed", report.reason

    def parse(ts: str) -> datetime:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))

    spans = [
        (parse(st["started_at"]), parse(st["ended_at"]))
        for r in sim.plans().values()
        for st in r["stages"]
        if st["kind"] == "Failover"
    ]
    assert len(spans) == 6
    most = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most == 2  # never more than two at once, and the cap was actually reached


@pytest.mark.parametrize("any_sim", BOTH_APIS, indirect=True)
async def test_two_drills_naming_the_same_plan_the_second_is_refused_naming_the_first(
    any_sim: Sim, tmp_path: Path
) -> None:
    """Both pass the precondition together (their POSTs held back until both are ready); the server refuses the
    second Run (409, or 400/500 on veeam-docs). That drill fails naming the first, never counts the first's
    failover as its own, and so never undoes it."""
    import contextlib
    from collections.abc import AsyncIterator

    ready = asyncio.Event()
    arrived = 0
    one_at_a_time = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def gate() -> AsyncIterator[None]:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            ready.set()
        await ready.wait()
        async with one_at_a_time:
            yield

    spec = load_spec(write_spec(tmp_path, "  - plan: Core Network\n"))
    drills = {
        run_id: Drill(spec, settings_for(any_sim), run_id=run_id, report_dir=tmp_path / "reports", write_gate=gate)
        for run_id in ("first", "second")
    }
    reports = dict(zip(drills, await asyncio.gather(*(d.run() for d in drills.values())), strict=True))
    passed = [run_id for run_id, report in reports.items() if report.verdict == "passed"]
    assert len(passed) == 1, {k: r.reason for k, r in reports.items()}
    (loser,) = set(reports) - set(passed)
    refused = reports[loser].plans[0]
    assert refused.status == "failed" and refused.undo == "not_needed", refused
    assert passed[0] in (refused.reason or "") and "refused" in (refused.reason or ""), refused.reason
    core = any_sim.plan_id("Core Network").lower()
    assert len(any_sim.requests(method="POST", path=any_sim.path("Run"))) == 2
    assert runs_processed(any_sim) == {core: 1} and any_sim.posts("Undo") == {core: 1}
    assert_all_clean(any_sim)
    assert open_journals(tmp_path / "reports" / "journal") == []  # neither leaves anything to recover


async def test_a_write_slot_refused_for_a_moment_is_asked_again(sim: Sim, tmp_path: Path) -> None:
    """The write gate's own server failing (a Prefect API answering 503) delays a POST; it never loses one."""
    import contextlib
    from collections.abc import AsyncIterator

    failures = 2

    @contextlib.asynccontextmanager
    async def gate() -> AsyncIterator[None]:
        nonlocal failures
        if failures:
            failures -= 1
            try:
                raise OSError("503 from the limit's server")
            except OSError as cause:
                raise RuntimeError("unable to acquire concurrency slots") from cause
        yield

    engine = Drill(
        load_spec(write_spec(tmp_path, "  - plan: Core Network\n")),
        settings_for(sim),
        run_id="slots",
        report_dir=tmp_path / "reports",
        write_gate=gate,
    )
    report = await engine.run()
    assert report.verdict == "passed", report.reason
    assert failures == 0 and runs_processed(sim) == {sim.plan_id("Core Network").lower(): 1}
    assert len(sim.posts("Undo")) == 1
