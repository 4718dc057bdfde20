"""Secrets and a quiet CLI, as a user meets them: a real ``vaodrill`` process against a simulator on loopback.

The password read from stdin appears in no process's command line, and the CLI starts no child process; plain http://
to another host is refused before anything is sent; a drill that never reached the server prints its error
line and no empty progress table; error lines are never wrapped.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Sim
from tests.test_cli import DRILLS, VAODRILL, assert_user_error, vaodrill
from tests.test_cli_signals import children_of

SECRET = "St4ndard-Iss0e-Secret"


def base_env(prefect_home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_"))}
    return {**clean, "PREFECT_HOME": str(prefect_home), "COLUMNS": "160"}


def command_lines() -> list[bytes]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes())
            except OSError:
                continue
    return found


def test_a_password_from_stdin_is_in_no_command_line_and_the_cli_has_no_child(
    sim_factory: Callable[..., Sim], tmp_path: Path, cli_prefect_home: Path
) -> None:
    sim = sim_factory("demo", password=SECRET, time_scale=600)
    env = {**base_env(cli_prefect_home), "VAO_URL": sim.url, "VAO_USERNAME": "demo"}
    child = subprocess.Popen(
        [VAODRILL, "run", str(DRILLS / "demo.yaml"), "--password-stdin", "--report-dir", str(tmp_path / "reports")],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None
    child.stdin.write(f"{SECRET}\n".encode())
    child.stdin.close()
    checks = 0
    while child.poll() is None:
        assert not any(SECRET.encode() in line for line in command_lines())
        assert children_of(child.pid) == []  # no child process, so no child environment holds it
        checks += 1
        time.sleep(0.2)
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read(), child.stderr.read()
    assert child.returncode == 0, (out + err).decode()
    assert checks > 0  # the process lists were read while the drill ran
    assert SECRET.encode() not in out + err
    assert len(sim.posts("Run")) == 6


def test_plain_http_to_another_host_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "VAO_URL": "http://vao.corp.example:9899", "VAO_USERNAME": "u", "VAO_PASSWORD": SECRET}
    started = time.monotonic()
    result = vaodrill("plans", env=env, timeout=60)
    assert_user_error(result, "--allow-insecure-http")
    assert SECRET not in result.stdout + result.stderr
    assert time.monotonic() - started < 30


def test_a_refused_login_prints_one_line_and_no_progress_table(
    sim: Sim, tmp_path: Path, cli_prefect_home: Path
) -> None:
    env = {**base_env(cli_prefect_home), "VAO_URL": sim.url, "VAO_USERNAME": "demo", "VAO_PASSWORD": "wrong-password"}
    result = vaodrill("run", str(DRILLS / "demo.yaml"), "--report-dir", str(tmp_path / "r"), env=env)
    assert_user_error(result, "refused")
    assert "Drill progress" not in result.stdout + result.stderr
    assert sim.requests(method="POST", path="/v2/FailoverPlans/*") == []


def test_dry_run_of_a_plan_the_server_does_not_know_exits_2(sim: Sim, tmp_path: Path) -> None:
    spec = tmp_path / "unknown.yaml"
    spec.write_text("name: unknown\nplans:\n  - plan: Mainframe\n")
    env = {**base_env(tmp_path), "VAO_URL": sim.url, "VAO_USERNAME": "demo", "VAO_PASSWORD": "demo"}
    assert_user_error(vaodrill("run", str(spec), "--dry-run", env=env), "Mainframe")


def test_error_lines_are_never_wrapped(tmp_path: Path) -> None:
    name = "a-drill-file-with-a-rather-long-name-so-that-the-error-line-is-well-over-eighty-columns.yaml"
    (tmp_path / name).write_text("name: x\nplans:\n  - plan: A\n    after: [Nonexistent Plan Name]\n")
    env = {k: v for k, v in base_env(tmp_path).items() if k != "COLUMNS"}
    result = vaodrill("validate", name, env=env, cwd=tmp_path)
    assert_user_error(result, name, "Nonexistent Plan Name")
    assert len(result.stderr.strip().splitlines()[0]) > 120
