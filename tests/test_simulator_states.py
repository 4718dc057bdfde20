"""Every operation of contract table 4.3 in every reachable plan status: legal ones move the plan, the rest 409.

Run twice: under the contract (a finished UndoFailover is Enabled again) and under the ``after_undo:
UndoFailover`` profile, where a completed UndoFailover is a status of its own from which Run and Disable are
legal (contract section 5). Only the cases that exist in a profile are generated: the completed UndoFailover
status has none under the contract (nothing is skipped).

The expected outcomes are written out by hand below, independently of ``vaodrill.simulator.states.RULES``, so
a wrong entry in the simulator's table fails here instead of being echoed back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.test_simulator_support import P_ID, Api, FakeClock, app_for, one_plan_scenario

RUNNING_STAGES = ["Failover", "UndoFailover", "PermanentFailover", "Failback", "UndoFailback", "CommitFailback"]
UNDONE = "UndoFailover:complete"  # only under after_undo: UndoFailover; else a finished undo is Enabled again

STATUSES = [
    "Disabled",
    "Enabled",
    *(f"{s}:running" for s in RUNNING_STAGES),
    *(f"{s}:complete" for s in RUNNING_STAGES),
    *(f"{s}:halted" for s in RUNNING_STAGES),
]

# How to reach each status from the one before it: (previous status, operation, body) or (previous, "read", n).
ROUTES: dict[str, tuple[str | None, str, Any]] = {
    "Enabled": (None, "nothing", None),
    "Disabled": ("Enabled", "Disable", None),
    "Failover:running": ("Enabled", "Run", {"mode": "FailoverNow"}),
    "Failover:complete": ("Failover:running", "read", 2),
    "UndoFailover:running": ("Failover:complete", "Undo", None),
    UNDONE: ("UndoFailover:running", "read", 2),
    "PermanentFailover:running": ("Failover:complete", "Run", {"mode": "PermanentFailoverNow"}),
    "PermanentFailover:complete": ("PermanentFailover:running", "read", 2),
    "Failback:running": ("Failover:complete", "Run", {"mode": "Failback"}),
    "Failback:complete": ("Failback:running", "read", 2),
    "UndoFailback:running": ("Failback:complete", "Undo", None),
    "UndoFailback:complete": ("UndoFailback:running", "read", 2),
    "CommitFailback:running": ("Failback:complete", "Run", {"mode": "CommitFailBack"}),
    "CommitFailback:complete": ("CommitFailback:running", "read", 2),
    **{f"{s}:halted": (f"{s}:running", "Halt", {"fullstop": False}) for s in RUNNING_STAGES},
}

OPS: dict[str, tuple[str, Any]] = {
    "Enable": ("Enable", None),
    "Disable": ("Disable", None),
    "Run FailoverNow": ("Run", {"mode": "FailoverNow"}),
    "Run PermanentFailoverNow": ("Run", {"mode": "PermanentFailoverNow"}),
    "Run Failback": ("Run", {"mode": "Failback"}),
    "Run CommitFailBack": ("Run", {"mode": "CommitFailBack"}),
    "Halt": ("Halt", {"fullstop": True}),
    "Continue": ("Continue", {"executionContinueOptions": "RetryFailedStep"}),
    "Undo": ("Undo", None),
    "Reset": ("Reset", {"resetState": True, "resetChangeLog": False, "resetConfiguration": False}),
    "Schedule": ("Schedule", {"startTime": "2099-01-01T00:00:00"}),
    "DisableSchedule": ("DisableSchedule", None),
}

# Hand-written contract 4.3: operation -> {status it is legal in: status it leads to}.
LEGAL: dict[str, dict[str, str]] = {
    "Enable": {"Disabled": "Enabled"},
    "Disable": {"Enabled": "Disabled", UNDONE: "Disabled"},
    "Run FailoverNow": {"Enabled": "Failover:running", UNDONE: "Failover:running"},
    "Run PermanentFailoverNow": {"Failover:complete": "PermanentFailover:running"},
    "Run Failback": {"Failover:complete": "Failback:running"},
    "Run CommitFailBack": {"Failback:complete": "CommitFailback:running"},
    "Halt": {f"{s}:running": f"{s}:halted" for s in RUNNING_STAGES},
    "Continue": {f"{s}:halted": f"{s}:running" for s in RUNNING_STAGES},
    "Undo": {
        "Failover:complete": "UndoFailover:running",
        "Failback:complete": "UndoFailback:running",
        "Failover:halted": "UndoFailover:running",
        "UndoFailover:halted": "UndoFailover:running",
        "PermanentFailover:halted": "UndoFailover:running",
        "Failback:halted": "UndoFailback:running",
        "UndoFailback:halted": "UndoFailback:running",
        "CommitFailback:halted": "UndoFailback:running",
    },
    "Reset": {s: "Disabled" for s in STATUSES if not s.endswith(":running")},
    "Schedule": {s: s for s in STATUSES},
    "DisableSchedule": {s: s for s in STATUSES},
}


def observed(record: dict[str, Any]) -> str:
    """A plan record as one of the STATUSES labels, derived from what the API shows."""
    state: str = record["planState"]
    details, in_use = record["planStateDetails"], record["planInUse"]
    if state in ("Enabled", "Disabled"):
        assert (details, in_use) == ("Ready", False)
        return state
    if state == "Halted":
        assert details.startswith("Halted at step ") and in_use
        return f"{record['stages'][-1]['kind']}:halted"
    if details.startswith("In progress: step "):
        assert in_use
        return f"{state}:running"
    assert details == "Complete, no errors, no warnings" and not in_use
    return f"{state}:complete"


# The simulator's state after a finished UndoFailover, per profile.
PROFILES = {"contract": "Enabled", "after_undo": "UndoFailover"}
BOTH_PROFILES = pytest.mark.parametrize("profile", list(PROFILES))

# UNDONE exists only where a finished undo stays UndoFailover: the other profile gets no such case (not a skip).
CASES = [
    pytest.param(profile, op, status, id=f"{profile}-{op}-{status}")
    for profile, after_undo in PROFILES.items()
    for op in OPS
    for status in STATUSES
    if status != UNDONE or after_undo == "UndoFailover"
]


@pytest.fixture(scope="module")
async def shared() -> AsyncIterator[dict[str, Api]]:
    """One simulator per profile for the module (480 fresh apps would dominate the runtime)."""
    clients = {
        profile: Api(app_for(one_plan_scenario(after_undo=after_undo), progression="tick", clock=FakeClock()))
        for profile, after_undo in PROFILES.items()
    }
    yield clients
    for client in clients.values():
        await client.aclose()


@pytest.fixture
async def api(shared: dict[str, Api], profile: str) -> Api:
    """The profile's simulator, reset to a fresh state (``profile`` is each test's parameter)."""
    client = shared[profile]
    client.sim.reset()
    await client.login()
    return client


def undo_stays(api: Api) -> bool:
    return bool(api.sim.scenario.plans[0].after_undo == "UndoFailover")


async def drive(api: Api, status: str, *, check: bool = True) -> None:
    previous, action, arg = ROUTES[status]
    if previous is not None:
        await drive(api, previous, check=False)
    if action == "read":
        for _ in range(arg):
            await api.plan(P_ID)
    elif action != "nothing":
        response = await api.op(P_ID, action, arg)
        assert response.status_code == 200, response.text
    if check:
        assert observed(await api.record(P_ID)) == status


@pytest.mark.parametrize(("profile", "op", "status"), CASES)
async def test_operation_in_status(api: Api, op: str, status: str) -> None:
    await drive(api, status)
    path, body = OPS[op]
    response = await api.op(P_ID, path, body)
    after = observed(await api.record(P_ID))
    expected = LEGAL[op].get(status)
    if expected is None:
        assert response.status_code == 409, response.text
        state = "Halted" if status.endswith(":halted") else status.split(":")[0]
        assert response.json()["Message"].startswith(f"Plan 'P' is in state {state}; {op} requires ")
        assert after == status, "a refused operation must not change the plan"
    else:
        assert response.status_code == 200, response.text
        assert response.content == b"", "success has an empty body"
        assert after == expected


def test_every_status_and_operation_is_covered() -> None:
    from vaodrill.simulator.states import REACHABLE, RULES, Op

    assert len(STATUSES) == len(REACHABLE) == 20
    assert {str(op) for op in Op} == set(OPS) == set(RULES) == set(LEGAL)


@BOTH_PROFILES
async def test_finished_undo_failover_returns_to_enabled_or_stays_complete(api: Api) -> None:
    await drive(api, "UndoFailover:running")
    assert (await api.plan(P_ID))["planStateDetails"] == "In progress: step 2 of 2"
    plan = await api.plan(P_ID)
    expected = ("UndoFailover", "Complete, no errors, no warnings") if undo_stays(api) else ("Enabled", "Ready")
    assert (plan["planState"], plan["planStateDetails"], plan["planInUse"]) == (*expected, False)


@pytest.mark.parametrize("profile", ["after_undo"])  # under the contract there is no completed undo to refuse from
async def test_refusal_from_a_completed_undo_names_what_run_requires(api: Api) -> None:
    assert undo_stays(api)
    await drive(api, UNDONE)
    response = await api.op(P_ID, "Undo")
    assert response.json() == {
        "Message": "Plan 'P' is in state UndoFailover; Undo requires a completed Failover or Failback, or Halted."
    }
    assert (await api.op(P_ID, "Run", {"mode": "FailoverNow"})).status_code == 200  # Run from the undone plan
    response = await api.op(P_ID, "Run", {"mode": "FailoverNow"})
    assert response.json() == {
        "Message": "Plan 'P' is in state Failover; Run FailoverNow requires Enabled or a completed UndoFailover."
    }


@BOTH_PROFILES
async def test_conflict_message_names_plan_state_and_requirement(api: Api) -> None:
    await drive(api, "Failover:running")
    response = await api.op(P_ID, "Run", {"mode": "PermanentFailoverNow"})
    assert response.json() == {
        "Message": "Plan 'P' is in state Failover; Run PermanentFailoverNow requires a completed Failover."
    }


@BOTH_PROFILES
async def test_reset_records_its_options_and_aborts_a_halted_stage(api: Api) -> None:
    await drive(api, "Failover:halted")
    assert (await api.op(P_ID, "Reset", {"resetState": True, "resetChangeLog": True})).status_code == 200
    record = await api.record(P_ID)
    assert record["stages"][-1]["status"] == "aborted"
    assert record["events"][-1]["event"] == "Reset"
    assert record["events"][-1]["resetChangeLog"] is True
