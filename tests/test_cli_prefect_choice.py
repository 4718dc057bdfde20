"""Whether ``vaodrill run`` reports to Prefect: a fresh interpreter, as the CLI starts, in a clean environment.

A configured Prefect API (environment, active profile, ``prefect.toml`` here) makes the drill a flow run; with
none, the engine runs alone and Prefect is not even imported (its imports cost about 2 s of the start).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = "import sys; from vaodrill.app.running import prefect_api_configured as f; print(f(), 'prefect' in sys.modules)"


def probe(cwd: Path, **env: str) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    configured, imported = result.stdout.split()
    return configured, imported


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path / "home"


def test_nothing_configured_runs_the_engine_without_importing_prefect(home: Path) -> None:
    assert probe(home.parent / "work", PREFECT_HOME=str(home)) == ("False", "False")


def test_an_api_url_in_the_environment_is_a_flow_run(home: Path) -> None:
    assert probe(home.parent / "work", PREFECT_HOME=str(home), PREFECT_API_URL="http://127.0.0.1:4200/api")[0] == "True"


def test_the_active_profile_s_api_url_is_a_flow_run(home: Path) -> None:
    (home / "profiles.toml").write_text(
        'active = "ops"\n\n[profiles.ops]\nPREFECT_API_URL = "http://prefect.corp:4200/api"\n'
    )
    assert probe(home.parent / "work", PREFECT_HOME=str(home)) == ("True", "True")


def test_a_profile_without_an_api_url_is_not(home: Path) -> None:
    (home / "profiles.toml").write_text(
        'active = "ops"\n\n[profiles.ops]\nPREFECT_API_URL = ""\n[profiles.other]\nPREFECT_LOGGING_LEVEL = "DEBUG"\n'
    )
    assert probe(home.parent / "work", PREFECT_HOME=str(home))[0] == "False"


def test_a_prefect_toml_here_is_asked(home: Path) -> None:
    work = home.parent / "work"
    (work / "prefect.toml").write_text('[api]\nurl = "http://prefect.corp:4200/api"\n')
    assert probe(work, PREFECT_HOME=str(home)) == ("True", "True")
