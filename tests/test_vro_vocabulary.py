"""A real server's words over VRO's API: the ``veeam-words`` plans (``NEEDS VERIFIED``, ``Verified (passed
check)``, ``Processing`` while running, ``Undoing`` while undoing...) shown as VRO's ``state``, driven through
``/api/v13``. The drill passes, every undo verified, one Failover and one Undo per plan."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import Sim
from tests.test_engine import assert_all_clean, drill, failover_bodies


async def test_a_drill_passes_on_a_real_servers_words_over_vro(sim_factory: Callable[..., Sim], tmp_path: Path) -> None:
    sim = sim_factory("veeam-words", time_scale=600, api="vro")
    report, recorder, _ = await drill(sim, tmp_path)
    assert report.verdict == "passed", report.reason
    assert {p.undo for p in report.plans} == {"verified"}
    ids = {sim.plan_id(p.plan).lower() for p in report.plans}
    assert sim.posts("Run") == dict.fromkeys(ids, 1) and sim.posts("Undo") == dict.fromkeys(ids, 1)
    assert set(failover_bodies(sim)) == ids and sim.requests(path="/v2/*") == []  # VRO only
    assert recorder.phases("SQL Tier") == ["checking", "starting", "failing over", "failed over", "undoing", "clean"]
    assert_all_clean(sim)
