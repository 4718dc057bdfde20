"""A real ``vaodrill run`` process, killed or signalled mid-drill, and ``vaodrill recover`` after it.

SIGKILL leaves plans failed over and an open journal: ``vaodrill recover --yes`` finds and undoes them. SIGTERM
or SIGINT to the whole process group (what a terminal's Ctrl-C or a service manager does) stops the drill, which
undoes what it failed over, writes its report files and exits 143/130 without a traceback, whether the drill
runs on the engine alone (no Prefect API configured) or as a flow run of a configured Prefect API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Sim
from tests.test_cli import VAODRILL
from tests.test_engine import assert_all_clean, write_spec

SECRET = "Pa55-for-signal-tests"


def start_drill(sim: Sim, tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    spec = write_spec(tmp_path)
    return subprocess.Popen(
        [VAODRILL, "run", str(spec), "--report-dir", str(tmp_path / "reports")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_runs(sim: Sim, child: subprocess.Popen[str], count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(sim.posts("Run")) < count:
        if child.poll() is not None:
            out, err = child.communicate()
            pytest.fail(f"vaodrill exited early ({child.returncode}): {out}\n{err}")
        assert time.monotonic() < deadline, "the drill never sent its Runs"
        time.sleep(0.05)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture
def prefect_home(cli_prefect_home: Path) -> Path:
    return cli_prefect_home


def env_for(sim: Sim, prefect_home: Path, password: str = "demo", prefect_api_url: str | None = None) -> dict[str, str]:
    """Without ``prefect_api_url``, no Prefect API is configured (a new user): the engine runs the drill alone."""
    sim.patch("Active Directory", never_finish=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_"))}
    api = {"PREFECT_API_URL": prefect_api_url} if prefect_api_url else {}
    return {
        **clean,
        **api,
        "PREFECT_HOME": str(prefect_home),
        "VAO_URL": sim.url,
        "VAO_USERNAME": "demo",
        "VAO_PASSWORD": password,
        "COLUMNS": "160",
    }


@pytest.fixture
def cli_env(sim: Sim, prefect_home: Path) -> dict[str, str]:
    return env_for(sim, prefect_home)


def test_sigkill_then_recover_finds_every_plan_clean(sim: Sim, tmp_path: Path, cli_env: dict[str, str]) -> None:
    child = start_drill(sim, tmp_path, cli_env)
    try:
        wait_for_runs(sim, child, 2)
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert sim.posts("Undo") == {}
    states = {name: record["planState"] for name, record in sim.plans().items()}
    assert states["Core Network"] == "Failover" and states["Active Directory"] == "Failover"

    recover = subprocess.run(
        [VAODRILL, "recover", "--yes", "--report-dir", str(tmp_path / "reports")],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert "Core Network" in recover.stdout and "halt and undo" in recover.stdout
    assert_all_clean(sim)
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*/Run")) == 2
    again = subprocess.run(
        [VAODRILL, "recover", "--yes", "--report-dir", str(tmp_path / "reports")],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "nothing to recover" in again.stdout


@pytest.mark.parametrize(
    ("signum", "through"), [(signal.SIGTERM, "engine"), (signal.SIGINT, "engine"), (signal.SIGTERM, "prefect")]
)
def test_a_signal_to_the_process_group_cleans_up_and_reports(
    sim_factory: Callable[..., Sim],
    tmp_path: Path,
    prefect_home: Path,
    signum: signal.Signals,
    through: str,
    request: pytest.FixtureRequest,
) -> None:
    api_url = None
    if through == "prefect":
        from prefect.settings import PREFECT_API_URL

        request.getfixturevalue("prefect_api")
        api_url = PREFECT_API_URL.value()
    sim = sim_factory("demo", password=SECRET)
    child = start_drill(sim, tmp_path, env_for(sim, prefect_home, SECRET, api_url))
    try:
        wait_for_runs(sim, child, 2)
        assert children_of(child.pid) == []  # no process of its own that a signal or a credential could reach
        os.killpg(child.pid, signum)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + signum, (child.returncode, out, err)
    assert "Traceback" not in out + err
    assert "FAILED" in out and signal.Signals(signum).name in out
    reports = list((tmp_path / "reports").glob("*/*/report.json"))
    assert len(reports) == 1
    assert {p.name for p in reports[0].parent.iterdir()} == {
        "report.json",
        "report.md",
        "junit.xml",
        "timeline.svg",
        "evidence.html",
    }
    assert_all_clean(sim)
    assert sim.posts("Run").keys() == sim.posts("Undo").keys()
