"""``vaodrill demo --api vro``: the demo drill end to end over the embedded simulator's VRO API, in this process
and as a Prefect flow run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import vaodrill

VAODRILL = str(Path(sys.executable).parent / "vaodrill")


def test_the_demo_passes_over_vro(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_API"))}
    result = subprocess.run(
        [VAODRILL, "demo", "--api", "vro", "--report-dir", str(tmp_path)],
        env=env | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "/api/v13" in result.stderr and "Drill demo-app-stack: PASSED" in result.stdout
    assert result.stdout.count("verified") == 6 + 2  # six undos, two RTOs to verified (SQL Tier, Web Tier)
    assert "check 'sql health' passed" in result.stdout and "check 'home page' passed" in result.stdout
    assert list(tmp_path.glob("demo-app-stack/*/report.json"))


async def completed_drill_runs() -> int:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs()
        names = {run.flow_id: (await client.read_flow(run.flow_id)).name for run in runs}
    return sum(1 for run in runs if names[run.flow_id] == "dr-drill" and run.state and run.state.is_completed())


@pytest.fixture
def flow_env(prefect_api: None) -> dict[str, str]:
    """The session's Prefect test API, and no VAO server configured."""
    from prefect.settings import PREFECT_API_URL

    clean = {k: v for k, v in os.environ.items() if not k.startswith("VAO_")}
    return {**clean, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "160"}


def test_the_demo_passes_over_vro_as_a_flow_run(flow_env: dict[str, str], tmp_path: Path) -> None:
    """With a Prefect API configured the demo is a ``dr-drill`` flow run; it speaks VRO all the same."""
    before = asyncio.run(completed_drill_runs())
    result = vaodrill("demo", "--api", "vro", "--report-dir", str(tmp_path), env=flow_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert asyncio.run(completed_drill_runs()) == before + 1
    assert "/api/v13" in result.stderr and "PASSED" in result.stdout and "Traceback" not in result.stderr
    [report] = tmp_path.glob("demo-app-stack/*/report.json")
    data = json.loads(report.read_text())
    assert data["verdict"] == "passed" and {p["undo"] for p in data["plans"]} == {"verified"}
