"""Profiles (contract section 5): every documented variant, selected per scenario, per plan and by PATCH, each
checked on what the simulator answers and what its request log recorded; and the built-in ``veeam-docs``."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Sim
from tests.test_simulator_support import DEMO_IDS, P_ID, PASSWORD, Api, app_for, one_plan_scenario
from vaodrill.simulator import ScenarioError, builtin_scenarios, load_scenario
from vaodrill.simulator.profiles import LoginProfile, PlanProfile, variants, with_overrides
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.rules import is_clean, not_runnable_because

RUN = {"mode": "FailoverNow"}


def tick_api(make_api: Callable[..., Api], **plan: Any) -> Api:
    """One plan ``P`` of 2 steps in tick progression, with these plan fields (profile fields included)."""
    return make_api(one_plan_scenario(**plan), progression="tick")


async def finish(api: Api) -> dict[str, Any]:
    """Read the plan until its 2-step stage is done (tick progression); the last answer, unwrapped."""
    for _ in range(2):
        plan = await api.plan(P_ID)
    return plan[0] if isinstance(plan, list) else plan


async def run_and_undo(api: Api) -> dict[str, Any]:
    assert (await api.op(P_ID, "Run", RUN)).status_code == 200
    await finish(api)
    assert (await api.op(P_ID, "Undo")).status_code == 200
    return await finish(api)


def statuses(api: Api, path: str) -> list[int]:
    return [e["status"] for e in api.sim.log.select(path=path)]


# -- the list of variants ----------------------------------------------------------------------------------


def test_variants_name_every_documented_value_once() -> None:
    names = variants()
    assert names["contract"] == {}
    assert set(names) == {
        "contract",
        "idle_state=Verified",
        "idle_state=NotVerified",
        "after_undo=UndoFailover",
        "single_get=array",
        "illegal_status=400",
        "illegal_status=500",
        "continue_path=Run/Continue",
        "continue_path=both",
        "details_style=veeam",
        "same_client_id=True",
        "single_session=True",
    }
    assert names["illegal_status=500"] == {"defaults": {"illegal_status": 500}}
    assert names["single_session=True"] == {"login": {"single_session": True}}
    assert PlanProfile() == PlanProfile(
        idle_state="Enabled",
        after_undo="Enabled",
        single_get="object",
        illegal_status=409,
        continue_path="Continue",
        details_style="contract",
    )
    assert LoginProfile() == LoginProfile(same_client_id=False, single_session=False)


@pytest.mark.parametrize("name", list(variants()))
def test_every_variant_loads_on_the_demo(name: str) -> None:
    data = with_overrides(load_scenario("demo").model_dump(mode="json"), variants()[name])
    data["clients"] = []  # model_dump hides secrets; the demo has no child clients anyway
    scenario = load_scenario(data)
    for section, values in variants()[name].items():
        for field, value in values.items():
            assert getattr(getattr(scenario, section), field) == value


# -- idle state --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "details"), [("Enabled", "Ready"), ("Verified", "Ready"), ("NotVerified", "Never checked or tested")]
)
async def test_idle_plan_shows_its_idle_state_and_runs(make_api: Callable[..., Api], idle: str, details: str) -> None:
    api = tick_api(make_api, idle_state=idle)
    plan = await api.plan(P_ID)
    assert (plan["planState"], plan["planStateDetails"], plan["planInUse"]) == (idle, details, False)
    listed = (await api.get("/v2/FailoverPlans", params={"$filter": f"planState eq '{idle}'"})).json()
    assert [p["id"] for p in listed] == [P_ID]
    after = await run_and_undo(api)
    assert (after["planState"], after["planStateDetails"]) == (idle, details)
    assert statuses(api, "/v2/FailoverPlans/*/Run") == [200]


async def test_disabled_stays_disabled_whatever_the_idle_state(make_api: Callable[..., Api]) -> None:
    api = tick_api(make_api, idle_state="Verified", state="Disabled")
    assert (await api.plan(P_ID))["planState"] == "Disabled"
    refused = await api.op(P_ID, "Run", RUN)
    assert (refused.status_code, refused.json()["Message"]) == (
        409,
        "Plan 'P' is in state Disabled; Run FailoverNow requires Verified.",
    )
    assert (await api.op(P_ID, "Enable")).status_code == 200
    assert (await api.plan(P_ID))["planState"] == "Verified"


# -- after a finished undo ---------------------------------------------------------------------------------


async def test_undo_left_complete_is_clean_and_run_is_legal_from_it(make_api: Callable[..., Api]) -> None:
    api = tick_api(make_api, after_undo="UndoFailover", idle_state="Verified")
    undone = await run_and_undo(api)
    assert (undone["planState"], undone["planStateDetails"], undone["planInUse"]) == (
        "UndoFailover",
        "Complete, no errors, no warnings",
        False,
    )
    parsed = FailoverPlan.model_validate(undone)
    assert is_clean(parsed) and not_runnable_because(parsed) is None  # what vaodrill decides from it
    again = await run_and_undo(api)  # Run from the completed undo, and undo again
    assert again["planState"] == "UndoFailover"
    assert statuses(api, "/v2/FailoverPlans/*/Run") == [200, 200]
    assert [s["kind"] for s in (await api.record(P_ID))["stages"]] == ["Failover", "UndoFailover"] * 2
    assert (await api.op(P_ID, "Disable")).status_code == 200


async def test_undo_with_errors_stays_not_clean(make_api: Callable[..., Api]) -> None:
    api = tick_api(make_api, after_undo="UndoFailover", errors=1, details_style="veeam")
    undone = await run_and_undo(api)
    assert (undone["planState"], undone["planStateDetails"]) == ("UndoFailover", "Complete, 1 error, no warnings")
    assert not is_clean(FailoverPlan.model_validate(undone))


# -- single-plan GET ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["object", "array"])
async def test_single_get_shape(make_api: Callable[..., Api], shape: str) -> None:
    api = make_api(with_overrides(one_plan_scenario(), {"defaults": {"single_get": shape}}))
    answer = (await api.get(f"/v2/FailoverPlans/{P_ID}")).json()
    listed = (await api.get("/v2/FailoverPlans")).json()
    assert answer == (listed if shape == "array" else listed[0])
    assert FailoverPlan.model_validate(answer).id == P_ID


# -- illegal operations ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [409, 400, 500])
async def test_illegal_operation_status_always_has_a_message(make_api: Callable[..., Api], status: int) -> None:
    api = tick_api(make_api, illegal_status=status)
    for op, body in (
        ("Undo", None),
        ("Continue", {"executionContinueOptions": "RetryFailedStep"}),
        ("Halt", {"fullstop": True}),
        ("Enable", None),
    ):
        response = await api.op(P_ID, op, body)
        assert response.status_code == status, (op, response.text)
        assert response.json()["Message"].startswith(f"Plan 'P' is in state Enabled; {op} requires ")
    assert statuses(api, "/v2/FailoverPlans/*") == [status] * 4
    assert (await api.record(P_ID))["stages"] == []
    bad_body = await api.op(P_ID, "Run", {"mode": "Sideways"})
    assert bad_body.status_code == 400  # a malformed body stays a 400 whatever the profile


# -- Continue path -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "works"),
    [("Continue", ["Continue"]), ("Run/Continue", ["Run/Continue"]), ("both", ["Continue", "Run/Continue"])],
)
async def test_continue_path(make_api: Callable[..., Api], served: str, works: list[str]) -> None:
    api = tick_api(make_api, continue_path=served, steps=3)
    body = {"executionContinueOptions": "RetryFailedStep"}
    assert (await api.op(P_ID, "Run", RUN)).status_code == 200
    expected = []
    for path in ("Continue", "Run/Continue"):
        assert (await api.op(P_ID, "Halt", {"fullstop": False})).status_code == 200
        response = await api.op(P_ID, path, body)
        if path in works:
            assert response.status_code == 200, response.text
            assert (await api.record(P_ID))["planState"] == "Failover"
            expected.append(200)
        else:
            assert response.status_code == 404
            assert response.json()["Message"] == (
                f"No HTTP resource was found that matches the request URI '/v2/FailoverPlans/{P_ID}/{path}'."
            )
            assert (await api.record(P_ID))["planState"] == "Halted", "a 404 means nothing ran"
            assert (await api.op(P_ID, works[0], body)).status_code == 200
            expected += [404, 200]
    continues = api.sim.log.select(path="/v2/FailoverPlans/*/*Continue")
    assert [e["status"] for e in continues] == expected
    assert len((await api.record(P_ID))["stages"][0]["continues"]) == 2


async def test_unknown_plan_on_either_continue_path_is_a_plan_404(api: Api) -> None:
    for path in ("Continue", "Run/Continue"):
        response = await api.op("5b0f2a52-6a0e-4c38-9a3f-3d5a8a1f0c11", path, {"executionContinueOptions": "x"})
        assert response.status_code == 404 and "was not found" in response.json()["Message"]


# -- finished-stage wording --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "warnings", "errors", "details"),
    [
        ("contract", 0, 0, "Complete, no errors, no warnings"),
        ("contract", 1, 0, "Complete, 1 warnings"),
        ("contract", 2, 1, "Complete, 1 errors"),
        ("veeam", 0, 0, "Complete, no errors, no warnings"),
        ("veeam", 1, 0, "Complete, no errors, 1 warning"),
        ("veeam", 2, 0, "Complete, no errors, 2 warnings"),
        ("veeam", 3, 2, "Complete, 2 errors, 3 warnings"),
    ],
)
async def test_finished_stage_wording(
    make_api: Callable[..., Api], style: str, warnings: int, errors: int, details: str
) -> None:
    api = tick_api(make_api, details_style=style, warnings=warnings, errors=errors)
    assert (await api.op(P_ID, "Run", RUN)).status_code == 200
    assert (await finish(api))["planStateDetails"] == details


# -- login -------------------------------------------------------------------------------------------------


async def test_client_id_per_login_is_new_under_the_contract_and_stable_under_same_client_id(
    make_api: Callable[..., Api],
) -> None:
    contract = make_api("demo")
    assert (await contract.login())["client_id"] != (await contract.login())["client_id"]
    same = make_api(with_overrides(load_scenario("demo").model_dump(mode="json"), {"login": {"same_client_id": True}}))
    first, second = await same.login(), await same.login()
    assert first["client_id"] == second["client_id"] and first["access_token"] != second["access_token"]
    assert (await same.get("/v2/FailoverPlans")).status_code == 200


def one_plan_login(**login: Any) -> dict[str, Any]:
    return {
        **one_plan_scenario(),
        "login": login,
        "clients": [{"client_id": "drill-tool", "client_secret": "tool-secret"}],
    }


async def login_form(api: Api, **form: str) -> Any:
    return await api.http.post("/v2/Token", data=form)


@pytest.mark.parametrize("single", [False, True])
async def test_second_login_ends_the_first_session_only_under_single_session(
    make_api: Callable[..., Api], single: bool
) -> None:
    api = make_api(one_plan_login(single_session=single))
    first = await api.login()
    second = await api.login()
    as_first = await api.http.get("/v2/FailoverPlans", headers={"Authorization": f"Bearer {first['access_token']}"})
    as_second = await api.http.get("/v2/FailoverPlans", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert (as_first.status_code, as_second.status_code) == ((401, 200) if single else (200, 200))
    refresh = await login_form(api, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refresh.status_code == (400 if single else 200)
    assert [e["status"] for e in api.sim.log.select(method="GET")] == [as_first.status_code, 200]


async def test_refresh_keeps_the_session_under_single_session(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_login(single_session=True))
    first = await api.login()
    refreshed = (await login_form(api, grant_type="refresh_token", refresh_token=first["refresh_token"])).json()
    auth = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert (await api.http.get("/v2/FailoverPlans", headers=auth)).status_code == 200
    assert refreshed["client_id"] == first["client_id"]


async def test_child_client_logs_in_without_ending_the_persons_session(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_login(single_session=True))
    person = await api.login()
    tool = await login_form(api, grant_type="client_credentials", client_id="drill-tool", client_secret="tool-secret")
    assert tool.status_code == 200 and tool.json()["client_id"] == "drill-tool"
    for token in (person["access_token"], tool.json()["access_token"]):
        response = await api.http.get("/v2/FailoverPlans", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    again = await login_form(api, grant_type="client_credentials", client_id="drill-tool", client_secret="tool-secret")
    old_tool = await api.http.get(
        "/v2/FailoverPlans", headers={"Authorization": f"Bearer {tool.json()['access_token']}"}
    )
    assert again.status_code == 200 and old_tool.status_code == 401  # the child client's own session ended
    tokens = api.sim.log.select(path="/v2/Token")
    assert [e["body"] for e in tokens] == [None] * 3, "token forms are never logged"


@pytest.mark.parametrize(
    "form",
    [
        {"client_id": "drill-tool", "client_secret": "wrong"},
        {"client_id": "drill-tool", "client_secret": PASSWORD},
        {"client_id": "other", "client_secret": "tool-secret"},
    ],
)
async def test_child_client_needs_its_own_secret(make_api: Callable[..., Api], form: dict[str, str]) -> None:
    api = make_api(one_plan_login())
    response = await login_form(api, grant_type="client_credentials", **form)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_child_client_secret_is_not_in_the_summary_or_repr() -> None:
    app = app_for(one_plan_login())
    assert app.state.sim.summary()["clients"] == ["drill-tool"]
    assert "tool-secret" not in repr(app.state.sim.scenario) and "tool-secret" not in str(app.state.sim.summary())


def test_duplicate_child_clients_are_refused() -> None:
    data = {**one_plan_login(), "clients": [{"client_id": "a", "client_secret": "x"}] * 2}
    with pytest.raises(ScenarioError, match="two child clients have the same client_id"):
        load_scenario(data)


# -- $select and $format -----------------------------------------------------------------------------------


async def test_select_and_format_on_the_list_and_one_plan(api: Api) -> None:
    listed = await api.get(
        "/v2/FailoverPlans", params={"$select": "name,planState", "$format": "json", "$filter": "name eq 'SQL Tier'"}
    )
    assert listed.json() == [{"name": "SQL Tier", "planState": "Enabled"}]
    one = await api.get(f"/v2/FailoverPlans/{DEMO_IDS['SQL Tier']}", params={"$select": "id", "$format": "json"})
    assert one.json() == {"id": DEMO_IDS["SQL Tier"]}
    everything = await api.get("/v2/FailoverPlans", params={"$select": "*", "$format": "application/json"})
    assert len(everything.json()) == 7 and "_links" in everything.json()[0]
    assert api.sim.log.select(method="GET")[0]["query"] == {
        "$select": "name,planState",
        "$format": "json",
        "$filter": "name eq 'SQL Tier'",
    }


@pytest.mark.parametrize(
    "params", [{"$select": "nope"}, {"$format": "atom"}, {"$filter": "name eq 'x'"}, {"$top": "1"}]
)
async def test_one_plan_takes_only_select_and_format(api: Api, params: dict[str, str]) -> None:
    response = await api.get(f"/v2/FailoverPlans/{DEMO_IDS['SQL Tier']}", params=params)
    assert response.status_code == 400 and response.json()["Message"]


# -- per plan: scenario YAML and PATCH ---------------------------------------------------------------------


async def test_patch_changes_profile_fields(api: Api) -> None:
    sql = DEMO_IDS["SQL Tier"]
    patched = await api.http.patch(
        f"/_sim/plans/{sql}",
        json={
            "idle_state": "NotVerified",
            "single_get": "array",
            "illegal_status": 500,
            "continue_path": "both",
            "details_style": "veeam",
            "after_undo": "UndoFailover",
        },
    )
    assert patched.status_code == 200
    assert {k: patched.json()["settings"][k] for k in PlanProfile.model_fields} == {
        "idle_state": "NotVerified",
        "single_get": "array",
        "illegal_status": 500,
        "continue_path": "both",
        "details_style": "veeam",
        "after_undo": "UndoFailover",
    }
    assert (await api.get(f"/v2/FailoverPlans/{sql}")).json()[0]["planState"] == "NotVerified"  # at once
    assert (await api.op(sql, "Undo")).status_code == 500
    other = await api.plan(DEMO_IDS["Web Tier"])
    assert other["planState"] == "Enabled", "other plans keep their profile"


@pytest.mark.parametrize(
    "body",
    [
        {"idle_state": "Ready"},
        {"illegal_status": 418},
        {"continue_path": None},
        {"single_get": "list"},
        {"after_undo": "Disabled"},
    ],
)
async def test_patch_rejects_bad_profile_values(api: Api, body: dict[str, Any]) -> None:
    response = await api.http.patch(f"/_sim/plans/{DEMO_IDS['SQL Tier']}", json=body)
    assert response.status_code == 400 and next(iter(body)) in response.json()["Message"]


def test_plan_fields_win_over_defaults_in_yaml() -> None:
    scenario = load_scenario(
        {
            "defaults": {"idle_state": "Verified", "illegal_status": 500},
            "plans": [{"name": "A"}, {"name": "B", "idle_state": "NotVerified"}],
        }
    )
    a, b = (scenario.settings_for(p) for p in scenario.plans)
    assert (a.idle_state, b.idle_state, a.illegal_status, b.illegal_status) == ("Verified", "NotVerified", 500, 500)


def test_bad_profile_value_in_yaml_is_one_line() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario({"plans": [{"name": "A", "continue_path": "Resume"}]})
    assert "plans[0].continue_path" in str(caught.value) and "\n" not in str(caught.value)


# -- the veeam-docs scenario -------------------------------------------------------------------------------


def test_veeam_docs_has_the_demo_plans_and_every_plan_variant() -> None:
    assert {"demo", "veeam-docs"} <= set(builtin_scenarios())
    demo, docs = load_scenario("demo"), load_scenario("veeam-docs")
    assert {p.name: docs.plan_id(p) for p in docs.plans} == DEMO_IDS
    for spec in demo.plans:
        mine, theirs = demo.settings_for(spec), docs.settings_for(docs.find(spec.name))  # type: ignore[arg-type]
        assert (mine.failover_duration, mine.undo_duration, mine.steps, mine.target_rto, mine.target_rpo) == (
            theirs.failover_duration,
            theirs.undo_duration,
            theirs.steps,
            theirs.target_rto,
            theirs.target_rpo,
        )
    enabled = [docs.settings_for(p) for p in docs.plans if p.state == "Enabled"]
    for field, info in PlanProfile.model_fields.items():
        if field == "continue_path":  # one path per server, as on a real one; some plans also take the other
            assert {s.continue_path for s in enabled} == {"Run/Continue", "both"}
            continue
        shown = {getattr(s, field) for s in enabled}
        assert shown == set(typing.get_args(info.annotation)), field
    assert docs.login.same_client_id and [c.client_id for c in docs.clients] == ["drill-tool"]


def test_demo_drill_plans_are_runnable_on_veeam_docs(sim_factory: Callable[..., Sim]) -> None:
    """Every plan of deployments/drills/demo.yaml is idle in a documented state that vaodrill would run."""
    sim = sim_factory("veeam-docs")
    token = sim.control.post(
        "/v2/Token", data={"grant_type": "password", "username": "demo", "password": "demo"}
    ).json()["access_token"]
    listed = sim.control.get("/v2/FailoverPlans", headers={"Authorization": f"Bearer {token}"}).json()
    plans = {p["name"]: FailoverPlan.model_validate(p) for p in listed}
    drill = ["Core Network", "Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting"]
    assert {name: not_runnable_because(plans[name]) for name in drill} == dict.fromkeys(drill)
    assert {plans[name].state_raw for name in drill} == {"Enabled", "Verified", "NotVerified"}
    assert not_runnable_because(plans["Legacy ERP"]) is not None


def test_any_sim_serves_both_scenarios_over_http(any_sim: Sim) -> None:
    assert any_sim.scenario in ("demo", "veeam-docs")
    assert any_sim.control.get("/_sim").json()["scenario"] == any_sim.scenario
    assert set(any_sim.plans()) == set(DEMO_IDS)


def test_every_behaviour_field_of_a_plan_in_the_scenario_file_reaches_its_settings() -> None:
    """A plan's own behaviour (halts, warnings, readiness check, wording) is taken from the scenario file as written,
    field by field, none dropped on the way to the simulator's settings."""
    from vaodrill.simulator.scenario import _Behaviour

    own: dict[str, Any] = {
        "halt_at_step": 2,
        "never_finish": True,
        "fail_undo": True,
        "warnings": 1,
        "errors": 2,
        "in_use_shown": False,
        "schedule_type_shown": 3,
        "readiness_duration": 120,
        "readiness_errors": 1,
    }
    scenario = load_scenario(one_plan_scenario(**own))
    settings = scenario.settings_for(scenario.plans[0])
    assert {name: getattr(settings, name) for name in own} == {name: getattr(scenario.plans[0], name) for name in own}
    assert settings.readiness_duration == 120 and settings.readiness_errors == 1
    assert set(own) <= set(_Behaviour.model_fields)
