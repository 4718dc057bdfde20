"""The doctor's plan checks: the plan list, the single-plan GET, the state words, each plan's state, OData.

Each reads with the probe's one token and adds its line to the diagnosis; a list it cannot read stops the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from vaodrill.app.doctor_probe import Probe, Stop
from vaodrill.errors import VaoError, one_line, parse_json
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.rules import not_runnable_because
from vaodrill.vao.vocabulary import Kind, classification


async def plan_list(probe: Probe) -> list[FailoverPlan]:
    if probe.client.api != "VAO v2":  # the backend's own paged read: its envelope checks are the drill's
        try:
            plans = await probe.client.list_plans()
        except VaoError as exc:
            probe.d.add("plan list", False, probe.redact(one_line(str(exc))))
            raise Stop from None
        return _listed(probe, plans)
    data = await probe.get_json("plan list", "/v2/FailoverPlans")
    if not isinstance(data, list):
        probe.d.add("plan list", False, f"GET /v2/FailoverPlans: expected a JSON array, got {_kind(data)}")
        raise Stop
    plans = []
    for index, item in enumerate(data):
        try:
            plans.append(FailoverPlan.parse(item, probe.settings.vocabulary))
        except ValidationError:
            probe.d.add("plan list", False, f"GET /v2/FailoverPlans: element {index} is not a failover plan")
            raise Stop from None
    return _listed(probe, plans)


def _listed(probe: Probe, plans: list[FailoverPlan]) -> list[FailoverPlan]:
    if not plans:
        probe.d.add(
            "plan list",
            False,
            "no failover plans are visible to this account",
            "give the account rights on the site or scope that holds the plans",
        )
        raise Stop
    probe.d.add("plan list", True, f"{len(plans)} plan{'s' if len(plans) != 1 else ''}")
    return plans


async def single_get(probe: Probe, plan: FailoverPlan) -> None:
    if probe.client.api != "VAO v2":
        try:
            same = (await probe.client.get_plan(plan.id)).id == plan.id
        except VaoError as exc:
            probe.d.add(
                "single-plan GET",
                False,
                probe.redact(one_line(str(exc))),
                "vaodrill re-reads each plan (and its runtime details) before its failover",
            )
            return
        probe.d.add(
            "single-plan GET",
            same,
            "the plan and its runtime details"
            if same
            else f"GET {probe.client.plans_path}/{plan.id} answers another plan",
        )
        return
    data = await probe.get_json("single-plan GET", f"/v2/FailoverPlans/{plan.id}")
    shape = (
        "an object"
        if isinstance(data, dict)
        else "a one-element array"
        if isinstance(data, list) and len(data) == 1
        else _kind(data)
    )
    try:
        same = FailoverPlan.parse(data, probe.settings.vocabulary).id == plan.id
    except ValidationError:
        same = False
    if same:
        probe.d.add("single-plan GET", True, f"answers {shape}" + (" (accepted)" if shape != "an object" else ""))
    else:
        probe.d.add(
            "single-plan GET",
            False,
            f"GET /v2/FailoverPlans/{plan.id} answers {shape}, not the plan",
            "vaodrill re-reads each plan before its Run with this request",
        )


def state_words(probe: Probe, plans: Sequence[FailoverPlan]) -> None:
    """Each distinct state word the server showed, and how vaodrill reads it (a real server's vocabulary)."""
    seen: dict[str, int] = {}
    for plan in plans:
        words = plan.state_raw if plan.state_raw is not None else "(not a string)"
        seen[words] = seen.get(words, 0) + 1
    for words, count in seen.items():
        shown = one_line(repr(words), 80)
        unknown = probe.settings.vocabulary.kind(words) is Kind.UNKNOWN
        probe.d.add(
            f"state {shown}",
            None,
            f"on {count} plan{'s' if count != 1 else ''}; vaodrill reads it as "
            f"{classification(words, probe.settings.vocabulary)}",
            "if you know what it means, add it to the connection settings: states / VAO_STATES, e.g. "
            f'{{"{one_line(words, 40)}": "idle"}}'
            if unknown
            else "",
        )


def plan_states(probe: Probe, plans: Sequence[FailoverPlan], wanted: Sequence[str] | None) -> None:
    for key in wanted or ():
        if not any(_named(plan, key) for plan in plans):
            probe.d.add(
                f"plan {key!r}",
                False,
                "no such plan on this server (by name or id)",
                "check the spelling: names are exact, ids are GUIDs",
            )
    for plan in plans:
        reason = not_runnable_because(plan)
        state = plan.describe_state()
        name = f"plan {plan.name!r}"
        if reason is None:
            probe.d.add(name, True, f"{state}: vaodrill would run it")
            continue
        # without a drill's plans, a disabled plan is a choice, not a problem
        counts = plan.kind is not Kind.DISABLED if wanted is None else any(_named(plan, key) for key in wanted)
        probe.d.add(
            name,
            False if counts else None,
            f"{state}; vaodrill would not run it: {reason}",
            _plan_hint(plan) if counts else "",
        )


async def odata(probe: Probe, plan: FailoverPlan) -> None:
    if probe.client.api != "VAO v2":
        return  # VRO pages with start/limit (the plan list above), there is no OData to check
    quoted = plan.name.replace("'", "''")
    answer = await probe.exchange("GET", "/v2/FailoverPlans", params={"$filter": f"name eq '{quoted}'", "$top": "1"})
    try:
        data = parse_json(answer.body) if answer.ok else None
    except ValueError:
        data = None
    works = isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and data[0].get("name") == plan.name
    if works:
        probe.d.add("OData", True, "$filter and $top work")
    else:
        what = f"HTTP {answer.status}" if not answer.ok else "an answer that ignores them"
        probe.d.add("OData", None, f"$filter/$top give {what}", "vaodrill does not need OData: it lists all plans")


def _named(plan: FailoverPlan, key: str) -> bool:
    """``key`` names the plan: its exact name, or its id in any case."""
    return plan.name == key or plan.id.lower() == key.strip().lower()


def _plan_hint(plan: FailoverPlan) -> str:
    if plan.kind is Kind.DISABLED:
        return "enable the plan in VAO, or leave it out of the drill"
    if plan.kind is Kind.UNKNOWN:
        return "vaodrill refuses states it does not know: report the state's spelling, or map it (states)"
    return "a previous run may have left it failed over or running: check it in VAO before a drill"


def _kind(data: Any) -> str:
    if isinstance(data, list):
        return f"an array of {len(data)}"
    return {dict: "an object", str: "a string", type(None): "null"}.get(type(data), type(data).__name__)


__all__ = ["odata", "plan_list", "plan_states", "single_get", "state_words"]
