"""The deployment definitions: served (flows/deployments.py), deployed (deployments/prefect.yaml), automations."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_served_deployments() -> None:
    from flows.deployments import deployments

    assert {d.name: d for d in deployments(simulated=True)}["manual-drill"].parameters["request"] == {
        "drill_file": "deployments/drills/demo.yaml"}
    real = {d.name: d for d in deployments("vao-prod")}
    assert real["manual-drill"].parameters["request"] == {  # the form asks for the drill
        "vao_block": {"$ref": {"block_document_slug": "vao-server/vao-prod"}}}
    by_name = {d.name: d for d in deployments()}
    assert set(by_name) == {"app-stack-monthly", "manual-drill", "real-failover", "recover-crashed"}
    (schedule,) = by_name["app-stack-monthly"].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.schedule.day_or) == (
        "0 2 1-7 * 6", "Europe/Berlin", False)
    for name in ("app-stack-monthly", "manual-drill"):
        assert by_name[name].concurrency_limit == 1
        assert by_name[name].concurrency_options.collision_strategy == "CANCEL_NEW"
    assert by_name["real-failover"].concurrency_limit is None  # see flows/failover.py: guarded by the flow


def test_prefect_yaml_matches_the_served_deployments() -> None:
    config = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in config["deployments"]}
    assert set(by_name) == {"app-stack-monthly", "manual-drill", "real-failover", "recover-crashed"}
    for deployment in by_name.values():
        path, function = deployment["entrypoint"].split(":")
        assert f"def {function}(" in (ROOT / path).read_text()
        if drill := deployment.get("parameters", {}).get("request", {}).get("drill_file"):
            assert (ROOT / drill).is_file()
    assert "drill_file" not in by_name["manual-drill"]["parameters"]["request"]  # never the demo on prod
    assert by_name["app-stack-monthly"]["schedules"][0] == {
        "cron": "0 2 1-7 * 6", "day_or": False, "timezone": "Europe/Berlin", "slug": "first-saturday-berlin"}
    assert "concurrency_limit" not in by_name["real-failover"]
def test_example_automations_are_valid_prefect_automations() -> None:
    """deployments/automations.yaml parses as Prefect automations once a notification block id is filled in."""
    from prefect.automations import AutomationCore

    path = ROOT / "deployments" / "automations.yaml"
    automations = yaml.safe_load(path.read_text())["automations"]
    some_id = "00000000-0000-0000-0000-000000000000"
    ids = {"block_document_id": some_id, "deployment_id": some_id}
    parsed = [AutomationCore.model_validate({**a, "actions": [{**x, **{k: some_id for k in ids if k in x}}
                                                               for x in a["actions"]]}) for a in automations]
    crashed = next(a for a in parsed if a.name == "vaodrill - drill run crashed")
    assert [action.type for action in crashed.actions] == ["send-notification", "run-deployment"]
    events = {event for a in parsed for event in a.trigger.expect}
    assert {"vaodrill.drill.completed", "vaodrill.undo.failed", "vaodrill.failover.completed",
            "prefect.flow-run.Crashed", "prefect.flow-run.heartbeat"} <= events
