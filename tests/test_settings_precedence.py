"""One settings model, one precedence: a flag over the block over the environment, field by field, for every
command (run, plans, doctor, recover, serve) and the flows; and one login per drill through Prefect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from pydantic import SecretStr

from tests.conftest import Sim
from vaodrill.vao.connection import ConnectionSettings

ROOT = Path(__file__).resolve().parent.parent
VAODRILL = str(Path(sys.executable).parent / "vaodrill")
ENV = {
    "VAO_URL": "https://env.example:9899",
    "VAO_USERNAME": "env-user",
    "VAO_PASSWORD": "env-pw",
    "VAO_TIMEZONE": "Europe/Berlin",
    "VAO_CA_BUNDLE": "/env/ca.pem",
}


def test_a_flag_over_the_block_over_the_environment_field_by_field() -> None:
    block = ConnectionSettings(
        url="https://block.example:9899", username="block-user", password=SecretStr("block-pw"), timeout=7
    )
    merged = ConnectionSettings.resolve(flags={"username": "flag-user", "url": None}, block=block, env=ENV)
    assert merged is not None
    assert (merged.url, merged.username, merged.password.get_secret_value()) == (
        "https://block.example:9899",
        "flag-user",
        "block-pw",
    )
    assert (merged.server_timezone, merged.ca_bundle, merged.timeout) == ("Europe/Berlin", "/env/ca.pem", 7)
    only_env = ConnectionSettings.resolve(flags={"url": "https://flag.example:9899"}, env=ENV)
    assert only_env is not None and only_env.password.get_secret_value() == "env-pw"
    assert only_env.url == "https://flag.example:9899"  # a flag's URL with the environment's password
    assert ConnectionSettings.resolve(env={}) is None


def test_every_command_has_the_one_definition_of_the_connection_options() -> None:
    from vaodrill.app.cli import app
    from vaodrill.app.connect import ConnectionOptions

    group = typer.main.get_command(app)
    expected = {f for f in ConnectionOptions.__dataclass_fields__}
    for name in ("run", "plans", "doctor", "recover", "serve"):
        command = group.commands[name]  # type: ignore[attr-defined]
        assert expected <= {p.name for p in command.params}, name


def test_the_flows_resolve_as_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's block over the VAO_* variables of the machine running it; the masked secret a CLI drill's stored
    request holds is not a password: the reader's own environment gives it."""
    from vaodrill.app.connect import ConnectionOptions, resolve_settings
    from vaodrill_prefect.flows.drill import DrillRequest, connection_settings
    from vaodrill_prefect.tasks.blocks import VaoServer

    for key in [k for k in os.environ if k.startswith("VAO_")]:
        monkeypatch.delenv(key)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    block = VaoServer(url="https://block.example:9899", username="block-user")
    from_flow = connection_settings(block)
    assert (from_flow.url, from_flow.username, from_flow.password.get_secret_value()) == (
        "https://block.example:9899",
        "block-user",
        "env-pw",
    )
    from_cli = resolve_settings(ConnectionOptions(username="block-user", vao_url="https://block.example:9899"))
    assert from_cli == from_flow
    stored = DrillRequest.model_validate(
        {"vao_block": {"url": "https://cli.example:9899", "username": "u", "password": "**********"}}
    )
    assert connection_settings(stored.vao_block).password.get_secret_value() == "env-pw"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VAODRILL, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_plans_doctor_and_run_take_the_url_from_the_flag_and_the_password_from_the_environment(sim: Sim) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_API"))},
        "VAO_URL": "https://wrong.example:1",
        "VAO_USERNAME": "demo",
        "VAO_PASSWORD": "demo",
    }
    for args in (["plans", "--json"], ["doctor", "--json"], ["run", "deployments/drills/demo.yaml", "--dry-run"]):
        result = run(*args, "--vao-url", sim.url, env=env)
        assert result.returncode in (0, 1), (args, result.stderr)
        assert "wrong.example" not in result.stdout + result.stderr
    bad = run("plans", "--vao-url", sim.url, "--username", "nobody", env=env)  # the flag's user, env's password
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.usefixtures("prefect_api")
def test_one_login_per_drill_through_prefect(sim: Sim, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VAO_")},
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "VAO_URL": sim.url,
        "VAO_USERNAME": "demo",
        "VAO_PASSWORD": "demo",
    }
    before = len(sim.requests("POST", "/v2/Token"))
    result = run("run", "deployments/drills/demo.yaml", "--report-dir", str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    assert len(sim.requests("POST", "/v2/Token")) - before == 1
    # the run's request carried the settings; the API stored them with the secret masked
    from uuid import UUID

    from prefect.client.orchestration import get_client

    [report] = tmp_path.rglob("report.json")
    with get_client(sync_client=True) as client:
        run_ = client.read_flow_run(UUID(json.loads(report.read_text())["run_id"]))
    stored = run_.parameters["request"]["vao_block"]
    assert stored["url"] == sim.url and stored["username"] == "demo" and not stored["password"].strip("*")


@pytest.mark.usefixtures("prefect_api")
def test_serve_keeps_vao_variables_from_the_runs_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve``'s settings (flag over block over environment) become a block; the VAO_* variables leave its
    environment, which the flow-run processes it starts inherit (read from /proc of a real child)."""
    from vaodrill.app.connect import SERVE_BLOCK, ConnectionOptions, served_block
    from vaodrill_prefect.tasks.blocks import VaoServer

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    assert served_block(ConnectionOptions(username="flag-user")) == SERVE_BLOCK
    saved = VaoServer.load(SERVE_BLOCK)
    assert isinstance(saved, VaoServer)  # load is sync here (no event loop runs)
    assert (saved.url, saved.username, saved.password.get_secret_value()) == (ENV["VAO_URL"], "flag-user", "env-pw")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        environ = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
    finally:
        child.kill()
        child.wait()
    assert not [v for v in environ if v.startswith(b"VAO_")]
