"""How plans move through their stages: time-based (injected clock, never sleeps) and tick-based progression,
the misbehaviour switches (halt_at_step, never_finish, fail_undo, warnings/errors), chained and scheduled runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.test_simulator_support import DEMO_IDS, P_ID, T0, Api, FakeClock, one_plan_scenario

SQL = DEMO_IDS["SQL Tier"]  # 300 s failover, 120 s undo, 6 steps


@pytest.fixture
def make_api(make_api: Callable[..., Api]) -> Callable[..., Api]:
    """The shared factory, with tokens that outlive the hours these tests jump the clock by."""

    def make(scenario: Any = "demo", **kwargs: Any) -> Api:
        kwargs.setdefault("access_token_ttl", 10**8)
        return make_api(scenario, **kwargs)

    return make


def details(plan: dict[str, Any]) -> tuple[str, str, bool]:
    return plan["planState"], plan["planStateDetails"], plan["planInUse"]


# -- time-based --------------------------------------------------------------------------------------------


async def test_time_progression_steps_evenly_and_completes_at_duration_over_time_scale(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(time_scale=10)  # SQL Tier: 300 simulated s = 30 clock s, 6 steps of 5 s
    assert (await api.op(SQL, "Run", {"mode": "FailoverNow"})).status_code == 200
    seen = []
    for t in (0, 4.999, 5, 17, 29.999):
        clock.t = T0 + t
        seen.append(details(await api.plan(SQL)))
    assert seen == [
        ("Failover", "In progress: step 1 of 6", True),
        ("Failover", "In progress: step 1 of 6", True),
        ("Failover", "In progress: step 2 of 6", True),
        ("Failover", "In progress: step 4 of 6", True),
        ("Failover", "In progress: step 6 of 6", True),
    ]
    clock.t = T0 + 30
    assert details(await api.plan(SQL)) == ("Failover", "Complete, no errors, no warnings", False)


async def test_completion_instant_is_exact_even_when_observed_late(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(time_scale=10)
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(3600)  # nobody looked for an hour
    stage = (await api.record(SQL))["stages"][0]
    assert stage["status"] == "completed"
    assert stage["started_at"] == "2027-01-15T08:00:00.000000Z"
    assert stage["ended_at"] == "2027-01-15T08:00:30.000000Z"
    assert stage["sim_duration"] == 300
    assert stage["wall_seconds"] == 30


async def test_undo_runs_its_own_duration_and_returns_to_enabled(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api()  # real time scale: 300 s failover, 120 s undo
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(300)
    assert (await api.op(SQL, "Undo")).status_code == 200
    clock.advance(119)
    assert details(await api.plan(SQL)) == ("UndoFailover", "In progress: step 6 of 6", True)
    clock.advance(1)
    assert details(await api.plan(SQL)) == ("Enabled", "Ready", False)
    kinds = [(s["kind"], s["mode"], s["status"]) for s in (await api.record(SQL))["stages"]]
    assert kinds == [("Failover", "FailoverNow", "completed"), ("UndoFailover", "Undo", "completed")]


async def test_clock_advance_endpoint_drives_progression(make_api: Callable[..., Api]) -> None:
    api = make_api(time_scale=60)
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    response = await api.http.post("/_sim/clock/advance", json={"seconds": 5})
    assert response.status_code == 200 and response.json()["clock_offset"] == 5
    assert details(await api.plan(SQL))[1] == "Complete, no errors, no warnings"
    assert (await api.http.post("/_sim/clock/advance", json={"seconds": -1})).status_code == 400


async def test_halt_at_step_halts_at_the_exact_instant_and_continue_retries_the_step(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(time_scale=10)
    await api.http.patch(f"/_sim/plans/{SQL}", json={"halt_at_step": 3})
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(14.9)  # step 3 ends at 15 s
    assert details(await api.plan(SQL)) == ("Failover", "In progress: step 3 of 6", True)
    clock.advance(100)
    assert details(await api.plan(SQL)) == ("Halted", "Halted at step 3 of 6: step failed", True)
    record = await api.record(SQL)
    assert record["stages"][0]["halts"] == [{"at": "2027-01-15T08:00:15.000000Z", "step": 3, "reason": "step failed"}]
    assert (await api.op(SQL, "Continue", {"executionContinueOptions": "RetryFailedStep"})).status_code == 200
    assert details(await api.plan(SQL)) == ("Failover", "In progress: step 3 of 6", True)
    clock.advance(19.9)  # steps 3..6 again: 20 s
    assert details(await api.plan(SQL))[0] == "Failover"
    assert details(await api.plan(SQL))[1] == "In progress: step 6 of 6"
    clock.advance(0.1)
    assert details(await api.plan(SQL)) == ("Failover", "Complete, no errors, no warnings", False)
    stage = (await api.record(SQL))["stages"][0]
    assert stage["continues"][0]["option"] == "RetryFailedStep"
    assert stage["ended_at"] == "2027-01-15T08:02:14.900000Z"


@pytest.mark.parametrize(("fullstop", "resumed_step", "remaining"), [(True, 2, 25.0), (False, 2, 22.0)])
async def test_manual_halt_fullstop_discards_the_partial_step(
    make_api: Callable[..., Api], clock: FakeClock, fullstop: bool, resumed_step: int, remaining: float
) -> None:
    api = make_api(time_scale=10)  # 6 steps of 5 s
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(8)  # 1.6 steps done
    assert (await api.op(SQL, "Halt", {"fullstop": fullstop})).status_code == 200
    assert details(await api.plan(SQL)) == ("Halted", "Halted at step 2 of 6: halted by request", True)
    clock.advance(1000)  # a halted plan does not progress
    assert details(await api.plan(SQL))[0] == "Halted"
    await api.op(SQL, "Continue", {"executionContinueOptions": "ProceedToNextStep"})
    assert details(await api.plan(SQL))[1] == f"In progress: step {resumed_step} of 6"
    clock.advance(remaining - 0.001)
    assert details(await api.plan(SQL))[0] == "Failover"
    assert details(await api.plan(SQL))[2] is True
    clock.advance(0.001)
    assert details(await api.plan(SQL)) == ("Failover", "Complete, no errors, no warnings", False)


async def test_never_finish_stays_in_its_last_step(make_api: Callable[..., Api], clock: FakeClock) -> None:
    api = make_api(time_scale=100)
    await api.http.patch(f"/_sim/plans/{SQL}", json={"never_finish": True})
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(10**6)
    assert details(await api.plan(SQL)) == ("Failover", "In progress: step 6 of 6", True)
    await api.op(SQL, "Halt", {"fullstop": True})
    assert (await api.op(SQL, "Undo")).status_code == 200  # undo still finishes: the drill can clean up
    clock.advance(2)
    assert details(await api.plan(SQL)) == ("Enabled", "Ready", False)


async def test_fail_undo_never_returns_to_enabled(make_api: Callable[..., Api], clock: FakeClock) -> None:
    api = make_api(time_scale=10)
    await api.http.patch(f"/_sim/plans/{SQL}", json={"fail_undo": True})
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(30)
    await api.op(SQL, "Undo")
    clock.advance(12)  # the whole undo
    assert details(await api.plan(SQL)) == ("Halted", "Halted at step 6 of 6: step failed", True)
    await api.op(SQL, "Continue", {"executionContinueOptions": "RetryFailedStep"})
    clock.advance(12)
    assert details(await api.plan(SQL)) == ("Halted", "Halted at step 6 of 6: step failed", True)
    assert (await api.op(SQL, "Reset", {"resetState": True})).status_code == 200
    assert details(await api.plan(SQL)) == ("Disabled", "Ready", False)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"warnings": 2}, "Complete, 2 warnings"),
        ({"errors": 1}, "Complete, 1 errors"),
        ({"errors": 3, "warnings": 2}, "Complete, 3 errors"),
    ],
)
async def test_warnings_and_errors_in_complete_details(
    make_api: Callable[..., Api], clock: FakeClock, patch: dict[str, int], expected: str
) -> None:
    api = make_api()
    await api.http.patch(f"/_sim/plans/{SQL}", json=patch)
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(300)
    assert details(await api.plan(SQL)) == ("Failover", expected, False)


async def test_a_running_stage_keeps_the_settings_it_started_with(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api()
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    await api.http.patch(f"/_sim/plans/{SQL}", json={"failover_duration": 10_000, "never_finish": True})
    clock.advance(300)
    assert details(await api.plan(SQL))[1] == "Complete, no errors, no warnings"


async def test_permanent_failover_failback_and_commit_use_their_durations(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(one_plan_scenario(failback_duration=40))
    await api.op(P_ID, "Run", {"mode": "FailoverNow"})
    clock.advance(100)
    await api.op(
        P_ID,
        "Run",
        {"mode": "Failback", "planlaunchOptions": {"recoveryLocationId": "loc-1", "failbackRestoreVMTags": True}},
    )
    clock.advance(39)
    assert details(await api.plan(P_ID))[0:2] == ("Failback", "In progress: step 2 of 2")
    clock.advance(1)
    assert details(await api.plan(P_ID)) == ("Failback", "Complete, no errors, no warnings", False)
    await api.op(P_ID, "Run", {"mode": "CommitFailBack"})
    clock.advance(40)
    assert details(await api.plan(P_ID)) == ("CommitFailback", "Complete, no errors, no warnings", False)
    stages = (await api.record(P_ID))["stages"]
    assert [(s["kind"], s["mode"], s["sim_duration"]) for s in stages] == [
        ("Failover", "FailoverNow", 100),
        ("Failback", "Failback", 40),
        ("CommitFailback", "CommitFailBack", 40),
    ]
    assert stages[1]["options"] == {"recoveryLocationId": "loc-1", "failbackRestoreVMTags": True}
    assert stages[1]["restore_point_used"] is None


# -- tick-based --------------------------------------------------------------------------------------------


async def test_tick_each_read_is_one_step_and_the_tth_read_completes(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(progression="tick")
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    clock.advance(10**6)  # time means nothing in tick progression
    seen = [(await api.plan(SQL))["planStateDetails"] for _ in range(6)]
    assert seen == [f"In progress: step {n} of 6" for n in range(2, 7)] + ["Complete, no errors, no warnings"]


async def test_tick_list_reads_advance_only_the_plans_shown(make_api: Callable[..., Api]) -> None:
    api = make_api(progression="tick")
    await api.op(SQL, "Run", {"mode": "FailoverNow"})
    await api.op(DEMO_IDS["Web Tier"], "Run", {"mode": "FailoverNow"})
    assert (await api.get("/v2/FailoverPlans")).status_code == 200  # both advance: step 2
    await api.get("/v2/FailoverPlans", params={"$filter": "name eq 'SQL Tier'"})  # only SQL: step 3
    await api.http.get(f"/_sim/plans/{SQL}")  # control-plane reads never tick
    plans = {p["name"]: p["planStateDetails"] for p in (await api.get("/v2/FailoverPlans")).json()}
    assert plans["SQL Tier"] == "In progress: step 4 of 6"
    assert plans["Web Tier"] == "In progress: step 3 of 5"
    assert plans["App Tier"] == "Ready"


async def test_tick_halt_at_step(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario(steps=4, halt_at_step=2), progression="tick")
    await api.op(P_ID, "Run", {"mode": "FailoverNow"})
    assert (await api.plan(P_ID))["planStateDetails"] == "In progress: step 2 of 4"
    assert details(await api.plan(P_ID)) == ("Halted", "Halted at step 2 of 4: step failed", True)
    assert details(await api.plan(P_ID))[0] == "Halted"  # reads do not move a halted plan
    await api.op(P_ID, "Continue", {"executionContinueOptions": "RetryFailedVm"})
    seen = [(await api.plan(P_ID))["planStateDetails"] for _ in range(3)]
    assert seen == ["In progress: step 3 of 4", "In progress: step 4 of 4", "Complete, no errors, no warnings"]


# -- chained and scheduled runs ----------------------------------------------------------------------------


CHAIN = {
    "name": "chain",
    "defaults": {"failover_duration": 60, "steps": 2},
    "plans": [
        {"name": "A"},
        {"name": "B", "schedule_after": "A"},
        {"name": "C", "schedule_after": "B"},
        {"name": "D", "schedule_after": "A", "state": "Disabled"},
    ],
}


async def _ids(api: Api) -> dict[str, str]:
    return {p["name"]: p["id"] for p in (await api.get("/v2/FailoverPlans")).json()}


async def test_execute_chained_plans_starts_after_plans_when_the_failover_completes(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(CHAIN)
    ids = await _ids(api)
    b = await api.plan(ids["B"])
    assert (b["scheduleEnabled"], b["scheduleType"], b["scheduleAfter"], b["scheduleAfterPlanName"]) == (
        True,
        "AfterPlan",
        ids["A"],
        "A",
    )
    rule = {"restorePointRule": {"date": "2027-01-15T05:00:00"}, "executeChainedPlans": True}
    await api.op(ids["A"], "Run", {"mode": "FailoverNow", "planlaunchOptions": rule})
    clock.advance(59)
    assert (await api.plan(ids["B"]))["planState"] == "Enabled"
    clock.advance(100)  # A ends at 60, B runs 60..120, C starts at 120
    states = {p["name"]: details(p) for p in (await api.get("/v2/FailoverPlans")).json()}
    assert states["A"] == states["B"] == ("Failover", "Complete, no errors, no warnings", False)
    assert states["C"] == ("Failover", "In progress: step 2 of 2", True)
    assert states["D"] == ("Disabled", "Ready", False)
    b_stage = (await api.record(ids["B"]))["stages"][0]
    assert b_stage["triggered_by"] == f"chain:{ids['A']}"
    assert b_stage["started_at"] == "2027-01-15T08:01:00.000000Z"
    assert b_stage["restore_point_used"] == "2027-01-15T04:00:00.000000Z"  # the same rule as A
    assert (await api.record(ids["D"]))["events"][-1]["event"] == "Run skipped"


async def test_without_execute_chained_plans_nothing_else_starts(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(CHAIN)
    ids = await _ids(api)
    await api.op(ids["A"], "Run", {"mode": "FailoverNow", "planlaunchOptions": {"executeChainedPlans": False}})
    clock.advance(1000)
    assert (await api.plan(ids["B"]))["planState"] == "Enabled"
    await api.op(ids["B"], "DisableSchedule")
    assert (await api.plan(ids["B"]))["scheduleEnabled"] is False


async def test_tick_chained_plan_starts_on_the_read_that_completes_its_parent(make_api: Callable[..., Api]) -> None:
    api = make_api(CHAIN, progression="tick")
    ids = await _ids(api)
    await api.op(ids["A"], "Run", {"mode": "FailoverNow", "planlaunchOptions": {"executeChainedPlans": True}})
    await api.plan(ids["A"])
    await api.plan(ids["A"])  # completes A, starts B at step 1
    assert (await api.record(ids["B"]))["planStateDetails"] == "In progress: step 1 of 2"


async def test_schedule_previous_plan_id_wins_and_on_time_schedule_fires_once(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(CHAIN)
    ids = await _ids(api)
    body = {"startTime": "2027-01-15T08:10:00", "previousPlanId": ids["C"]}
    assert (await api.op(ids["A"], "Schedule", body)).status_code == 200
    assert (await api.plan(ids["A"]))["scheduleType"] == "AfterPlan"
    assert (await api.op(ids["A"], "Schedule", {"startTime": "2027-01-15T08:10:00"})).status_code == 200
    plan = await api.plan(ids["A"])
    assert (plan["scheduleType"], plan["scheduleTime"], plan["scheduleEnabled"]) == (
        "OnTime",
        "2027-01-15T08:10:00",
        True,
    )
    clock.advance(690)  # fires at 08:10, runs 60 s, B follows at 08:11 (scheduled runs chain)
    a = await api.record(ids["A"])
    assert a["stages"][0]["triggered_by"] == "schedule"
    assert a["stages"][0]["started_at"] == "2027-01-15T08:10:00.000000Z"
    assert a["planStateDetails"] == "Complete, no errors, no warnings"
    assert (await api.plan(ids["A"]))["scheduleEnabled"] is False
    assert (await api.record(ids["B"]))["stages"][0]["started_at"] == "2027-01-15T08:11:00.000000Z"


async def test_on_time_schedule_is_skipped_when_the_plan_is_not_enabled(
    make_api: Callable[..., Api], clock: FakeClock
) -> None:
    api = make_api(CHAIN)
    ids = await _ids(api)
    await api.op(ids["A"], "Schedule", {"startTime": "2027-01-15T08:05:00"})
    await api.op(ids["A"], "Disable")
    clock.advance(600)
    record = await api.record(ids["A"])
    assert record["stages"] == []
    assert record["events"][-1]["event"] == "Run skipped"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "needs startTime or previousPlanId"),
        ({"startTime": "tomorrow"}, "startTime 'tomorrow' is not a valid date"),
        ({"previousPlanId": "00000000-0000-0000-0000-000000000000"}, "was not found"),
    ],
)
async def test_schedule_rejects_bad_bodies(make_api: Callable[..., Api], body: dict[str, str], fragment: str) -> None:
    api = make_api(CHAIN)
    ids = await _ids(api)
    response = await api.op(ids["A"], "Schedule", body)
    assert response.status_code == 400 and fragment in response.json()["Message"]
    self_ref = await api.op(ids["A"], "Schedule", {"previousPlanId": ids["A"].upper()})
    assert self_ref.status_code == 400
