"""``vaodrill cockpit`` as a user runs it (``./run cockpit``): a real process, its printed URL opened in headless
Chromium, stopped with a real SIGINT, and no process it started left behind.

The cockpit runs from the repository root (as ``./run`` does) with its home in a temporary directory, so its
children are found afterwards by that home in their environment (every one of them inherits ``PREFECT_HOME``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import REPO_ROOT, VAODRILL, Process, clean_env, wait_until
from .test_browser import CHROMIUM, Chromium

pytestmark = pytest.mark.e2e

DRILL = "demo-app-stack"
PLANS = ("Core Network", "Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting")
_RUN_URL = re.compile(r"demo drill: (?P<ui>http://127\.0\.0\.1:\d+)/runs/flow-run/(?P<id>[0-9a-f-]{36})")


def processes_with(marker: str, also: bytes = b"") -> list[str]:
    """Every live process whose environment mentions ``marker`` (and ``also``): pid and command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if marker.encode() in environ and also in environ:
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {argv}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


async def test_cockpit_shows_the_demo_drill_and_leaves_nothing_behind(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-chromium", pytrace=False)
    home = tmp_path / "cockpit-home"
    cockpit = Process(
        "vaodrill cockpit",
        [str(VAODRILL), "cockpit", "--home", str(home)],
        env=clean_env(),
        cwd=REPO_ROOT,
        log_path=tmp_path / "cockpit.log",
    )
    try:

        def printed_url() -> re.Match[str] | None:
            if not cockpit.alive():
                pytest.fail(f"the cockpit exited with {cockpit.popen.returncode}\n{cockpit.tail()}", pytrace=False)
            return _RUN_URL.search(cockpit.log_path.read_text(errors="replace"))

        found = wait_until(printed_url, timeout=300, what="the demo drill's URL", diagnose=cockpit.tail)
        ui, run_id = found["ui"], found["id"]

        # a second cockpit in the same place says where the first one is, and starts nothing
        second = subprocess.run(
            [str(VAODRILL), "cockpit", "--home", str(home)],
            env=clean_env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert second.returncode == 2, second
        assert "already running" in second.stderr and ui in second.stderr, second.stderr

        with_password: list[str] = []

        def finished() -> dict[str, Any] | None:
            # the server, the runner and the drill's flow-run process reach the simulator through a block
            with_password.extend(processes_with(str(home), b"\0VAO_PASSWORD="))
            run = httpx.get(f"{ui}/api/flow_runs/{run_id}", timeout=10).json()
            return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        def logs() -> str:
            return "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(home.glob("logs/*.log")))

        run = wait_until(finished, timeout=240, interval=1, what="the demo drill's end", diagnose=logs)
        assert run["state"]["type"] == "COMPLETED", json.dumps(run["state"])
        assert with_password == []

        graph = httpx.get(f"{ui}/api/flow_runs/{run_id}/graph-v2", timeout=30).json()
        labels = " ".join(node["label"] for _, node in graph["nodes"])
        assert all(plan in labels for plan in PLANS), labels

        async with Chromium(tmp_path) as page:
            await page.goto(f"{ui}/runs/flow-run/{run_id}")
            await page.wait_for_text([DRILL, "Completed"], timeout=90, shot=tmp_path / "cockpit-run.png")
            await page.wait_for(
                "(() => { const c = document.querySelector('.flow-run-graph canvas');"
                " return !!c && c.getBoundingClientRect().width > 500; })()",
                timeout=30,
                what="the run graph's canvas",
                shot=tmp_path / "cockpit-graph.png",
            )
            await page.click("Artifacts")
            await page.wait_for_text([f"drill-{DRILL}-report"], timeout=60, shot=tmp_path / "cockpit-artifacts.png")

        cockpit.popen.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        assert cockpit.popen.wait(90) == 0, cockpit.tail()
        assert "cockpit stopped" in cockpit.log_path.read_text()
        assert processes_with(str(home)) == []
    finally:
        cockpit.stop()  # SIGTERM: the cockpit stops its children itself; then its group is killed
