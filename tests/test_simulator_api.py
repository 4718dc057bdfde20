"""The /v2 surface of the simulator: tokens and bearer auth, plan representation, OData, Run bodies and restore
points, and the rule that bad input is never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.test_simulator_support import (
    DEMO_IDS,
    P_ID,
    PASSWORD,
    T0,
    Api,
    FakeClock,
    app_for,
    one_plan_scenario,
)

SQL = DEMO_IDS["SQL Tier"]
ERP = DEMO_IDS["Legacy ERP"]


def form(**fields: str) -> dict[str, str]:
    return fields


# -- the curl story ----------------------------------------------------------------------------------------


async def test_curl_story_login_list_run_undo(make_api: Callable[..., Api], clock: FakeClock) -> None:
    """The operator's walk-through: form login, list, Run with the seed's body, watch, Undo, and a 409."""
    api = make_api(time_scale=60)
    http = api.http
    login = await http.post(
        "/v2/Token",
        content=f"grant_type=password&username=demo&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert login.status_code == 200
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    plans = (await http.get("/v2/FailoverPlans", headers=auth)).json()
    assert {p["name"] for p in plans} >= {"SQL Tier", "Legacy ERP"}
    sql = next(p for p in plans if p["name"] == "SQL Tier")
    assert (sql["planState"], sql["planStateDetails"]) == ("Enabled", "Ready")

    seed_body = {
        "mode": "FailoverNow",
        "planlaunchOptions": {"restorePointRule": {"date": "2027-01-15T02:00:00"}, "executeChainedPlans": False},
    }
    run = await http.post(f"/v2/FailoverPlans/{sql['id']}/Run", json=seed_body, headers=auth)
    assert (run.status_code, run.content) == (200, b"")
    clock.advance(5)  # 300 simulated seconds at 60x
    plan = (await http.get(f"/v2/FailoverPlans/{sql['id']}", headers=auth)).json()
    assert (plan["planState"], plan["planInUse"]) == ("Failover", False)
    assert plan["planStateDetails"].startswith("Complete, ")

    assert (await http.post(f"/v2/FailoverPlans/{sql['id']}/Undo", headers=auth)).status_code == 200
    clock.advance(2)
    plan = (await http.get(f"/v2/FailoverPlans/{sql['id']}", headers=auth)).json()
    assert (plan["planState"], plan["planStateDetails"], plan["planInUse"]) == ("Enabled", "Ready", False)

    erp = await http.post(f"/v2/FailoverPlans/{ERP}/Run", json=seed_body, headers=auth)
    assert erp.status_code == 409
    assert erp.json()["Message"] == ("Plan 'Legacy ERP' is in state Disabled; Run FailoverNow requires Enabled.")
    assert (await api.record(SQL))["stages"][0]["restore_point_used"] == "2027-01-15T00:00:00.000000Z"


# -- tokens ------------------------------------------------------------------------------------------------


async def test_password_grant_answers_the_contract_fields(api: Api) -> None:
    body = await api.login()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "client_id"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert len(body["access_token"]) >= 40 and body["access_token"] != body["refresh_token"]
    assert (await api.get("/v2/FailoverPlans")).status_code == 200


async def test_both_token_paths_and_domain_user_names(make_api: Callable[..., Api]) -> None:
    api = make_api(username="LAB\\drill")
    good = form(grant_type="password", username="LAB\\drill", password=PASSWORD)
    assert (await api.http.post("/Token", data=good)).status_code == 200
    assert (await api.http.post("/v2/Token", data=good)).status_code == 200
    for username in ("drill", "lab\\drill", "LAB\\drill "):
        refused = await api.http.post("/v2/Token", data={**good, "username": username})
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "data",
    [
        form(grant_type="password", username="demo", password="wrong"),
        form(grant_type="password", username="demo"),
        form(grant_type="refresh_token", refresh_token="made-up"),
        form(grant_type="client_credentials", client_id="made-up", client_secret=PASSWORD),
        form(grant_type="authorization_code", code="x"),
        form(),
    ],
)
async def test_refused_grants_are_400_invalid_grant(api: Api, data: dict[str, str]) -> None:
    response = await api.http.post("/v2/Token", data=data)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"]


async def test_json_token_request_is_refused_not_crashed(api: Api) -> None:
    response = await api.http.post(
        "/v2/Token", json={"grant_type": "password", "username": "demo", "password": PASSWORD}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_refresh_grant_rotates_the_refresh_token(api: Api) -> None:
    first = await api.login()
    refreshed = await api.http.post(
        "/v2/Token", data=form(grant_type="refresh_token", refresh_token=first["refresh_token"])
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["client_id"] == first["client_id"]
    assert refreshed.json()["access_token"] != first["access_token"]
    again = await api.http.post(
        "/v2/Token", data=form(grant_type="refresh_token", refresh_token=first["refresh_token"])
    )
    assert again.status_code == 400, "a refresh token is single-use"


async def test_client_credentials_joins_a_session_from_a_password_login(api: Api) -> None:
    client_id = (await api.login())["client_id"]
    ok = await api.http.post(
        "/v2/Token", data=form(grant_type="client_credentials", client_id=client_id, client_secret=PASSWORD)
    )
    assert ok.status_code == 200 and ok.json()["client_id"] == client_id
    bad = await api.http.post(
        "/v2/Token", data=form(grant_type="client_credentials", client_id=client_id, client_secret="nope")
    )
    assert bad.status_code == 400


async def test_access_token_expires_on_the_clock_not_on_the_time_scale(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(time_scale=1000, access_token_ttl=900, refresh_token_ttl=7200)
    tokens = await api.login()
    clock.advance(899.9)
    assert (await api.get("/v2/FailoverPlans")).status_code == 200
    clock.advance(0.1)
    expired = await api.get("/v2/FailoverPlans")
    assert expired.status_code == 401
    assert expired.json() == {"Message": "Authorization has been denied for this request."}
    refreshed = await api.http.post(
        "/v2/Token", data=form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    )
    assert refreshed.status_code == 200
    clock.advance(7200)
    late = await api.http.post(
        "/v2/Token", data=form(grant_type="refresh_token", refresh_token=refreshed.json()["refresh_token"])
    )
    assert late.status_code == 400


async def test_forced_expiry_keeps_refresh_tokens_unless_asked(api: Api) -> None:
    tokens = await api.login()
    assert (await api.http.post("/_sim/tokens/expire")).json() == {"expired": 1}
    assert (await api.get("/v2/FailoverPlans")).status_code == 401
    refreshed = await api.http.post(
        "/v2/Token", data=form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    )
    assert refreshed.status_code == 200
    await api.http.post("/_sim/tokens/expire", json={"refresh": True})
    refused = await api.http.post(
        "/v2/Token", data=form(grant_type="refresh_token", refresh_token=refreshed.json()["refresh_token"])
    )
    assert refused.status_code == 400


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic ZGVtbzpkZW1v", "Bearer not-issued", "Token abc"]
)
async def test_bad_bearer_is_401_everywhere(api: Api, header: str | None) -> None:
    await api.login()
    headers = {} if header is None else {"Authorization": header}
    for method, path in [
        ("GET", "/v2/FailoverPlans"),
        ("GET", f"/v2/FailoverPlans/{SQL}"),
        ("POST", f"/v2/FailoverPlans/{SQL}/Enable"),
        ("GET", "/v2/Sites/x/Scopes/y/FailoverPlans"),
    ]:
        response = await api.http.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json() == {"Message": "Authorization has been denied for this request."}
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    await api.login()
    response = await api.http.get("/v2/FailoverPlans", headers={"Authorization": f"bearer {api.token}"})
    assert response.status_code == 200


# -- representation and reads ------------------------------------------------------------------------------


async def test_plan_representation_is_exactly_the_contract(api: Api) -> None:
    plan = await api.plan(SQL)
    assert list(plan) == [
        "name",
        "id",
        "description",
        "contactName",
        "contactEmail",
        "contactTel",
        "planState",
        "planStateDetails",
        "planInUse",
        "scheduleEnabled",
        "scheduleType",
        "scheduleAfter",
        "scheduleAfterPlanName",
        "scheduleTime",
        "siteScopeId",
        "targetRPO",
        "targetRTO",
        "_links",
    ]
    assert plan["id"] == SQL and plan["name"] == "SQL Tier"
    assert (
        plan["scheduleEnabled"],
        plan["scheduleType"],
        plan["scheduleAfter"],
        plan["scheduleAfterPlanName"],
        plan["scheduleTime"],
    ) == (False, None, "", "", None)
    assert plan["siteScopeId"] == "67c365b0-2c2a-4f45-a4de-6632b56d2e9c"
    assert (plan["targetRTO"], plan["targetRPO"]) == (60, 240)
    assert plan["_links"] == {"self": {"href": f"/v2/FailoverPlans/{SQL}"}}


async def test_single_plan_id_is_case_insensitive_and_unknown_is_404(api: Api) -> None:
    assert (await api.plan(SQL.upper()))["id"] == SQL
    assert (await api.plan("{" + SQL + "}"))["id"] == SQL
    missing = await api.get("/v2/FailoverPlans/00000000-0000-0000-0000-000000000001")
    assert missing.status_code == 404
    assert missing.json() == {"Message": "Plan 00000000-0000-0000-0000-000000000001 was not found."}
    assert (await api.get("/v2/FailoverPlans/not-a-guid")).status_code == 404
    unknown_op = await api.op("00000000-0000-0000-0000-000000000001", "Run", {"mode": "FailoverNow"})
    assert unknown_op.status_code == 404


async def test_site_scope_listing(make_api: Callable[..., Api]) -> None:
    scenario = {
        "site_id": "11111111-1111-1111-1111-111111111111",
        "scope_id": "22222222-2222-2222-2222-222222222222",
        "plans": [{"name": "A"}, {"name": "B", "scope_id": "33333333-3333-3333-3333-333333333333"}],
    }
    api = make_api(scenario)
    site = "/v2/Sites/11111111-1111-1111-1111-111111111111/Scopes"
    names = [p["name"] for p in (await api.get(f"{site}/22222222-2222-2222-2222-222222222222/FailoverPlans")).json()]
    assert names == ["A"]
    other = (
        await api.get(f"{site}/33333333-3333-3333-3333-333333333333/FailoverPlans", params={"$filter": "name eq 'B'"})
    ).json()
    assert [(p["name"], p["siteScopeId"]) for p in other] == [("B", "33333333-3333-3333-3333-333333333333")]
    assert (await api.get(f"{site}/44444444-4444-4444-4444-444444444444/FailoverPlans")).status_code == 404
    wrong_site = "/v2/Sites/99999999-9999-9999-9999-999999999999/Scopes/22222222-2222-2222-2222-222222222222"
    assert (await api.get(f"{wrong_site}/FailoverPlans")).status_code == 404


# -- OData -------------------------------------------------------------------------------------------------


async def names(api: Api, **params: str) -> list[str]:
    response = await api.get("/v2/FailoverPlans", params=params)
    assert response.status_code == 200, response.text
    return [p["name"] for p in response.json()]


async def test_odata_filter(api: Api) -> None:
    assert await names(api, **{"$filter": "planState eq 'Disabled'"}) == ["Legacy ERP"]
    assert len(await names(api, **{"$filter": "planState ne 'Disabled'"})) == 6
    assert await names(api, **{"$filter": "targetRTO eq 15"}) == ["Core Network"]
    assert await names(api, **{"$filter": "planInUse eq false and targetRTO eq 30 and name ne 'Web Tier'"}) == [
        "Active Directory"
    ]
    assert await names(api, **{"$filter": "scheduleType eq null and name eq 'Reporting'"}) == ["Reporting"]
    assert await names(api, **{"$filter": "name eq 'sql tier'"}) == [], "string comparison is case-sensitive"
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    assert await names(api, **{"$filter": "planInUse eq true"}) == ["SQL Tier"]


async def test_odata_quotes_in_literals(make_api: Callable[..., Api]) -> None:
    api = make_api({"plans": [{"name": "O'Brien's plan"}, {"name": "Other"}]})
    assert await names(api, **{"$filter": "name eq 'O''Brien''s plan'"}) == ["O'Brien's plan"]


async def test_odata_orderby_top_skip(api: Api) -> None:
    assert await names(api, **{"$orderby": "name"}) == sorted(DEMO_IDS)
    assert await names(api, **{"$orderby": "name desc", "$top": "2"}) == ["Web Tier", "SQL Tier"]
    by_rto = await names(api, **{"$orderby": "targetRTO desc,name asc", "$skip": "1", "$top": "3"})
    assert by_rto == ["Reporting", "SQL Tier", "App Tier"]  # Legacy ERP (240) skipped; 60, 60, 45
    assert await names(api, **{"$skip": "7"}) == []
    assert await names(api, **{"$top": "0"}) == []


@pytest.mark.parametrize(
    "params",
    [
        {"$filter": "nme eq 'x'"},
        {"$filter": "name eq 'x' or name eq 'y'"},
        {"$filter": "name gt 'x'"},
        {"$filter": "name eq x"},
        {"$filter": "name eq 'unterminated"},
        {"$filter": "planInUse eq 'true'"},
        {"$filter": "targetRTO eq '60'"},
        {"$filter": "name eq 'x' and"},
        {"$filter": "(name eq 'x')"},
        {"$filter": ""},
        {"$filter": "contains(name, 'x')"},
        {"$orderby": "name sideways"},
        {"$orderby": "nope"},
        {"$orderby": ""},
        {"$top": "-1"},
        {"$top": "ten"},
        {"$skip": "1.5"},
        {"$Filter": "name eq 'x'"},
        {"$select": "nmae"},
        {"$format": "xml"},
    ],
)
async def test_odata_errors_are_400_with_a_message(api: Api, params: dict[str, str]) -> None:
    response = await api.get("/v2/FailoverPlans", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["Message"]


async def test_non_odata_query_parameters_are_ignored(api: Api) -> None:
    assert len(await names(api, filter="name eq 'x'", foo="bar")) == 7


# -- Run bodies and restore points -------------------------------------------------------------------------


RP = ["2027-01-15T08:00:00Z", "2027-01-15T04:00:00Z", "2027-01-15T00:00:00Z"]


def run_body(
    date: Any = None, *, key: str = "planlaunchOptions", mode: str | None = None, rule: bool = True
) -> dict[str, Any]:
    options: dict[str, Any] = {"executeChainedPlans": False}
    if rule:
        options["restorePointRule"] = {"date": date, **({"mode": mode} if mode else {})}
    return {"mode": "FailoverNow", key: options}


async def used_point(api: Api, body: dict[str, Any], plan_id: str = P_ID) -> dict[str, Any]:
    response = await api.op(plan_id, "Run", body)
    assert response.status_code == 200, response.text
    stage: dict[str, Any] = (await api.record(plan_id))["stages"][-1]
    return stage


@pytest.mark.parametrize(
    ("timezone", "date", "mode", "expected"),
    [
        ("UTC", "2027-01-15T08:30:00", None, "2027-01-15T08:00:00.000000Z"),
        ("Europe/Berlin", "2027-01-15T08:30:00", None, "2027-01-15T04:00:00.000000Z"),  # 07:30Z
        ("Europe/Berlin", "2027-01-15T09:00:00", None, "2027-01-15T08:00:00.000000Z"),  # exactly 08:00Z
        ("UTC", "2027-01-15T04:00:00", None, "2027-01-15T04:00:00.000000Z"),
        ("UTC", "2027-01-15T03:59:59.9999999", None, "2027-01-15T00:00:00.000000Z"),  # 7-digit .NET fraction
        ("UTC", "2027-01-15T08:30:00.123Z", None, "2027-01-15T08:00:00.000000Z"),
        ("Europe/Berlin", "2027-01-15T07:30:00Z", None, "2027-01-15T04:00:00.000000Z"),  # an offset wins over tz
        ("UTC", "2027-01-15T09:30:00+02:00", None, "2027-01-15T04:00:00.000000Z"),
        ("UTC", "2027-01-15T01:00:00", "NearestAfter", "2027-01-15T04:00:00.000000Z"),
        ("UTC", "2027-01-15T04:00:00", "NearestAfter", "2027-01-15T04:00:00.000000Z"),
        ("UTC", "2027-01-15T09:00:00", "NearestBefore", "2027-01-15T08:00:00.000000Z"),
        ("UTC", None, None, "2027-01-15T08:00:00.000000Z"),
    ],
)
async def test_restore_point_resolution(
    make_api: Callable[..., Api], timezone: str, date: str | None, mode: str | None, expected: str
) -> None:
    api = make_api({**one_plan_scenario(restore_points=RP), "timezone": timezone})
    stage = await used_point(api, run_body(date, mode=mode))
    assert stage["restore_point_used"] == expected
    assert stage["restore_point_requested"] == date
    assert stage["restore_point_mode"] == (mode or "NearestBefore")


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "FailoverNow"},
        {"mode": "FailoverNow", "planlaunchOptions": None},
        {"mode": "FailoverNow", "planlaunchOptions": {"restorePointRule": None}},
        run_body(rule=False),
    ],
)
async def test_no_rule_means_the_latest_point(make_api: Callable[..., Api], body: dict[str, Any]) -> None:
    api = make_api(one_plan_scenario(restore_points=RP))
    assert (await used_point(api, body))["restore_point_used"] == "2027-01-15T08:00:00.000000Z"


@pytest.mark.parametrize("key", ["planlaunchOptions", "planLaunchOptions", "PLANLAUNCHOPTIONS"])
async def test_options_key_is_case_insensitive(make_api: Callable[..., Api], key: str) -> None:
    api = make_api(one_plan_scenario(restore_points=RP))
    body = {
        "Mode": "FailoverNow",
        key: {"RestorePointRule": {"Date": "2027-01-15T05:00:00"}, "executechainedplans": True},
    }
    stage = await used_point(api, body)
    assert stage["restore_point_used"] == "2027-01-15T04:00:00.000000Z"
    assert stage["execute_chained_plans"] is True


async def test_both_spellings_at_once_is_ambiguous(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario())
    body = {"mode": "FailoverNow", "planlaunchOptions": {}, "planLaunchOptions": {}}
    response = await api.op(P_ID, "Run", body)
    assert response.status_code == 400 and "twice" in response.json()["Message"]


@pytest.mark.parametrize(
    ("date", "mode", "fragment"),
    [
        ("2027-01-14T23:59:59", None, "No restore point at or before 2027-01-14T23:59:59"),
        ("2027-01-15T08:00:01", "NearestAfter", "No restore point at or after"),
        ("last tuesday", None, "is not a valid date"),
        ("2027-13-01T00:00:00", None, "is not a valid date"),
    ],
)
async def test_unresolvable_dates_are_400_and_start_nothing(
    make_api: Callable[..., Api], date: str, mode: str | None, fragment: str
) -> None:
    api = make_api(one_plan_scenario(restore_points=RP))
    response = await api.op(P_ID, "Run", run_body(date, mode=mode))
    assert response.status_code == 400
    assert fragment in response.json()["Message"]
    record = await api.record(P_ID)
    assert (record["planState"], record["stages"], record["run_requests"]) == ("Enabled", [], 1)


async def test_other_modes_validate_the_date_but_use_no_point(make_api: Callable[..., Api], clock: FakeClock) -> None:
    api = make_api(one_plan_scenario(restore_points=RP))
    await api.op(P_ID, "Run", {"mode": "FailoverNow"})
    clock.advance(100)
    bad = await api.op(
        P_ID, "Run", {"mode": "PermanentFailoverNow", "planlaunchOptions": {"restorePointRule": {"date": "soon"}}}
    )
    assert bad.status_code == 400 and "restorePointRule.date 'soon'" in bad.json()["Message"]
    stage = await used_point(
        api,
        {"mode": "PermanentFailoverNow", "planlaunchOptions": {"restorePointRule": {"date": "2020-01-01T00:00:00"}}},
    )
    assert (stage["kind"], stage["restore_point_requested"], stage["restore_point_used"]) == (
        "PermanentFailover",
        "2020-01-01T00:00:00",
        None,
    )


async def test_plan_without_restore_points(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario(restore_points=[]))
    response = await api.op(P_ID, "Run", {"mode": "FailoverNow"})
    assert response.status_code == 400
    assert response.json()["Message"] == "No restore point exists for plan 'P'."


async def test_default_restore_points_every_4_hours_over_7_days_aligned_to_the_hour(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    clock.t = T0 + 20 * 60 + 7.5  # 08:20:07.5: points align down to 08:00
    api = make_api()
    points = (await api.record(SQL))["restore_points"]
    assert len(points) == 42
    assert points[0] == "2027-01-15T08:00:00.000000Z"
    assert points[1] == "2027-01-15T04:00:00.000000Z"
    assert points[-1] == "2027-01-08T12:00:00.000000Z"
    stage = await used_point(api, run_body("2027-01-10T13:00:00"), SQL)
    assert stage["restore_point_used"] == "2027-01-10T12:00:00.000000Z"


async def test_run_requests_are_counted_even_when_refused(api: Api) -> None:
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    await api.op(SQL, "Run", {"mode": "FailoverNow"})  # 409
    await api.post(f"/v2/FailoverPlans/{SQL}/Run", content=b"{not json")  # 400
    await api.op(SQL, "Enable")  # not a Run
    assert (await api.record(SQL))["run_requests"] == 3


# -- bad input is never a 500 ------------------------------------------------------------------------------


BAD_BODIES: list[bytes] = [
    b"{",
    b"[]",
    b"null",
    b'"x"',
    b"1",
    b"true",
    b"\xff\xfe\x00",
    b'{"mode": 5}',
    b'{"mode": null}',
    b'{"mode": "failovernow"}',
    b'{"mode": "CommitFailback"}',
    b'{"mode": "FailoverNow", "planlaunchOptions": 3}',
    b'{"mode": "FailoverNow", "planlaunchOptions": {"restorePointRule": {"date": 20270101}}}',
    b'{"mode": "FailoverNow", "planlaunchOptions": {"restorePointRule": {"mode": "Closest"}}}',
    b'{"mode": "FailoverNow", "planlaunchOptions": {"executeChainedPlans": "false"}}',
    b'{"fullstop": "yes"}',
    b'{"executionContinueOptions": "RetryEverything"}',
    b'{"executionContinueOptions": 1}',
    b'{"resetState": 1}',
    b'{"startTime": 12}',
    b'{"startTime": "soon"}',
    b'{"previousPlanId": ["x"]}',
    b'{"a": ' * 50 + b"1" + b"}" * 50,
    b'{"mode": "' + b"x" * 100_000 + b'"}',
]

OPS_WITH_BODIES = ["Run", "Halt", "Continue", "Reset", "Schedule", "Enable", "Undo", "DisableSchedule"]


async def test_bad_input_never_yields_500(make_api: Callable[..., Api]) -> None:
    """ASGITransport re-raises app exceptions, so any crash would fail this test even before the status check."""
    api = make_api()
    await api.login()
    statuses: set[int] = set()
    for op in OPS_WITH_BODIES:
        for plan in (SQL, "nope", "%00", "..", SQL.upper()):
            for body in BAD_BODIES:
                response = await api.http.post(
                    f"/v2/FailoverPlans/{plan}/{op}",
                    content=body,
                    headers={**api.auth, "Content-Type": "application/json"},
                )
                assert response.status_code < 500, (op, plan, body[:40], response.text)
                if response.status_code >= 400:
                    assert response.json()["Message"]
                statuses.add(response.status_code)
    assert statuses >= {400, 404}
    odd_requests = [
        ("GET", "/v2/FailoverPlans?$top=99999999999999999999"),
        ("GET", "/v2/FailoverPlans?$filter=%ff%fe"),
        ("DELETE", f"/v2/FailoverPlans/{SQL}"),
        ("PUT", "/v2/FailoverPlans"),
        ("GET", "/v2/FailoverPlans/x/y/z"),
        ("GET", "/v2"),
        ("GET", "/Token"),
        ("GET", "/nothing-here"),
    ]
    for method, path in odd_requests:
        response = await api.http.request(method, path, headers=api.auth)
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert response.json()["Message"], (method, path)
    for path, body in [
        ("/_sim/reset", b"{"),
        ("/_sim/reset", b'{"scenario": "nope"}'),
        ("/_sim/reset", b'{"time_scale": 0}'),
        ("/_sim/scenario", b"plans: [ {"),
        ("/_sim/faults", b'{"rate": 2, "status": 500}'),
        ("/_sim/clock/advance", b'{"seconds": "x"}'),
        ("/_sim/tokens/expire", b"[1]"),
    ]:
        response = await api.http.post(path, content=body)
        assert response.status_code == 400, (path, response.text)
    patch = await api.http.patch(f"/_sim/plans/{SQL}", content=b'{"steps": 0}')
    assert patch.status_code == 400


async def test_unknown_route_and_method_are_json(api: Api) -> None:
    await api.login()
    missing = await api.get("/v2/FailoverPlan")
    assert missing.status_code == 404
    assert missing.json() == {"Message": "No HTTP resource was found that matches the request URI '/v2/FailoverPlan'."}
    wrong = await api.http.delete("/v2/FailoverPlans", headers=api.auth)
    assert wrong.status_code == 405 and "DELETE" in wrong.json()["Message"]


async def test_no_module_level_state_between_apps() -> None:
    first, second = Api(app_for("demo")), Api(app_for("demo"))
    try:
        await first.op(SQL, "Run", {"mode": "FailoverNow"})
        assert (await second.plan(SQL))["planState"] == "Enabled"
        token = await first.login()
        leaked = await second.http.get(
            "/v2/FailoverPlans", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert leaked.status_code == 401
    finally:
        await first.aclose()
        await second.aclose()


def test_httpx_is_the_client_library_here() -> None:
    # Guards the assumption behind ConnectionDropped: it must be a transport error httpx clients already handle.
    from vaodrill.simulator import ConnectionDropped

    assert issubclass(ConnectionDropped, httpx.RemoteProtocolError)
    assert issubclass(ConnectionDropped, httpx.TransportError)
