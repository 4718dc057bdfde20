"""A VAO server zone left at UTC while the drill reads its rules in another zone: ``validate``, ``run`` (a real
subprocess, no Prefect) and ``doctor`` all say so, naming the zone assumed and how to set the server's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.conftest import Sim
from vaodrill.app.doctor import diagnose
from vaodrill.vao.connection import ConnectionSettings

VAODRILL = str(Path(sys.executable).parent / "vaodrill")
NEW_YORK = "name: ny\nmode: drill\ntimezone: America/New_York\npoll_interval: 0.05s\nplans:\n  - plan: Core Network\n"


@pytest.fixture
def env(cli_prefect_home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_"))}
    return {**clean, "PREFECT_HOME": str(cli_prefect_home), "COLUMNS": "400"}


def vaodrill(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VAODRILL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_validate_warns_and_says_it_in_json(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "ny.yaml"
    spec.write_text(NEW_YORK)
    shown = vaodrill("validate", str(spec), env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "UTC assumed" in shown.stderr and "America/New_York" in shown.stderr and "VAO_TIMEZONE" in shown.stderr
    as_json = json.loads(vaodrill("validate", str(spec), "--json", env=env, cwd=tmp_path).stdout)
    (warning,) = as_json["warnings"]
    assert "UTC assumed" in warning
    told = vaodrill("validate", str(spec), "--json", "--vao-timezone", "America/New_York", env=env, cwd=tmp_path)
    assert json.loads(told.stdout)["warnings"] == [] and "UTC assumed" not in told.stderr
    on_utc = vaodrill("validate", str(spec), "--json", env={**env, "VAO_TIMEZONE": "UTC"}, cwd=tmp_path)
    assert json.loads(on_utc.stdout)["warnings"] == [], "VAO_TIMEZONE=UTC says the server runs on UTC"


def test_run_warns_before_it_starts_and_in_its_table(env: dict[str, str], sim: Sim, tmp_path: Path) -> None:
    spec = tmp_path / "ny.yaml"
    spec.write_text(NEW_YORK)
    env = {**env, "VAO_URL": sim.url, "VAO_USERNAME": "demo", "VAO_PASSWORD": "demo"}
    result = vaodrill("run", str(spec), "--report-dir", str(tmp_path / "reports"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "UTC assumed" in result.stderr and "America/New_York" in result.stderr
    assert "⚠️ warning: VAO server time zone not set: UTC assumed" in result.stdout  # the table's caption
    (report,) = (tmp_path / "reports").glob("ny/*/report.json")
    assert "UTC assumed" in json.loads(report.read_text())["warnings"][0]


def _settings(url: str, **changes: Any) -> ConnectionSettings:
    return ConnectionSettings(url=url, username="demo", password=SecretStr("demo"), simulated=True, **changes)


async def test_doctor_flags_an_unset_zone_for_a_drill_in_another_zone(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAO_TIMEZONE", raising=False)
    diagnosis = await diagnose(_settings(sim.url), drill_timezone="America/New_York")
    zone = next(c for c in diagnosis.checks if c.name == "server time zone")
    assert zone.ok is False and diagnosis.exit_code == 1
    assert "UTC assumed" in zone.detail and "America/New_York" in zone.detail
    assert "VAO_TIMEZONE=America/New_York" in zone.hint

    utc_drill = await diagnose(_settings(sim.url), drill_timezone="UTC")
    assert next(c for c in utc_drill.checks if c.name == "server time zone").ok is None
    told = await diagnose(_settings(sim.url, server_timezone="America/New_York"), drill_timezone="America/New_York")
    assert next(c for c in told.checks if c.name == "server time zone").ok is True


def test_doctor_reads_the_zone_of_the_drill_it_is_given(env: dict[str, str], sim: Sim, tmp_path: Path) -> None:
    spec = tmp_path / "ny.yaml"
    spec.write_text(NEW_YORK)
    env = {**env, "VAO_URL": sim.url, "VAO_USERNAME": "demo", "VAO_PASSWORD": "demo"}
    result = vaodrill("doctor", "--drill", str(spec), env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "server time zone" in line)
    assert line.startswith("✗") and "UTC assumed" in line
    assert (
        vaodrill(
            "doctor", "--drill", str(spec), env={**env, "VAO_TIMEZONE": "America/New_York"}, cwd=tmp_path
        ).returncode
        == 0
    )
