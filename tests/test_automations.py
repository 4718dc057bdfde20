"""The shipped automations fire from the events a real drill emits (real Prefect API, real webhook receiver)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from tests.conftest import Sim
from tests.test_drill_flow import run_drill_flow
from tests.test_engine import write_spec

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A local HTTP receiver standing in for Slack or Teams: every POSTed JSON body is kept."""
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


async def create_shipped(name: str, block_id: str) -> None:
    from prefect.automations import AutomationCore
    from prefect.client.orchestration import get_client

    shipped = {
        a["name"]: a for a in yaml.safe_load((ROOT / "deployments" / "automations.yaml").read_text())["automations"]
    }[name]
    actions = [{**a, "block_document_id": block_id} for a in shipped["actions"] if a["type"] == "send-notification"]
    async with get_client() as client:
        await client.create_automation(AutomationCore.model_validate({**shipped, "actions": actions}))


async def test_rto_target_missed_fires_for_the_slow_plan_only(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    url, received = webhook
    block = CustomWebhookNotificationBlock(
        name="test-hook", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    block_id = await block.save("rto-hook", overwrite=True)
    await create_shipped("vaodrill - RTO target missed", str(block_id))
    sim.patch("Active Directory", failover_duration=1200)  # 2 s at 600x, against a 1 s target below
    spec = write_spec(tmp_path, "  - plan: Core Network\n  - plan: Active Directory\n    rto_target: 1s\n")
    state, report = await run_drill_flow(sim, tmp_path, monkeypatch, spec)
    assert state.is_completed(), report.reason
    plans = {p.plan: p for p in report.plans}
    assert plans["Active Directory"].rto_met is False and plans["Core Network"].rto_met is True
    for _ in range(300):
        if received:
            break
        await asyncio.sleep(0.1)
    assert received, "the automation never fired"
    subjects = [str(r["subject"]) for r in received]
    assert subjects == ["RTO target missed: Active Directory"], subjects
    assert "against a target of 1.0 s" in str(received[0]["body"])
