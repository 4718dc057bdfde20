"""Application checks after each failover, against the simulator's DR-site applications over real HTTP and TCP.

What must hold: a failing critical check fails its plan (named), skips its dependents and the plan is undone; a
failing non-critical check is a warning; RTO to verified comes after the application's boot; a command check's
environment holds no credential; a hanging check ends at its timeout; a bad check is one line, exit 2.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from tests.conftest import Sim
from tests.test_engine import Recorder, by_name, write_spec
from vaodrill.engine.drill import Drill
from vaodrill.report.model import DrillReport
from vaodrill.simulator.scenario import load_scenario
from vaodrill.spec.loader import load_spec
from vaodrill.vao.connection import ConnectionSettings

VAODRILL = str(Path(sys.executable).parent / "vaodrill")
PASSWORD = "Pa55-only-the-drill-knows"
CLIENT_SECRET = "client-secret-nobody-else-sees"

PLANS = """
  - plan: Core Network
  - plan: SQL Tier
    after: [Core Network]
    checks:
      - http: "{vao}/_apps/SQL%%20Tier/health"
        name: sql health
        timeout: 1s
        retry_every: 0.1s
        deadline: %(deadline)s
        critical: %(critical)s
  - plan: App Tier
    after: [SQL Tier]
"""


def scenario(**apps: dict[str, Any]) -> dict[str, Any]:
    """The demo scenario with ``apps`` (plan name -> app settings) given to its plans."""
    data = load_scenario("demo").model_dump(exclude_unset=True, mode="json")
    for plan in data["plans"]:
        plan.pop("app", None)
        if plan["name"] in apps:
            plan["app"] = apps[plan["name"]]
    return data


def settings_for(sim: Sim, password: str = "demo") -> ConnectionSettings:
    return ConnectionSettings(url=sim.api_url, username="demo", password=SecretStr(password), simulated=True)


async def run(sim: Sim, tmp_path: Path, plans: str, password: str = "demo") -> tuple[DrillReport, Recorder]:
    recorder = Recorder()
    engine = Drill(
        load_spec(write_spec(tmp_path, plans)),
        settings_for(sim, password),
        run_id="run-1",
        report_dir=tmp_path / "reports",
        observers=[recorder],
    )
    return await engine.run(), recorder


def apps(sim: Sim) -> dict[str, dict[str, Any]]:
    return {a["plan"]: a for a in sim.control.get("/_sim/apps").json()}


def stages(sim: Sim, plan: str) -> list[str]:
    return [s["kind"] for s in sim.plans()[plan]["stages"]]


async def test_a_failing_critical_check_fails_its_plan_skips_dependents_and_the_plan_is_undone(
    sim_factory: Any, tmp_path: Path
) -> None:
    sim = sim_factory(scenario(**{"SQL Tier": {"fail": True}}))
    report, recorder = await run(sim, tmp_path, PLANS % {"deadline": "1s", "critical": "true"})
    plans = by_name(report)
    sql = plans["SQL Tier"]
    assert report.verdict == "failed"
    assert sql.status == "failed" and "check 'sql health' failed" in (sql.reason or ""), sql.reason
    assert "HTTP 500 (expected 200)" in (sql.reason or "")
    assert sql.failover_completed_at is not None and sql.verified_at is None and sql.rto_verified_seconds is None
    assert [c.status for c in sql.checks] == ["failed"] and sql.checks[0].attempts >= 2
    assert plans["App Tier"].status == "skipped" and "SQL Tier" in (plans["App Tier"].reason or "")
    assert sql.undo == "verified" and stages(sim, "SQL Tier") == ["Failover", "UndoFailover"]
    assert stages(sim, "App Tier") == []
    assert apps(sim)["SQL Tier"]["answers"].get("failing", 0) == sql.checks[0].attempts
    assert recorder.phases("SQL Tier") == [
        "checking",
        "starting",
        "failing over",
        "verifying",
        "failed",
        "undoing",
        "clean",
    ]
    directory = next((tmp_path / "reports").glob("*/*/"))
    junit = ET.parse(directory / "junit.xml").getroot()
    case = next(c for c in junit.iter("testcase") if c.get("name") == "sql health")
    assert case.get("classname", "").endswith(".SQL Tier") and case.find("failure") is not None
    assert "check 'sql health' failed" in (directory / "report.md").read_text()
    svg = ET.parse(directory / "timeline.svg").getroot()
    markers = [m for m in svg.iter("{http://www.w3.org/2000/svg}path") if m.get("class") == "check failed"]
    assert len(markers) == 1 and "sql health" in (markers[0].findtext("{http://www.w3.org/2000/svg}title") or "")


async def test_a_failing_non_critical_check_is_a_warning(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(scenario(**{"SQL Tier": {"fail": True}}))
    report, _ = await run(sim, tmp_path, PLANS % {"deadline": "1s", "critical": "false"})
    sql = by_name(report)["SQL Tier"]
    assert report.verdict == "passed", report.reason
    assert sql.status == "passed" and sql.checks[0].status == "failed"
    assert any("check 'sql health' (non-critical) failed" in w for w in sql.warnings), sql.warnings
    assert sql.verified_at is None and by_name(report)["App Tier"].status == "passed"
    junit = (next((tmp_path / "reports").glob("*/*/junit.xml"))).read_text()
    assert 'name="warning"' in junit and "non-critical" in junit


async def test_rto_to_verified_comes_after_the_application_boots(sim_factory: Any, tmp_path: Path) -> None:
    boot = 600.0  # simulated seconds: 1 s at 600x
    sim = sim_factory(scenario(**{"SQL Tier": {"boot": boot, "tcp": True}}))
    port = apps(sim)["SQL Tier"]["tcp_port"]
    with pytest.raises(ConnectionRefusedError):  # not failed over: the port refuses
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    tcp_check = f"      - tcp: 127.0.0.1:{port}\n        retry_every: 0.1s\n"
    plans = PLANS.replace("        critical: %(critical)s\n", tcp_check)
    report, _ = await run(sim, tmp_path, plans % {"deadline": "30s"})
    sql = by_name(report)["SQL Tier"]
    assert report.verdict == "passed", report.reason
    assert [c.status for c in sql.checks] == ["passed", "passed"]
    record = sim.plans()["SQL Tier"]
    failover = next(s for s in record["stages"] if s["kind"] == "Failover")
    completed = datetime.fromisoformat(failover["ended_at"].replace("Z", "+00:00"))
    assert sql.verified_at is not None and sql.failover_completed_at is not None
    assert (sql.verified_at - completed).total_seconds() >= boot / 600
    assert sql.rto_verified_seconds is not None and sql.rto_seconds is not None
    assert sql.rto_verified_seconds > sql.rto_seconds
    assert sql.rto_met is (sql.rto_verified_seconds <= (sql.rto_target_seconds or 0))
    info = apps(sim)["SQL Tier"]
    # (whether a check also came while it booted depends on the machine's speed: not asserted)
    assert info["answers"]["up"] == 1 and info["tcp_accepted"] >= 1
    directory = next((tmp_path / "reports").glob("*/*/"))
    assert "verified" in (directory / "report.md").read_text()
    assert (directory / "timeline.svg").read_text().count('class="check passed"') == 2


async def test_a_command_check_gets_no_credential_in_its_environment(
    sim_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAO_PASSWORD", PASSWORD)
    monkeypatch.setenv("VAO_CLIENT_SECRET", CLIENT_SECRET)
    sim = sim_factory(scenario(), password=PASSWORD)
    pid_file, release = tmp_path / "pid", tmp_path / "release"
    script = (
        f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        f"t = time.monotonic()\nwhile not os.path.exists({str(release)!r}) and time.monotonic() - t < 30: "
        "time.sleep(0.01)"
    )
    plans = f"""
      - plan: Core Network
        checks:
          - command: [{sys.executable!r}, "-c", {script!r}]
            name: smoke
            timeout: 60s
    """
    drill = asyncio.ensure_future(run(sim, tmp_path, plans, password=PASSWORD))
    while not pid_file.exists() or not pid_file.read_text():
        assert not drill.done(), drill.result()
        await asyncio.sleep(0.01)
    environ = Path(f"/proc/{pid_file.read_text()}/environ").read_bytes()
    release.touch()
    report, _ = await drill
    variables = dict(item.split("=", 1) for item in environ.decode().split("\0") if item)
    assert PASSWORD not in environ.decode() and CLIENT_SECRET not in environ.decode()
    assert set(variables) == {
        "PATH",
        "LANG",
        "VAODRILL_DRILL",
        "VAODRILL_RUN_ID",
        "VAODRILL_PLAN",
        "VAODRILL_PLAN_ID",
        "VAODRILL_CHECK",
    }
    assert variables["VAODRILL_PLAN"] == "Core Network" and variables["VAODRILL_RUN_ID"] == "run-1"
    assert variables["VAODRILL_PLAN_ID"] == sim.plan_id("Core Network")
    assert report.verdict == "passed", report.reason
    assert by_name(report)["Core Network"].checks[0].status == "passed"


async def test_a_hanging_check_ends_at_its_timeout_and_its_process_is_killed(sim: Sim, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # a shell that writes its pid at once and becomes the sleep (a Python child took longer than the timeout to
    # start on a loaded machine, and never wrote its pid)
    script = f"echo $$ > {str(pid_file)!r}; exec sleep 600"
    plans = f"""
      - plan: Core Network
        checks:
          - command: [/bin/sh, "-c", {script!r}]
            name: hangs
            timeout: 2s
            deadline: 2.5s
      - plan: SQL Tier
        after: [Core Network]
    """
    started = time.monotonic()
    report, _ = await run(sim, tmp_path, plans)
    assert time.monotonic() - started < 60
    core = by_name(report)["Core Network"]
    assert core.status == "failed" and "timeout" in (core.reason or ""), core.reason
    assert core.checks[0].attempts == 1 and core.undo == "verified"
    assert by_name(report)["SQL Tier"].status == "skipped"
    assert (
        not Path(f"/proc/{pid_file.read_text()}").exists()
        or "Z" in Path(f"/proc/{pid_file.read_text()}/stat").read_text().split()[2]
    )


@pytest.mark.parametrize(
    ("check", "place", "problem"),
    [
        ("{ping: db.example.com}", "plans[0].checks[0]", "unknown check kind 'ping'"),
        ("{http: www.example.com/health}", "plans[0].checks[0].http", "expected an http:// or https:// URL"),
        (
            "{tcp: 'db:1433', timeout: -5s}",
            "plans[0].checks[0].timeout",
            "invalid duration '-5s' (must be greater than zero)",
        ),
        ("{command: /usr/bin/true --now}", "plans[0].checks[0].command", "expected a list"),
    ],
)
def test_a_bad_check_is_one_line_exit_2_with_its_place(tmp_path: Path, check: str, place: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nplans:\n  - plan: Core Network\n    checks:\n      - {check}\n")
    result = subprocess.run(
        [VAODRILL, "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("VAO_")},
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}: {place}: {problem}" in lines[0], lines[0]


def test_checks_round_trip_through_the_spec_dump() -> None:
    from vaodrill.spec.loader import parse_spec

    text = yaml.safe_dump(
        {
            "name": "x",
            "checks": [{"tcp": "db:1433", "critical": False, "deadline": "2m"}],
            "plans": [
                {
                    "plan": "A",
                    "checks": [
                        {"http": "https://a/h", "status": 204, "body_regex": "ok|up", "timeout": "3s"},
                        {"dns": "a.example.com", "addresses": ["10.0.0.5"]},
                        {"command": ["/bin/true"], "name": "t"},
                    ],
                },
                "B",
            ],
        }
    )
    spec = parse_spec(text)
    assert parse_spec(yaml.safe_dump(spec.model_dump(mode="json"))) == spec
    assert [c.kind for c in spec.checks_for("A")] == ["http", "dns", "command"]
    assert [c.kind for c in spec.checks_for("B")] == ["tcp"]


async def test_an_application_answers_only_while_its_plan_is_failed_over(sim_factory: Any) -> None:
    sim = sim_factory(scenario(**{"Core Network": {"body": "up and running"}}), progression="tick")
    plan_id = sim.plan_id("Core Network")
    url = f"{sim.url}/_apps/{plan_id}/health"
    async with httpx.AsyncClient() as web:
        assert (await web.get(url)).status_code == 503  # not failed over
        assert (await web.get(f"{sim.url}/_apps/Nope/health")).status_code == 404
        sim.patch("Core Network", steps=1)
        async with settings_for(sim).client() as client:
            await client.run_failover(plan_id)
            await client.get_plan(plan_id)  # one tick: the one-step failover completes
        answer = await web.get(url)
        assert (answer.status_code, answer.text) == (200, "up and running")
        assert sim.control.patch("/_sim/apps/Core Network", json={"fail": True}).json()["up"] is False
        assert (await web.get(url)).status_code == 500
    assert apps(sim)["Core Network"]["answers"] == {"down": 1, "up": 1, "failing": 1}


@pytest.mark.usefixtures("prefect_api")
async def test_the_prefect_events_carry_the_checks_and_the_rto_to_verified(
    sim_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from flows.drill import DrillRequest, dr_drill

    sim = sim_factory(scenario(**{"Core Network": {"boot": 300}}))
    monkeypatch.setenv("VAO_URL", sim.url)
    monkeypatch.setenv("VAO_USERNAME", "demo")
    monkeypatch.setenv("VAO_PASSWORD", "demo")
    spec = write_spec(
        tmp_path,
        """
      - plan: Core Network
        checks: [{http: "{vao}/_apps/Core%20Network/", name: web, retry_every: 0.1s}]
    """,
    )
    state = await dr_drill(
        request=DrillRequest(drill_file=str(spec), report_dir=str(tmp_path / "r")), return_state=True
    )
    assert state.is_completed(), state.message
    query = {
        "filter": {
            "event": {"name": ["vaodrill.failover.completed", "vaodrill.checks.started"]},
            "related": {"resources_in_roles": [[f"prefect.flow-run.{state.state_details.flow_run_id}", "flow-run"]]},
        },
        "limit": 10,
    }
    async with get_client() as client:
        for _ in range(100):  # events are persisted asynchronously: poll until both are there
            events = (await client.request("POST", "/events/filter", json=query)).json()["events"]
            if len(events) == 2:
                break
            await asyncio.sleep(0.1)
    by_event = {e["event"]: e["payload"] for e in events}
    completed = by_event["vaodrill.failover.completed"]
    assert [(c["name"], c["status"], c["critical"]) for c in completed["checks"]] == [("web", "passed", True)]
    assert completed["rto_verified_seconds"] > completed["rto_seconds"] > 0 and completed["verified_at"]
    assert by_event["vaodrill.checks.started"]["phase"] == "verifying"


async def test_a_stop_ends_the_checks_at_once_and_the_plan_is_undone(sim: Sim, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(600)"
    plans = f"""
      - plan: Core Network
        checks:
          - command: [{sys.executable!r}, "-c", {script!r}]
            timeout: 10m
      - plan: SQL Tier
        after: [Core Network]
    """
    engine = Drill(
        load_spec(write_spec(tmp_path, plans)), settings_for(sim), run_id="run-1", report_dir=tmp_path / "reports"
    )
    running = asyncio.ensure_future(engine.run())
    while not pid_file.exists() or not pid_file.read_text():
        assert not running.done()
        await asyncio.sleep(0.01)
    stopped = time.monotonic()
    engine.stop("stopped by the test")
    report = await running
    assert time.monotonic() - stopped < 30  # not the check's 10 minutes
    core = by_name(report)["Core Network"]
    assert core.status == "interrupted" and core.undo == "verified"
    assert stages(sim, "Core Network") == ["Failover", "UndoFailover"]
    assert by_name(report)["SQL Tier"].status == "skipped"
    proc = Path(f"/proc/{pid_file.read_text()}")
    assert not proc.exists() or (proc / "stat").read_text().split()[2] == "Z"


def test_the_demo_shows_its_checks_in_its_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_API"))}
    result = subprocess.run(
        [VAODRILL, "demo", "--report-dir", str(tmp_path)],
        env=env | {"COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "check 'sql health' passed" in rows["SQL Tier"] and "verified /" in rows["SQL Tier"]
    assert "check 'home page' passed" in rows["Web Tier"]
    assert "check 'reports' (non-critical) passed" in rows["Reporting"]
    assert "check" not in rows["Core Network"]


async def test_dns_checks_use_the_system_resolver() -> None:
    from vaodrill.engine.checks import CheckRun, run_checks
    from vaodrill.spec.checks import Check

    checks = [
        Check.model_validate({"dns": "localhost", "addresses": ["127.0.0.1"], "name": "local"}),
        Check.model_validate(
            {
                "dns": "localhost",
                "addresses": ["192.0.2.1"],
                "name": "elsewhere",
                "critical": False,
                "timeout": "1s",
                "deadline": "1s",
            }
        ),
        Check.model_validate(
            {"dns": "no-such-name.invalid", "name": "nowhere", "critical": False, "timeout": "2s", "deadline": "2s"}
        ),
    ]
    where = CheckRun("d", "r", "p", "id", "https://vao:9899")
    results = {r.name: r for r in await run_checks(checks, where, datetime.now().astimezone())}
    assert results["local"].status == "passed" and results["local"].attempts == 1
    assert results["elsewhere"].status == "failed" and "not 192.0.2.1" in (results["elsewhere"].message or "")
    assert results["nowhere"].status == "failed" and results["nowhere"].message
