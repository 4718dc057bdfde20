"""At a drill's end (the dr_drill flow, real Prefect API, simulator over loopback): ``vaodrill.plan.overdue`` and
``vaodrill.rto.regressed`` from the report files and the spec's history policy, the trend artifact, and the shipped
automation notifying on a regression."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sim
from tests.test_automations import create_shipped, webhook  # noqa: F401 (a fixture)
from tests.test_drill_flow import flow_run_of, run_drill_flow
from tests.test_engine import write_spec
from vaodrill.report.files import write_reports
from vaodrill.report.model import DrillReport, PlanResult, PlanStatus

pytestmark = pytest.mark.usefixtures("prefect_api")


def earlier(reports: Path, days_ago: float, plan: str, status: PlanStatus, rto: float | None) -> None:
    start = datetime.now(UTC) - timedelta(days=days_ago)
    result = PlanResult(plan=plan, status=status, undo="verified", rto_seconds=rto, rto_target_seconds=3600.0)
    write_reports(
        DrillReport(
            drill="test-drill",
            run_id=f"old-{plan[:4]}-{days_ago}",
            mode="drill",
            verdict="passed" if status == "passed" else "failed",
            started_at=start,
            finished_at=start + timedelta(minutes=5),
            plans=[result],
        ),
        reports,
    )


async def drill_events(flow_run_id: Any) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client

    query = {
        "filter": {
            "event": {"prefix": ["vaodrill."]},
            "related": {"resources_in_roles": [[f"prefect.flow-run.{flow_run_id}", "flow-run"]]},
        },
        "limit": 50,
    }
    async with get_client() as client:
        for _ in range(150):  # persisted asynchronously: poll until the history events are there
            events = (await client.request("POST", "/events/filter", json=query)).json()["events"]
            names = {e["event"] for e in events}
            if {"vaodrill.plan.overdue", "vaodrill.rto.regressed"} <= names:
                break
            await asyncio.sleep(0.1)
    return [e for e in events if e["event"] in ("vaodrill.plan.overdue", "vaodrill.rto.regressed")]


async def test_a_drills_end_emits_overdue_and_regressed_with_the_figures(
    sim: Sim,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    webhook: tuple[str, list[dict[str, object]]],  # noqa: F811 (the fixture imported above)
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    url, received = webhook
    block = CustomWebhookNotificationBlock(
        name="history-hook", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    await create_shipped("vaodrill - RTO regressed", str(await block.save("history-hook", overwrite=True)))
    monkeypatch.setenv("VAODRILL_CACHE_DIR", str(tmp_path / "cache"))
    reports = tmp_path / "reports"
    for days in (50, 40, 30, 20, 10):  # Core Network passed in 0.01 s five times: this run's RTO is far above
        earlier(reports, days, "Core Network", "passed", 0.01)
    earlier(reports, 200, "Legacy ERP", "passed", 100.0)  # then never again: Disabled in the simulator
    spec = write_spec(
        tmp_path, "  - plan: Core Network\n  - plan: Legacy ERP\n", history="{max_age: 90d, rto_regression: 25%}"
    )
    state, report = await run_drill_flow(sim, tmp_path, monkeypatch, spec)
    assert state.is_failed() and {p.plan: p.status for p in report.plans} == {
        "Core Network": "passed",
        "Legacy ERP": "failed",
    }
    flow_run_id = flow_run_of(state)
    events = {e["event"]: e for e in await drill_events(flow_run_id)}
    assert set(events) == {"vaodrill.plan.overdue", "vaodrill.rto.regressed"}
    overdue, regressed = events["vaodrill.plan.overdue"], events["vaodrill.rto.regressed"]
    assert overdue["resource"]["prefect.resource.name"] == "Legacy ERP"
    assert overdue["payload"]["reason"] == "last passed 200 days ago (max 90)"
    assert (overdue["payload"]["runs"], overdue["payload"]["passes"], overdue["payload"]["max_age_days"]) == (2, 1, 90)
    assert regressed["resource"]["prefect.resource.name"] == "Core Network"
    assert regressed["payload"]["baseline_rto_seconds"] == 0.01 and regressed["payload"]["rto_regression_percent"] == 25
    assert regressed["payload"]["last_good_rto_seconds"] == by_plan(report)["Core Network"].rto_seconds
    assert regressed["payload"]["reason"].startswith(f"RTO {regressed['payload']['last_good_rto_seconds']:.2f}s is ")
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["drill-test-drill-trend"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    assert len(artifacts) == 1  # other drills of this test session named test-drill have their own
    assert "REGRESSED" in str(artifacts[0].data) and "OVERDUE" in str(artifacts[0].data)
    for _ in range(300):
        if received:
            break
        await asyncio.sleep(0.1)
    assert [r["subject"] for r in received] == ["RTO regressed: Core Network"]
    assert "over the median 0.01s of its 5 passed drills before (max 25%)" in str(received[0]["body"])


def by_plan(report: DrillReport) -> dict[str, PlanResult]:
    return {p.plan: p for p in report.plans}
