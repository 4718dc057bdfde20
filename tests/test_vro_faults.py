"""The safety rules hold on VRO as on v2: a Failover whose answer is lost is never sent again (the server's state
decides), and an Undo answered 503 is re-read before it is sent again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import Sim
from tests.test_engine import assert_all_clean, by_name, drill, runs_processed

PLANS = "  - plan: Core Network\n  - plan: Active Directory\n    after: [Core Network]\n"


def vro_sim(sim_factory: Callable[..., Sim], **faults: object) -> Sim:
    sim = sim_factory("demo", time_scale=600, api="vro")
    sim.control.post("/_sim/faults", json=faults).raise_for_status()
    return sim


async def test_a_lost_failover_answer_counts_as_started_and_is_never_resent(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    sim = vro_sim(sim_factory, method="POST", path="/api/v13/Plans/*/Failover", drop="after", count=1)
    report, _, _ = await drill(sim, tmp_path, PLANS)
    assert report.verdict == "passed", report.reason
    assert by_name(report)["Core Network"].failover_started_at is not None
    ids = {sim.plan_id(n).lower(): 1 for n in ("Core Network", "Active Directory")}
    assert runs_processed(sim) == ids and sim.posts("Run") == ids  # two Failover POSTs in all: never resent
    assert_all_clean(sim)


async def test_an_undo_answered_503_is_re_read_and_the_plan_ends_clean(
    sim_factory: Callable[..., Sim], tmp_path: Path
) -> None:
    sim = vro_sim(sim_factory, method="POST", path="/api/v13/Plans/*/Undo", status=503, count=1)
    report, _, _ = await drill(sim, tmp_path, PLANS)
    assert report.verdict == "passed", report.reason
    assert {p.undo for p in report.plans} == {"verified"}
    statuses = [e["status"] for e in sim.requests(method="POST", path=sim.path("Undo"))]
    assert sorted(statuses) == [200, 200, 503]  # the refused Undo sent again once the plan showed no undo
    assert len(sim.requests(method="GET", path="/api/v13/RuntimeDetails/Plans/*")) >= 1  # re-read, not guessed
    assert_all_clean(sim)
