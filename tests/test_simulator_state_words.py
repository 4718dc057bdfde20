"""The simulator shows any state word per plan and per phase (``state_words``) and any ``scheduleType``, so each
spelling of a real server can be tested without a proxy; what the plan does never changes."""

from __future__ import annotations

from collections.abc import Callable

from tests.test_simulator_support import P_ID, Api, one_plan_scenario

WORDS = {
    "idle": "NEEDS VERIFIED",
    "running": "Processing",
    "complete": "FailoverComplete",
    "halted": "HALTED",
    "undoing": "Undoing",
    "undone": "UNDO FAILOVER",
    "disabled": "DISABLED (mode)",
}
RUN = {"mode": "FailoverNow", "planlaunchOptions": {"restorePointRule": {"date": "2027-01-15T08:00:00"}}}


async def test_each_phase_shows_its_word(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario(after_undo="UndoFailover"), progression="tick")
    assert (await api.http.patch(f"/_sim/plans/{P_ID}", json={"state_words": WORDS})).status_code == 200
    shown = []
    shown.append((await api.plan(P_ID))["planState"])
    assert (await api.op(P_ID, "Run", RUN)).status_code == 200
    running = await api.plan(P_ID)  # tick 1 of 2
    assert running["planStateDetails"].startswith("In progress") and running["planInUse"] is True
    shown += [running["planState"], (await api.plan(P_ID))["planState"]]
    assert (await api.op(P_ID, "Undo")).status_code == 200
    shown += [(await api.plan(P_ID))["planState"], (await api.plan(P_ID))["planState"]]
    assert shown == ["NEEDS VERIFIED", "Processing", "FailoverComplete", "Undoing", "UNDO FAILOVER"]
    assert (await api.op(P_ID, "Disable")).status_code == 200  # legal from a completed undo, as before
    assert (await api.plan(P_ID))["planState"] == "DISABLED (mode)"


async def test_a_halted_plan_and_a_refusal_show_the_words(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario(halt_at_step=1, state_words=WORDS), progression="tick")
    assert (await api.op(P_ID, "Run", RUN)).status_code == 200
    halted = await api.plan(P_ID)
    assert halted["planState"] == "HALTED" and halted["planStateDetails"].startswith("Halted at step 1")
    refused = await api.op(P_ID, "Run", RUN)
    assert refused.status_code == 409 and "in state HALTED" in refused.json()["Message"]


async def test_schedule_type_is_shown_as_given_and_restored_by_null(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario(schedule_type_shown=0, schedule_time="2027-02-01T02:00:00"))
    listed = (await api.get("/v2/FailoverPlans")).json()
    assert listed[0]["scheduleType"] == 0 and listed[0]["scheduleEnabled"] is True
    assert (await api.http.patch(f"/_sim/plans/{P_ID}", json={"schedule_type_shown": None})).status_code == 200
    assert (await api.plan(P_ID))["scheduleType"] == "OnTime"


async def test_bad_state_words_are_refused_in_one_line(make_api: Callable[..., Api]) -> None:
    api = make_api(one_plan_scenario())
    for body in (
        {"state_words": {"paused": "Paused"}},
        {"state_words": {"idle": ""}},
        {"state_words": {"idle": "x" * 201}},
        {"state_words": None},
        {"state_words": ["idle"]},
    ):
        answer = await api.http.patch(f"/_sim/plans/{P_ID}", json=body)
        assert answer.status_code == 400 and "\n" not in answer.json()["Message"], (body, answer.text)
    assert (await api.plan(P_ID))["planState"] == "Enabled"
