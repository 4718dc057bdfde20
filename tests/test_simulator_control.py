"""The /_sim control plane: scenarios (built-in, files, bodies, bad ones), reset, per-plan PATCH, faults
(burst, rate, 429 Retry-After, latency, drops through ASGITransport) and the request log (content, filtering,
clearing, and never a secret)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_simulator_support import DEMO_IDS, P_ID, PASSWORD, T0, Api, FakeClock, app_for, one_plan_scenario
from vaodrill.simulator import ConnectionDropped, ScenarioError, create_app, load_scenario
from vaodrill.simulator.scenario import plan_id_for

SQL = DEMO_IDS["SQL Tier"]


# -- scenarios ---------------------------------------------------------------------------------------------


def test_demo_scenario() -> None:
    demo = load_scenario("demo")
    plans = {spec.name: (demo.plan_id(spec), spec.state, demo.settings_for(spec)) for spec in demo.plans}
    assert {name: plan_id for name, (plan_id, _, _) in plans.items()} == DEMO_IDS
    assert [name for name, (_, state, _) in plans.items() if state == "Disabled"] == ["Legacy ERP"]
    assert plans["App Tier"][0] != plans["Reporting"][0]
    for name, (_, state, settings) in plans.items():
        assert 120 <= settings.failover_duration <= 360, name
        assert 60 <= settings.undo_duration <= 120, name
        if state == "Enabled":
            assert 15 <= settings.target_rto <= 60, name
        assert settings.contact_email.endswith("@example.com")
    assert demo.timezone == "UTC"


def test_scenario_from_a_yaml_file_with_generated_ids(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "timezone: Europe/Berlin\n"
        "defaults: {failover_duration: 30, steps: 3, restore_points: {every_hours: 12, days: 2}}\n"
        "plans:\n"
        "  - name: Files\n"
        "    target_rto: 20\n"
        "  - name: Mail\n"
        "    state: Disabled\n"
        "    restore_points: [2027-01-15T02:00:00, '2027-01-14T02:00:00+01:00']\n"
        "    schedule_time: 2027-01-16 03:00:00\n",
        encoding="utf-8",
    )
    app = create_app(path, clock=FakeClock())
    sim = app.state.sim
    summary = sim.summary()
    assert [(p["name"], p["planState"]) for p in summary["plans"]] == [("Files", "Enabled"), ("Mail", "Disabled")]
    assert summary["plans"][0]["id"] == plan_id_for("Files") == create_app(path).state.sim.summary()["plans"][0]["id"]
    files = sim.record(plan_id_for("Files"))
    assert files["settings"]["steps"] == 3 and files["settings"]["target_rto"] == 20
    assert len(files["restore_points"]) == 4
    mail = sim.record(plan_id_for("Mail"))
    assert mail["restore_points"] == ["2027-01-15T01:00:00.000000Z", "2027-01-14T01:00:00.000000Z"]
    assert sim.read_plan(plan_id_for("Mail"))["scheduleTime"] == "2027-01-16T03:00:00"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "plans:\n  - name: A\n    failover_duration: 0\n",
            "plans[0].failover_duration: Input should be greater than 0",
        ),
        ("plans:\n  - name: A\n    colour: red\n", "plans[0].colour: Extra inputs are not permitted"),
        ("plans:\n  - name: A\n  - name: A\n", "two plans are named 'A'"),
        ("plans:\n  - {name: A, steps: 2, halt_at_step: 3}\n", "plan 'A': halt_at_step 3 is beyond the plan's 2 steps"),
        ("plans:\n  - {name: A, schedule_after: Z}\n", "schedule_after 'Z' names no plan"),
        ("plans:\n  - {name: A, id: not-a-guid}\n", "plans[0].id: 'not-a-guid' is not a GUID"),
        (
            "plans:\n  - {name: A, restore_points: [yesterday]}\n",
            "plans[0].restore_points[0]: 'yesterday' is not an ISO",
        ),
        ("timezone: Mars/Olympus\nplans: []\n", "timezone: unknown time zone 'Mars/Olympus'"),
        ("plans: [\n  - name: A\n", "line 2, column 3: expected the node content"),
        ("- just\n- a list\n", "a scenario must be a mapping"),
    ],
)
def test_bad_scenario_file_is_one_clear_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        create_app(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert isinstance(info.value, ValueError)


def test_missing_scenario_file_names_the_builtins() -> None:
    with pytest.raises(ScenarioError, match=r"no such scenario file, and not a built-in scenario \(demo"):
        create_app("/nonexistent/site.yaml")


async def test_post_scenario_yaml_and_json_replace_state(api: Api) -> None:
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    loaded = await api.http.post("/_sim/scenario", content=b"name: tiny\nplans:\n  - name: Only\n")
    assert loaded.status_code == 200
    assert [p["name"] for p in loaded.json()["plans"]] == ["Only"]
    assert (await api.get("/v2/FailoverPlans")).status_code == 401, "a new scenario starts without tokens"
    api.token = None
    assert [p["name"] for p in (await api.get("/v2/FailoverPlans")).json()] == ["Only"]
    as_json = await api.http.post("/_sim/scenario", content=json.dumps({"plans": [{"name": "J"}]}).encode())
    assert as_json.json()["plans"][0]["id"] == plan_id_for("J")
    bad = await api.http.post("/_sim/scenario", content=b"plans:\n  - name: A\n    steps: -1\n")
    assert bad.status_code == 400
    assert bad.json()["Message"].startswith("request body: plans[0].steps: ")


async def test_reset_gives_fresh_state_and_can_switch_scenario_and_progression(api: Api) -> None:
    await api.login()
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    await api.http.post("/_sim/faults", json={"path": "/nowhere", "status": 500})
    await api.http.post("/_sim/clock/advance", json={"seconds": 10})
    reset = await api.http.post("/_sim/reset")
    assert reset.status_code == 200
    assert reset.json()["clock_offset"] == 0 and reset.json()["progression"] == "time"
    assert (await api.http.get("/_sim/faults")).json() == []
    assert (await api.http.get("/_sim/requests")).json() == []
    assert (await api.get("/v2/FailoverPlans")).status_code == 401
    api.token = None
    assert (await api.plan(SQL))["planState"] == "Enabled"

    other = await api.http.post(
        "/_sim/reset", json={"scenario": one_plan_scenario(), "progression": "tick", "time_scale": 5}
    )
    assert (other.json()["progression"], other.json()["time_scale"]) == ("tick", 5)
    api.token = None
    await api.op(P_ID, "Run", {"mode": "FailoverNow"})
    assert (await api.plan(P_ID))["planStateDetails"] == "In progress: step 2 of 2"
    back = await api.http.post("/_sim/reset", json={"scenario": "demo"})
    assert back.json()["scenario"] == "demo" and back.json()["progression"] == "tick"
    bad = await api.http.post("/_sim/reset", json={"scenario": {"plans": [{"nom": "x"}]}})
    assert bad.status_code == 400 and "plans[0].name: Field required" in bad.json()["Message"]


# -- PATCH /_sim/plans/{id} --------------------------------------------------------------------------------


async def test_patch_changes_settings_and_forces_state(api: Api, clock: FakeClock) -> None:
    response = await api.http.patch(
        f"/_sim/plans/{SQL.upper()}",
        json={"failover_duration": 600, "steps": 3, "target_rto": 90, "description": "patched"},
    )
    assert response.status_code == 200
    assert response.json()["settings"]["failover_duration"] == 600
    plan = await api.plan(SQL)
    assert (plan["targetRTO"], plan["description"]) == (90, "patched")
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(599)
    assert (await api.plan(SQL))["planStateDetails"] == "In progress: step 3 of 3"
    forced = await api.http.patch(f"/_sim/plans/{SQL}", json={"state": "Disabled"})
    assert forced.json()["planState"] == "Disabled"
    assert forced.json()["stages"][0]["status"] == "aborted"
    assert forced.json()["events"][-1] == {"at": "2027-01-15T08:09:59.000000Z", "event": "patched", "state": "Disabled"}
    await api.http.patch(f"/_sim/plans/{SQL}", json={"state": "Enabled"})
    assert (await api.plan(SQL))["planState"] == "Enabled"


async def test_patch_restore_points_and_clearing_halt(api: Api) -> None:
    await api.http.patch(f"/_sim/plans/{SQL}", json={"restore_points": ["2027-01-01T00:00:00"], "halt_at_step": 2})
    record = (await api.http.patch(f"/_sim/plans/{SQL}", json={"halt_at_step": None})).json()
    assert record["restore_points"] == ["2027-01-01T00:00:00.000000Z"]
    assert record["settings"]["halt_at_step"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"halt_at_step": 7},
        {"steps": 0},
        {"colour": "red"},
        {"id": "x"},
        {"state": "Failover"},
        {"failover_duration": None},
        {"never_finish": "maybe"},
        {"restore_points": {"every_hours": -4}},
    ],
)
async def test_patch_rejects_bad_settings(api: Api, body: dict[str, Any]) -> None:
    response = await api.http.patch(f"/_sim/plans/{SQL}", json=body)
    assert response.status_code == 400, response.text
    assert (await api.record(SQL))["settings"]["steps"] == 6, "a refused patch changes nothing"


async def test_patch_unknown_plan_is_404(api: Api) -> None:
    response = await api.http.patch("/_sim/plans/00000000-0000-0000-0000-000000000000", json={"steps": 2})
    assert response.status_code == 404


# -- faults ------------------------------------------------------------------------------------------------


async def add_fault(api: Api, **spec: Any) -> str:
    response = await api.http.post("/_sim/faults", json=spec)
    assert response.status_code == 200, response.text
    fault_id: str = response.json()["id"]
    return fault_id


async def test_burst_fault_fires_count_times_then_is_spent(api: Api) -> None:
    fault = await add_fault(api, method="GET", path="/v2/FailoverPlans*", status=503, count=2)
    statuses = [(await api.get("/v2/FailoverPlans")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert (await api.get(f"/v2/FailoverPlans/{SQL}")).status_code == 200
    failing = await api.http.get("/_sim/faults")
    assert failing.json() == [
        {
            "id": fault,
            "method": "GET",
            "path": "/v2/FailoverPlans*",
            "status": 503,
            "count": 2,
            "fired": 2,
            "spent": True,
        }
    ]
    log = (await api.http.get("/_sim/requests", params={"path": "/v2/FailoverPlans"})).json()
    assert [(e["status"], e["fault"]) for e in log] == [(503, fault), (503, fault), (200, None)]


async def test_fault_response_body_and_method_filter(api: Api) -> None:
    await add_fault(api, method="post", path="/v2/FailoverPlans/*/Run", status=500)
    assert (await api.get("/v2/FailoverPlans")).status_code == 200
    response = await api.op(SQL, "Run", {"mode": "FailoverNow"})
    assert response.status_code == 500
    assert response.json()["Message"].startswith("Simulated fault fault-1")
    record = await api.record(SQL)
    assert (record["planState"], record["run_requests"]) == ("Enabled", 0), "a status fault is not processed"


async def test_retry_after_defaults_to_429(api: Api) -> None:
    await api.login()  # the glob below would match /v2/Token too
    await add_fault(api, path="/v2/*", retry_after=3, count=1)
    throttled = await api.get("/v2/FailoverPlans")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3"
    assert (await api.get("/v2/FailoverPlans")).status_code == 200


async def test_token_endpoint_can_fail_too(api: Api) -> None:
    await add_fault(api, method="POST", path="*Token", status=503, count=1)
    response = await api.http.post(
        "/v2/Token", data={"grant_type": "password", "username": "demo", "password": PASSWORD}
    )
    assert response.status_code == 503
    await api.login()


async def _rate_pattern(seed: int | None) -> list[int]:
    api = Api(app_for("demo"))
    try:
        await api.login()
        spec: dict[str, Any] = {"path": "/v2/FailoverPlans", "status": 503, "rate": 0.5}
        if seed is not None:
            spec["seed"] = seed
        await add_fault(api, **spec)
        return [(await api.get("/v2/FailoverPlans")).status_code for _ in range(40)]
    finally:
        await api.aclose()


async def test_rate_fault_is_seeded_and_reproducible() -> None:
    first, again, other, default = (
        await _rate_pattern(7),
        await _rate_pattern(7),
        await _rate_pattern(8),
        await _rate_pattern(None),
    )
    assert first == again
    assert first != other
    assert default == await _rate_pattern(0)
    assert set(first) == {200, 503}
    assert 10 <= first.count(503) <= 30


async def test_latency_fault_delays_then_processes(api: Api) -> None:
    await add_fault(api, path=f"/v2/FailoverPlans/{SQL}", latency=0.2, count=1)
    await api.login()
    started = time.perf_counter()
    response = await api.get(f"/v2/FailoverPlans/{SQL}")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.json()["name"] == "SQL Tier"
    assert 0.2 <= elapsed < 2.0


async def test_latency_after_holds_an_answer_the_plan_has_acted_on(api: Api) -> None:
    """The Run is handled at once and its answer held: the plan shows the failover while the caller still waits."""
    await api.login()
    await add_fault(api, method="POST", path="/v2/FailoverPlans/*/Run", latency_after=30, count=1)
    run = asyncio.create_task(api.op(SQL, "Run", {"mode": "FailoverNow"}))
    async with asyncio.timeout(10):
        while (await api.record(SQL))["planState"] != "Failover":
            await asyncio.sleep(0)
    assert not run.done(), "the answer left before the hold"
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run


async def test_drop_before_over_asgi_transport_raises_and_processes_nothing(api: Api) -> None:
    await api.login()
    await add_fault(api, method="POST", path="/v2/FailoverPlans/*/Run", drop="before", count=1)
    with pytest.raises(httpx.RemoteProtocolError) as info:
        await api.op(SQL, "Run", {"mode": "FailoverNow"})
    assert isinstance(info.value, ConnectionDropped)
    record = await api.record(SQL)
    assert (record["planState"], record["run_requests"]) == ("Enabled", 0)


async def test_drop_after_over_asgi_transport_raises_but_the_plan_started(api: Api) -> None:
    await api.login()
    await add_fault(api, method="POST", path="/v2/FailoverPlans/*/Run", drop="after", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await api.op(SQL, "Run", {"mode": "FailoverNow"})
    record = await api.record(SQL)
    assert (record["planState"], record["run_requests"]) == ("Failover", 1)
    retry = await api.op(SQL, "Run", {"mode": "FailoverNow"})
    assert retry.status_code == 409, "a blind retry of a Run meets the plan it already started"
    log = (await api.http.get("/_sim/requests", params={"method": "POST", "path": "*/Run"})).json()
    assert [(e["status"], e["fault"]) for e in log] == [(None, "fault-1"), (409, None)]


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"path": "/v2/*"},
        {"status": 503, "drop": "after"},
        {"status": 200},
        {"rate": 1.5, "status": 503},
        {"count": 0, "status": 503},
        {"drop": "sideways"},
        {"latency": -1},
        {"latency_after": 301},
        {"status": 503, "latency_after": 1},
        {"status": 503, "colour": "red"},
    ],
)
async def test_bad_fault_specs_are_400(api: Api, spec: dict[str, Any]) -> None:
    response = await api.http.post("/_sim/faults", json=spec)
    assert response.status_code == 400 and response.json()["Message"]


async def test_delete_faults(api: Api) -> None:
    first = await add_fault(api, path="/v2/FailoverPlans", status=503)
    await add_fault(api, path="/v2/FailoverPlans/*", status=502)
    assert (await api.http.delete(f"/_sim/faults/{first}")).status_code == 204
    assert (await api.http.delete(f"/_sim/faults/{first}")).status_code == 404
    assert (await api.get("/v2/FailoverPlans")).status_code == 200
    assert (await api.get(f"/v2/FailoverPlans/{SQL}")).status_code == 502
    assert (await api.http.delete("/_sim/faults")).status_code == 204
    assert (await api.get(f"/v2/FailoverPlans/{SQL}")).status_code == 200


async def test_control_plane_is_never_faulted(api: Api) -> None:
    await add_fault(api, path="*", status=503)
    assert (await api.http.get("/_sim/plans")).status_code == 200
    assert (await api.http.get("/_sim/docs")).status_code == 200


# -- request log -------------------------------------------------------------------------------------------


async def test_request_log_entries(api: Api, clock: FakeClock) -> None:
    await api.login()
    clock.advance(1.5)
    await api.get("/v2/FailoverPlans", params={"$top": "1"})
    body = {"mode": "FailoverNow", "planlaunchOptions": {"restorePointRule": {"date": "2027-01-15T02:00:00"}}}
    await api.op(SQL, "Run", body)
    await api.post(f"/v2/FailoverPlans/{SQL}/Halt", content=b"{oops")
    await api.http.get("/_sim/plans")  # not logged
    log = (await api.http.get("/_sim/requests")).json()
    assert log == [
        {
            "method": "POST",
            "path": "/v2/Token",
            "query": {},
            "status": 200,
            "at": "2027-01-15T08:00:00.000000Z",
            "fault": None,
            "body": None,
        },
        {
            "method": "GET",
            "path": "/v2/FailoverPlans",
            "query": {"$top": "1"},
            "status": 200,
            "at": "2027-01-15T08:00:01.500000Z",
            "fault": None,
            "body": None,
        },
        {
            "method": "POST",
            "path": f"/v2/FailoverPlans/{SQL}/Run",
            "query": {},
            "status": 200,
            "at": "2027-01-15T08:00:01.500000Z",
            "fault": None,
            "body": body,
        },
        {
            "method": "POST",
            "path": f"/v2/FailoverPlans/{SQL}/Halt",
            "query": {},
            "status": 400,
            "at": "2027-01-15T08:00:01.500000Z",
            "fault": None,
            "body": "{oops",
        },
    ]
    posts = (await api.http.get("/_sim/requests", params={"method": "post", "path": "/v2/FailoverPlans/*"})).json()
    assert [e["path"].rsplit("/", 1)[1] for e in posts] == ["Run", "Halt"]
    assert (await api.http.delete("/_sim/requests")).status_code == 204
    assert (await api.http.get("/_sim/requests")).json() == []


async def test_request_log_never_holds_the_password_or_a_token(api: Api) -> None:
    tokens = await api.login()
    secrets = [PASSWORD, tokens["access_token"], tokens["refresh_token"]]
    refreshed = (
        await api.http.post("/Token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    ).json()
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    child = (
        await api.http.post(
            "/v2/Token",
            data={"grant_type": "client_credentials", "client_id": tokens["client_id"], "client_secret": PASSWORD},
        )
    ).json()
    secrets += [child["access_token"], child["refresh_token"]]
    await api.http.post("/v2/Token", data={"grant_type": "password", "username": "demo", "password": PASSWORD + "x"})
    await api.http.get("/v2/FailoverPlans", params={"access_token": refreshed["access_token"], "password": PASSWORD})
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    log = (await api.http.get("/_sim/requests")).json()
    assert len(log) == 6
    dumped = json.dumps(log)
    for secret in secrets:
        assert secret not in dumped
    assert log[4]["query"] == {"access_token": "***", "password": "***"}


async def test_summary_shows_settings_but_not_the_password(make_api: Callable[..., Api]) -> None:
    api = make_api(time_scale=60, progression="tick")
    summary = (await api.http.get("/_sim")).json()
    assert (summary["scenario"], summary["time_scale"], summary["progression"]) == ("demo", 60, "tick")
    assert summary["started_at"] == summary["now"] == "2027-01-15T08:00:00.000000Z"
    assert PASSWORD not in json.dumps(summary)


def test_clock_defaults_to_wall_time() -> None:
    sim = create_app().state.sim
    assert abs(sim.now() - time.time()) < 5
    assert sim.now() != T0
