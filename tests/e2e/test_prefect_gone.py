"""A Prefect API that goes away mid-drill: the drill goes on at the engine's pace and the engine decides every plan.

``vaodrill run`` reports to a ``prefect server start`` of its own (SQLite), which is killed (SIGKILL, its whole
group) as soon as the drill's first Run is POSTed. The drill, a ``dr-drill`` flow run whose plans are task runs
(recorded by Prefect from events sent in the background), still fails over and undoes every plan exactly once,
each dependent's Run leaving at most one poll after the reading that showed its dependencies done, and writes
its report. (Prefect's client then retries the run's final state for about a minute before the process ends:
the report is already written by then.)
"""

from __future__ import annotations

import bisect
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import Sim
from tests.test_engine import write_spec
from vaodrill.report.model import load_report

from .conftest import PREFECT, VAODRILL, Process, clean_env, free_port, wait_until

pytestmark = pytest.mark.e2e


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _at(entry: dict[str, str]) -> float:
    return datetime.fromisoformat(entry["at"]).timestamp()


def test_a_prefect_api_gone_mid_drill_holds_no_run_back(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    home = tmp_path / "server-home"
    home.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = Process(
        "prefect server",
        [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=clean_env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false"),
        cwd=tmp_path,
        log_path=tmp_path / "server.log",
    )
    drill: Process | None = None
    try:
        wait_until(
            lambda: _healthy(api) or not server.alive(), timeout=180, what="prefect server start", diagnose=server.tail
        )
        assert server.alive(), server.tail()
        sim = sim_factory("demo", time_scale=120)
        spec = write_spec(tmp_path, poll_interval="0.5s")
        env = clean_env(
            PREFECT_API_URL=api,
            PREFECT_HOME=str(tmp_path / "client-home"),
            VAO_URL=sim.url,
            VAO_USERNAME="demo",
            VAO_PASSWORD="demo",
        )
        drill = Process(
            "vaodrill run",
            [str(VAODRILL), "run", str(spec), "--report-dir", str(tmp_path / "reports")],
            env=env,
            cwd=tmp_path,
            log_path=tmp_path / "drill.log",
        )
        wait_until(
            lambda: sim.posts("Run") or not drill.alive(),
            timeout=180,
            what="the drill's first Run",
            interval=0.05,
            diagnose=drill.tail,
        )
        os.killpg(server.pid, signal.SIGKILL)
        killed_at = time.time()
        found = wait_until(
            lambda: next(iter((tmp_path / "reports").glob("*/*/report.json")), None),
            timeout=180,
            what="the drill's report after Prefect went away",
            diagnose=drill.tail,
        )
    finally:
        for process in (drill, server):
            if process is not None:
                process.stop()
    report = load_report(found)
    assert report.verdict == "passed", report.reason
    plans = sim.plans()
    ids = {p.plan: plans[p.plan]["id"].lower() for p in report.plans}
    assert sim.posts("Run") == sim.posts("Undo") == {plan_id: 1 for plan_id in ids.values()}

    entries = sim.requests()
    lists = sorted(_at(e) for e in entries if e["method"] == "GET" and e["path"] == "/v2/FailoverPlans")
    ended = {
        name: datetime.fromisoformat(
            next(s for s in plans[name]["stages"] if s["kind"] == "Failover")["ended_at"]
        ).timestamp()
        for name in ids
    }
    runs = {
        e["path"].split("/")[3].lower(): _at(e) for e in entries if e["method"] == "POST" and e["path"].endswith("/Run")
    }

    def first_read_after(plan_id: str, instant: float) -> float:
        """The first reading that could show the plan: the shared list, or a GET of that plan."""
        own = [_at(e) for e in entries if e["method"] == "GET" and e["path"].lower().endswith(plan_id)]
        reads = sorted(lists + own)
        return reads[bisect.bisect_left(reads, instant)]

    checked = 0
    for result in report.plans:
        run = runs[ids[result.plan]]
        if not result.after or run < killed_at:
            continue
        seen = max(first_read_after(ids[dep], ended[dep]) for dep in result.after)  # its dependencies seen done
        polls_between = [t for t in lists if seen < t < run]
        assert len(polls_between) <= 1, (result.plan, seen, run, polls_between)  # at most one poll late
        checked += 1
    assert checked >= 3, "too few Runs after the server was killed to say anything"
