"""``doctor`` names the API it spoke and the ones the server offers, and lists the raw states, on VAO v2 and on
VRO; a server offering neither API ends in one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.conftest import Sim
from tests.test_client_limits import Reply, ScriptedServer
from vaodrill.app.doctor import Check, Diagnosis, diagnose
from vaodrill.simulator.server import BackgroundServer
from vaodrill.vao.connection import ConnectionSettings

VAODRILL = str(Path(sys.executable).parent / "vaodrill")
OFFERED = "VAO v2, VRO v7.2, VRO v7.21, VRO v13"


def settings(url: str) -> ConnectionSettings:
    return ConnectionSettings(url=url, username="demo", password=SecretStr("demo"), server_timezone="UTC")


def checks(diagnosis: Diagnosis) -> dict[str, Check]:
    return {c.name: c for c in diagnosis.checks}


@pytest.mark.parametrize(("path", "speaks"), [("", "VAO v2"), ("/api/v13", "VRO v13"), ("/api/v7.21", "VRO v7.21")])
async def test_doctor_names_the_api_and_lists_the_raw_states(
    sim_factory: Callable[..., Sim], path: str, speaks: str
) -> None:
    sim = sim_factory("demo")
    sim.patch("Reporting", state_words={"idle": "Verified (passed check)"})
    diagnosis = await diagnose(settings(sim.url + path))
    found = checks(diagnosis)
    assert diagnosis.exit_code == 0, [c for c in diagnosis.checks if c.ok is False]
    assert found["API"].ok and found["API"].detail == f"speaks {speaks}; the server offers {OFFERED}"
    states = {name: check.detail for name, check in found.items() if name.startswith("state ")}
    assert set(states) == {"state 'Enabled'", "state 'Disabled'", "state 'Verified (passed check)'"}
    assert "idle: runnable when not in use" in states["state 'Verified (passed check)'"]
    assert found["plan list"].detail == "7 plans" and found["single-plan GET"].ok
    assert sim.requests(method="POST", path=sim.path("Run")) == [] and not any(
        e["method"] == "POST" and "/Plans/" in e["path"] for e in sim.requests()
    )  # reads only


async def test_a_url_for_an_api_the_server_does_not_offer_exits_2(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory("demo", apis=("vro",))
    diagnosis = await diagnose(settings(sim.url))
    failed = [c for c in diagnosis.checks if c.ok is False]
    assert diagnosis.exit_code == 2 and [c.name for c in failed] == ["API"]
    assert (
        failed[0].detail
        == ("the URL asks for VAO v2, which this server does not offer; it offers VRO v7.2, VRO v7.21, VRO v13")
        and "/api/v13" in failed[0].hint
    )
    only_vro = await diagnose(settings(sim.url + "/api/v13"))
    assert only_vro.exit_code == 0 and checks(only_vro)["API"].detail == (
        "speaks VRO v13; the server offers VRO v7.2, VRO v7.21, VRO v13"
    )


def neither() -> ScriptedServer:
    return ScriptedServer(
        lambda m, p: Reply.json({"Message": "No such page"}, 404),
        token=lambda: Reply.json({"Message": "No such page"}, 404),
    )


@pytest.mark.parametrize("path", ["", "/api/v13"])
async def test_a_server_offering_neither_api_is_one_failed_check_exit_2(path: str) -> None:
    with BackgroundServer(neither()) as server:
        diagnosis = await diagnose(settings(server.url + path))
    failed = [c for c in diagnosis.checks if c.ok is False]
    assert diagnosis.exit_code == 2 and len(failed) == 1 and failed[0].name == "API"
    assert "offers neither VAO's REST API v2 (/v2) nor VRO's (/api/v7.2, /api/v7.21, /api/v13)" in failed[0].detail


def test_the_doctor_command_against_neither_exits_2() -> None:
    with BackgroundServer(neither()) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAO_")}
        env |= {"VAO_URL": f"{server.url}/api/v13", "VAO_USERNAME": "u", "VAO_PASSWORD": "pw-secret", "COLUMNS": "200"}
        result = subprocess.run([VAODRILL, "doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    failed = [line for line in result.stdout.splitlines() if line.lstrip().startswith("✗")]
    assert len(failed) == 1 and "offers neither" in failed[0], result.stdout
    assert "Traceback" not in result.stdout + result.stderr and "pw-secret" not in result.stdout + result.stderr


async def test_an_account_that_wants_mfa_is_named_by_doctor() -> None:
    from tests.test_vro_client import VroServer, envelope, plan

    server = VroServer(lambda s, n: envelope([plan(1)], 1), token=lambda form: Reply.json({"mfa_token": "t"}))
    with BackgroundServer(server) as background:
        diagnosis = await diagnose(settings(background.url + "/api/v13"))
    failed = [c for c in diagnosis.checks if c.ok is False]
    assert [c.name for c in failed] == ["login"] and "needs multi-factor authentication (MFA)" in failed[0].detail
    assert diagnosis.exit_code == 1 and server.count("GET", "/Plans") == 0
