"""``vaodrill doctor``'s checks against the simulator over real HTTP: the demo, veeam-docs and every profile
exit 0, plans that would stop a drill exit 1, an unreachable or untrusted server exits 2, and nothing but the
token endpoint is ever POSTed to (asserted from the simulator's request log)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr
from rich.console import Console

from tests.conftest import Sim
from tests.test_simulator_support import DEMO_IDS
from vaodrill.app.doctor import Check, Diagnosis, diagnose, render, to_json
from vaodrill.simulator import create_app, load_scenario
from vaodrill.simulator.profiles import variants, with_overrides
from vaodrill.simulator.server import BackgroundServer
from vaodrill.vao.connection import ConnectionSettings

DRILL_PLANS = ["Core Network", "Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting"]
SECRET = "Doc-t0r-Secret"


@pytest.fixture(autouse=True)
def _no_vao_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAO_TIMEZONE", raising=False)


def settings(url: str, **changes: Any) -> ConnectionSettings:
    values: dict[str, Any] = {"url": url, "username": "demo", "password": SecretStr("demo"), "simulated": True}
    values.update(changes)
    return ConnectionSettings(**values)


def checks(diagnosis: Diagnosis) -> dict[str, Check]:
    return {check.name: check for check in diagnosis.checks}


def assert_read_only(sim: Sim) -> None:
    """Only the token endpoint was POSTed to, and the plans were read."""
    entries = sim.requests()
    assert {e["path"] for e in entries if e["method"] == "POST"} == {"/v2/Token"}
    assert {e["method"] for e in entries} == {"POST", "GET"}
    assert [r["run_requests"] for r in sim.plans().values()] == [0] * 7


def token(sim: Sim) -> dict[str, str]:
    answer = sim.control.post("/v2/Token", data={"grant_type": "password", "username": "demo", "password": "demo"})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def scenario_with(overrides: dict[str, Any]) -> dict[str, Any]:
    return with_overrides(load_scenario("demo").model_dump(mode="json"), overrides)


# -- all good ----------------------------------------------------------------------------------------------


async def test_demo_and_veeam_docs_exit_0_and_name_each_plans_state(any_sim: Sim) -> None:
    diagnosis = await diagnose(settings(any_sim.url))
    found = checks(diagnosis)
    assert diagnosis.exit_code == 0, [c for c in diagnosis.checks if c.ok is False]
    states = {name: found[f"plan {name!r}"].detail.split(" (")[0] for name in DEMO_IDS}
    expected = (
        {name: "Enabled" for name in DRILL_PLANS}
        if any_sim.scenario == "demo"
        else {
            "Core Network": "Verified",
            "Active Directory": "NotVerified",
            "SQL Tier": "Verified",
            "App Tier": "Enabled",
            "Web Tier": "NotVerified",
            "Reporting": "Verified",
        }
    )
    assert states == {**expected, "Legacy ERP": "Disabled"}
    assert all(found[f"plan {name!r}"].ok is True for name in DRILL_PLANS)
    erp = found["plan 'Legacy ERP'"]
    assert erp.ok is None and "would not run it" in erp.detail  # disabled on purpose: shown, not a failure
    assert found["single-plan GET"].detail == (
        "answers an object" if any_sim.scenario == "demo" else "answers a one-element array (accepted)"
    )
    assert found["login"].ok and "password grant as 'demo'" in found["login"].detail
    assert found["token refresh"].ok and found["OData"].ok and found["server clock"].ok
    assert found["TLS"].ok is None and "plain HTTP" in found["TLS"].detail
    assert found["server time zone"].ok is None
    assert_read_only(any_sim)
    assert len(any_sim.requests(method="POST")) == 2  # one login, one refresh: a single session


@pytest.mark.parametrize("variant", list(variants()))
async def test_every_profile_exits_0_read_only(sim_factory: Callable[..., Sim], variant: str) -> None:
    sim = sim_factory(scenario_with(variants()[variant]))
    diagnosis = await diagnose(settings(sim.url))
    assert diagnosis.exit_code == 0, [c for c in diagnosis.checks if c.ok is False]
    found = checks(diagnosis)
    assert all(found[f"plan {name!r}"].ok for name in DRILL_PLANS)
    shape = "a one-element array" if variant == "single_get=array" else "an object"
    assert found["single-plan GET"].detail.startswith(f"answers {shape}")
    if variant.startswith("idle_state="):
        assert found["plan 'SQL Tier'"].detail.startswith(variant.split("=")[1] + " (")
    assert_read_only(sim)


async def test_a_completed_undo_left_as_undo_failover_is_runnable(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory(scenario_with({"defaults": {"after_undo": "UndoFailover", "details_style": "veeam"}}))
    auth, sql = token(sim), DEMO_IDS["SQL Tier"]
    run = {"mode": "FailoverNow", "planlaunchOptions": {"executeChainedPlans": False}}
    assert sim.control.post(f"/v2/FailoverPlans/{sql}/Run", json=run, headers=auth).status_code == 200
    sim.control.post("/_sim/clock/advance", json={"seconds": 1}).raise_for_status()  # 600 simulated seconds
    assert sim.control.post(f"/v2/FailoverPlans/{sql}/Undo", headers=auth).status_code == 200
    sim.control.post("/_sim/clock/advance", json={"seconds": 1}).raise_for_status()
    sim.control.delete("/_sim/requests").raise_for_status()
    diagnosis = await diagnose(settings(sim.url))
    sql_check = checks(diagnosis)["plan 'SQL Tier'"]
    assert (sql_check.ok, sql_check.detail) == (
        True,
        "UndoFailover (Complete, no errors, no warnings): vaodrill would run it",
    )
    assert diagnosis.exit_code == 0
    assert {e["path"] for e in sim.requests(method="POST")} == {"/v2/Token"}


async def test_child_client_login(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory("veeam-docs")
    diagnosis = await diagnose(
        settings(
            sim.url,
            username="",
            password=SecretStr(""),
            client_id="drill-tool",
            client_secret=SecretStr("drill-tool-secret"),
        )
    )
    login = checks(diagnosis)["login"]
    assert (login.ok, login.hint) == (True, "")
    assert login.detail.startswith("client_credentials grant as child client 'drill-tool'")
    assert diagnosis.exit_code == 0
    assert_read_only(sim)


# -- something would stop a drill (exit 1) -----------------------------------------------------------------


async def test_a_disabled_drill_plan_exits_1_and_is_named(sim: Sim) -> None:
    sim.patch("SQL Tier", state="Disabled")
    assert (await diagnose(settings(sim.url))).exit_code == 0, "without a drill, Disabled is a choice"
    diagnosis = await diagnose(settings(sim.url), plans=[*DRILL_PLANS[:2], DEMO_IDS["SQL Tier"].upper()])
    assert diagnosis.exit_code == 1
    failed = [c for c in diagnosis.checks if c.ok is False]
    assert [c.name for c in failed] == ["plan 'SQL Tier'"]
    assert failed[0].detail.startswith("Disabled (Ready); vaodrill would not run it: ")
    assert "enable the plan" in failed[0].hint
    assert checks(diagnosis)["plan 'Legacy ERP'"].ok is None  # not in the drill
    assert_read_only(sim)


async def test_a_plan_left_failed_over_exits_1(sim: Sim) -> None:
    run = {"mode": "FailoverNow", "planlaunchOptions": {"executeChainedPlans": False}}
    core = DEMO_IDS["Core Network"]
    assert sim.control.post(f"/v2/FailoverPlans/{core}/Run", json=run, headers=token(sim)).status_code == 200
    sim.control.post("/_sim/clock/advance", json={"seconds": 1}).raise_for_status()
    sim.control.delete("/_sim/requests").raise_for_status()
    diagnosis = await diagnose(settings(sim.url))
    check = checks(diagnosis)["plan 'Core Network'"]
    assert check.ok is False and check.detail.startswith("Failover (Complete, no errors, no warnings); ")
    assert "left it failed over" in check.hint
    assert diagnosis.exit_code == 1
    assert {e["path"] for e in sim.requests(method="POST")} == {"/v2/Token"}
    assert len(sim.requests(method="POST", path="/v2/FailoverPlans/*")) == 0


async def test_an_unknown_drill_plan_exits_1(sim: Sim) -> None:
    diagnosis = await diagnose(settings(sim.url), plans=["Core Network", "Mainframe"])
    assert [c.name for c in diagnosis.checks if c.ok is False] == ["plan 'Mainframe'"]
    assert diagnosis.exit_code == 1


async def test_a_refused_login_exits_1_without_leaking_the_password(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory("demo", password="the-real-one")
    diagnosis = await diagnose(settings(sim.url, password=SecretStr(SECRET)))
    login = checks(diagnosis)["login"]
    assert login.ok is False and "refused (HTTP 400)" in login.detail
    assert diagnosis.exit_code == 1
    assert [e["method"] for e in sim.requests()] == ["POST"], "nothing is read after a refused login"
    console = Console(record=True, width=200)
    render(diagnosis, console)
    assert SECRET not in console.export_text() and SECRET not in json.dumps(to_json(diagnosis))


async def test_a_clock_far_off_exits_1(sim: Sim) -> None:
    diagnosis = await diagnose(settings(sim.url), clock=lambda: time.time() - 900)
    clock = checks(diagnosis)["server clock"]
    assert (clock.ok, clock.detail) == (False, "15 min ahead of this machine's")
    assert diagnosis.exit_code == 1
    near = checks(await diagnose(settings(sim.url), clock=lambda: time.time() + 60))["server clock"]
    assert near.ok is True and near.detail.endswith("behind this machine's")


# -- information only --------------------------------------------------------------------------------------


async def test_refused_refresh_and_short_tokens_are_information(sim_factory: Callable[..., Sim]) -> None:
    sim = sim_factory("demo", access_token_ttl=60, refresh_token_ttl=0)
    diagnosis = await diagnose(settings(sim.url))
    found = checks(diagnosis)
    assert found["token refresh"].ok is None and "refused (HTTP 400)" in found["token refresh"].detail
    assert "60 s" in found["login"].detail and "tokens last only 60 s" in found["login"].hint
    assert diagnosis.exit_code == 0


async def test_server_time_zone_set(sim: Sim) -> None:
    zone = checks(await diagnose(settings(sim.url, server_timezone="Europe/Berlin")))["server time zone"]
    assert (zone.ok, zone.detail) == (True, "Europe/Berlin (VAO reads restore-point dates in it)")


# -- cannot connect (exit 2) -------------------------------------------------------------------------------


async def test_an_unreachable_server_exits_2() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    diagnosis = await diagnose(settings(f"http://127.0.0.1:{port}"))
    assert diagnosis.exit_code == 2
    connection = checks(diagnosis)["connection"]
    assert connection.ok is False and "cannot connect" in connection.detail and "9899" in connection.hint
    assert "plan list" not in checks(diagnosis)


async def test_a_server_that_does_not_answer_in_time_exits_2(sim: Sim) -> None:
    sim.control.post(
        "/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "latency": 1, "count": 1}
    ).raise_for_status()
    diagnosis = await diagnose(settings(sim.url, timeout=0.3))
    connection = checks(diagnosis)["connection"]
    assert connection.ok is False and connection.detail.startswith("GET /v2/FailoverPlans: no ")
    assert diagnosis.exit_code == 2


async def test_an_untrusted_certificate_exits_2_and_a_ca_bundle_fixes_it(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, bundle = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(bundle))
    app = create_app("demo", password="demo")
    with BackgroundServer(app, ssl_certfile=certfile, ssl_keyfile=keyfile) as server:
        untrusted = await diagnose(settings(server.url))
        assert untrusted.exit_code == 2
        tls = [c for c in untrusted.checks if c.name == "TLS"]
        assert tls[-1].ok is False and "not trusted" in tls[-1].detail and "--ca-bundle" in tls[-1].hint
        trusted = await diagnose(settings(server.url, ca_bundle=str(bundle)))
        assert trusted.exit_code == 0
        assert checks(trusted)["TLS"] == Check(
            "TLS", True, f"HTTPS, certificate verified against the CA bundle {bundle}"
        )
    assert {e["path"] for e in app.state.sim.log.select(method="POST")} == {"/v2/Token"}


async def test_a_missing_ca_bundle_exits_2(tmp_path: Path) -> None:
    diagnosis = await diagnose(settings("https://127.0.0.1:9", ca_bundle=str(tmp_path / "nope.pem")))
    assert diagnosis.exit_code == 2
    assert diagnosis.checks[0].name == "TLS" and "CA bundle not found" in diagnosis.checks[0].detail


# -- output ------------------------------------------------------------------------------------------------


async def test_render_and_json(sim: Sim) -> None:
    sim.patch("SQL Tier", state="Disabled")
    diagnosis = await diagnose(settings(sim.url), plans=["SQL Tier"])
    console = Console(record=True, width=300)
    render(diagnosis, console)
    text = console.export_text()
    assert "✓ login: password grant as 'demo'" in text
    assert "✗ plan 'SQL Tier': Disabled (Ready); vaodrill would not run it" in text
    assert "    → enable the plan in VAO, or leave it out of the drill" in text
    assert "· TLS: plain HTTP" in text
    assert text.rstrip().endswith("something above would stop a drill")
    data = json.loads(json.dumps(to_json(diagnosis)))
    assert data["exit_code"] == 1
    assert {"name": "plan 'SQL Tier'", "ok": False}.items() <= next(
        c for c in data["checks"] if c["name"] == "plan 'SQL Tier'"
    ).items()
    assert len(data["checks"]) == len(diagnosis.checks)
