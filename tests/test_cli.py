"""The vaodrill command as a user runs it (a real subprocess), against a simulator on loopback.

Every kind of user error must print one clear line and exit 2, never a Python traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Sim
from vaodrill.vao.retry import RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
VAODRILL = str(Path(sys.executable).parent / "vaodrill")
DRILLS = ROOT / "deployments" / "drills"


@pytest.fixture
def env(prefect_api: None, sim: Sim) -> dict[str, str]:
    """The CLI's environment: the session's Prefect test API and the simulator as the VAO server."""
    from prefect.settings import PREFECT_API_URL

    clean = {k: v for k, v in os.environ.items() if not k.startswith("VAO_")}
    return {
        **clean,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "VAO_URL": sim.url,
        "VAO_USERNAME": "demo",
        "VAO_PASSWORD": "demo",
        "COLUMNS": "160",
    }


def vaodrill(
    *args: str, env: dict[str, str], cwd: Path = ROOT, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VAODRILL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, input=stdin
    )


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def test_run_demo_drill_passes(env: dict[str, str], sim: Sim, tmp_path: Path) -> None:
    result = vaodrill("run", str(DRILLS / "demo.yaml"), "--report-dir", str(tmp_path), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout and "Traceback" not in result.stderr
    reports = list(tmp_path.glob("demo-app-stack/*/report.json"))
    assert len(reports) == 1
    assert json.loads(reports[0].read_text())["verdict"] == "passed"
    assert {p.name for p in reports[0].parent.iterdir()} == {
        "report.json",
        "report.md",
        "junit.xml",
        "timeline.svg",
        "evidence.html",
    }
    assert all(count == 1 for count in sim.posts("Run").values()) and len(sim.posts("Run")) == 6


def test_run_with_a_disabled_plan_exits_1(env: dict[str, str], sim: Sim, tmp_path: Path) -> None:
    result = vaodrill("run", str(DRILLS / "with-legacy-erp.yaml"), "--report-dir", str(tmp_path), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "Legacy ERP" in result.stdout
    assert sim.plan_id("Legacy ERP").lower() not in sim.posts("Run")


def test_dry_run_sends_no_post(env: dict[str, str], sim: Sim) -> None:
    result = vaodrill("run", str(DRILLS / "demo.yaml"), "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would send: POST" in result.stdout and '"mode": "FailoverNow"' in result.stdout
    assert "check 'sql health' (http {vao}/_apps/SQL%20Tier/health; critical" in result.stdout
    assert sim.requests(method="POST", path="/v2/FailoverPlans/*") == []


def test_invalid_spec_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nplans:\n  - plan: A\n    after: [B]\n")
    assert_user_error(vaodrill("run", str(bad), env=env), "bad.yaml", "'B'")
    assert_user_error(vaodrill("validate", str(bad), env=env), "bad.yaml")


def test_missing_file_exits_2(env: dict[str, str]) -> None:
    assert_user_error(vaodrill("run", "nope.yaml", env=env), "nope.yaml")


def test_unreachable_server_exits_2(env: dict[str, str]) -> None:
    result = vaodrill("plans", "--vao-url", "http://127.0.0.1:9", env=env)
    assert_user_error(result, "cannot connect")


def test_a_server_that_never_answers_ends_with_one_retry_line_and_exit_2(env: dict[str, str]) -> None:
    """It accepts connections (the kernel's backlog) and never answers: the first exchange ends at its 30 s timeout,
    the retry is announced, and the operation's overall deadline ends the command."""
    with socket.socket() as stalling:
        stalling.bind(("127.0.0.1", 0))
        stalling.listen(16)
        url = f"http://127.0.0.1:{stalling.getsockname()[1]}"
        started = time.monotonic()
        result = vaodrill("plans", "--vao-url", url, env=env, timeout=120)
        elapsed = time.monotonic() - started
    assert_user_error(result, "no complete answer within")
    retries = [line for line in result.stderr.splitlines() if "; retry 2 of" in line]
    assert len(retries) == 1 and "no complete answer within 30 s" in retries[0], result.stderr
    assert RetryPolicy().deadline <= elapsed < 60, elapsed  # the deadline, plus a generous interpreter start


def test_wrong_password_exits_2_without_echoing_it(env: dict[str, str]) -> None:
    result = vaodrill("plans", "--password", "hunter2", env=env)
    assert_user_error(result, "refused")
    assert "hunter2" not in result.stdout + result.stderr


def test_unknown_plan_exits_2(env: dict[str, str], sim: Sim, tmp_path: Path) -> None:
    spec = tmp_path / "unknown.yaml"
    spec.write_text("name: unknown\nplans:\n  - plan: Mainframe\n")
    assert_user_error(vaodrill("run", str(spec), "--report-dir", str(tmp_path), env=env), "Mainframe")
    assert sim.requests(method="POST", path="/v2/FailoverPlans/*") == []


def test_real_failover_needs_confirmation(env: dict[str, str], sim: Sim, tmp_path: Path) -> None:
    spec = tmp_path / "real.yaml"
    spec.write_text("name: real\nmode: failover\nplans:\n  - plan: Core Network\n")
    assert_user_error(vaodrill("run", str(spec), env=env, stdin=""), "--yes")
    assert sim.requests(method="POST", path="/v2/FailoverPlans/*") == []


def test_a_real_failover_approved_with_yes_is_in_its_journal_and_evidence_pack(
    env: dict[str, str], sim: Sim, tmp_path: Path
) -> None:
    spec = tmp_path / "real.yaml"
    spec.write_text("name: real\nmode: failover\nplans:\n  - plan: Core Network\n")
    reports = tmp_path / "reports"
    journals = tmp_path / "journals"  # the flow run's parameter, not an environment variable
    result = vaodrill("run", str(spec), "--yes", "--report-dir", str(reports), "--journal-dir", str(journals), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (reports / "journal").exists()
    (journal,) = journals.glob("*.jsonl")
    approvals = [r for r in map(json.loads, journal.read_text().splitlines()) if r["type"] == "approval"]
    assert [(r["how"], r["change_ticket"]) for r in approvals] == [("--yes on the command line", "")], approvals
    assert approvals[0]["approver"]
    (pack,) = reports.glob("real/*/evidence.html")
    text = pack.read_text()
    assert "--yes on the command line" in text and "No approval recorded" not in text
    assert sim.posts("Run") == {sim.plan_id("Core Network").lower(): 1} and sim.posts("Undo") == {}


def test_plans_and_validate_json(env: dict[str, str]) -> None:
    plans = vaodrill("plans", "--json", env=env)
    assert plans.returncode == 0, plans.stderr
    names = {p["name"]: p for p in json.loads(plans.stdout)}
    assert names["Legacy ERP"]["state"] == "Disabled" and names["SQL Tier"]["target_rto_minutes"] > 0
    check = vaodrill(
        "validate",
        str(DRILLS / "demo.yaml"),
        "--now",
        "2026-03-29T03:30:00+02:00",
        "--vao-timezone",
        "Europe/Berlin",
        "--json",
        env=env,
    )
    assert check.returncode == 0, check.stderr
    data = json.loads(check.stdout)
    order = [p["plan"] for p in data["plans"]]
    assert order.index("Core Network") < order.index("SQL Tier") < order.index("Web Tier")
    sql = next(p for p in data["plans"] if p["plan"] == "SQL Tier")
    assert sql["restore_point"] == "2026-03-28T20:30:00"  # 6 h before 03:30 CEST, across the DST gap


def test_help_has_examples(env: dict[str, str]) -> None:
    for command in ("simulator", "plans", "validate", "run", "demo", "serve"):
        result = vaodrill(command, "--help", env=env)
        assert result.returncode == 0 and "Examples" in result.stdout, command
