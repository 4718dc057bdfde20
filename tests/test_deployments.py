"""The deployment definitions: served (flows/deployments.py), deployed (deployments/prefect.yaml), automations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_served_deployments() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    from vaodrill_prefect.flows.deployments import deployments

    assert {d.name: d for d in deployments(simulated=True)}["manual-drill"].parameters["request"] == {
        "drill_file": "deployments/drills/demo.yaml"
    }
    real = {d.name: d for d in deployments("vao-prod")}
    assert real["manual-drill"].parameters["request"] == {  # the form asks for the drill
        "vao_block": {"$ref": {"block_document_slug": "vao-server/vao-prod"}}
    }
    by_name = {d.name: d for d in deployments()}
    assert set(by_name) == {"app-stack-monthly", "manual-drill", "real-failover", "recover-crashed"}
    (schedule,) = by_name["app-stack-monthly"].schedules or []
    cron = schedule.schedule
    assert isinstance(cron, CronSchedule)
    assert (cron.cron, cron.timezone, cron.day_or) == ("0 2 1-7 * 6", "Europe/Berlin", False)
    for name in ("app-stack-monthly", "manual-drill"):
        assert by_name[name].concurrency_limit == 1
        options = by_name[name].concurrency_options
        assert options is not None and options.collision_strategy == "CANCEL_NEW"
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
        "cron": "0 2 1-7 * 6",
        "day_or": False,
        "timezone": "Europe/Berlin",
        "slug": "first-saturday-berlin",
    }
    assert "concurrency_limit" not in by_name["real-failover"]


def test_example_automations_are_valid_prefect_automations() -> None:
    """deployments/automations.yaml parses as Prefect automations once a notification block id is filled in."""
    from prefect.automations import AutomationCore
    from prefect.events.schemas.automations import EventTrigger

    path = ROOT / "deployments" / "automations.yaml"
    automations = yaml.safe_load(path.read_text())["automations"]
    some_id = "00000000-0000-0000-0000-000000000000"
    ids = {"block_document_id": some_id, "deployment_id": some_id}
    parsed = [
        AutomationCore.model_validate(
            {**a, "actions": [{**x, **{k: some_id for k in ids if k in x}} for x in a["actions"]]}
        )
        for a in automations
    ]
    crashed = next(a for a in parsed if a.name == "vaodrill - drill run crashed")
    assert [action.type for action in crashed.actions] == ["send-notification", "run-deployment"]
    triggers = [a.trigger for a in parsed]
    events = {event for trigger in triggers if isinstance(trigger, EventTrigger) for event in trigger.expect}
    assert len(triggers) == len([t for t in triggers if isinstance(t, EventTrigger)])  # every one an event trigger
    assert {
        "vaodrill.drill.completed",
        "vaodrill.undo.failed",
        "vaodrill.failover.completed",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.heartbeat",
    } <= events


# -- the run form (issue 17): what Prefect's UI sends and its server validates --------------------------------------


def form_values(schema: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The values Prefect's V2 run form starts with: the deployment's parameters, plus every schema ``default``
    written in (null included), in nested objects too (schema-form-property.tsx, as read in Prefect 3.9.1)."""
    definitions = schema.get("definitions", {})

    def fill(node: dict[str, Any], value: Any) -> Any:
        node = definitions[node["$ref"].split("/")[-1]] if "$ref" in node else node
        if "properties" not in node or not isinstance(value, dict):
            return value
        out = dict(value)
        for key, prop in node["properties"].items():
            if key in out:
                out[key] = fill(prop, out[key])
            elif "default" in prop:
                out[key] = prop["default"]
            elif "$ref" in prop and "block_type_slug" not in definitions[prop["$ref"].split("/")[-1]]:
                out[key] = fill(prop, {})
        return out

    filled: dict[str, Any] = fill(schema, values)
    return filled


def sent_schema(deployment: Any) -> dict[str, Any]:
    """The parameter schema ``serve`` sends for a deployment (RunnerDeployment.apply)."""
    schema: dict[str, Any] = deployment._parameter_openapi_schema.model_dump(exclude_unset=True)
    return schema


def form_errors(deployment: Any, values: dict[str, Any]) -> dict[str, Any]:
    """What ``POST /ui/schemas/validate`` answers the form (and what the server checks before creating the run)."""
    from prefect.utilities.schema_tools.validation import build_error_obj, validate

    return build_error_obj(validate(values, sent_schema(deployment)))


@pytest.mark.parametrize("simulated", [True, False])
def test_every_run_form_validates_untouched(simulated: bool) -> None:
    """Custom run and Quick Run of every served drill deployment, nothing touched: no error, so Run starts a run."""
    from vaodrill_prefect.flows.deployments import deployments

    for block in (None, "vao-prod"):
        for deployment in deployments(block, simulated=simulated):
            schema = sent_schema(deployment)
            values = form_values(schema, deployment.parameters)
            if deployment.name == "recover-crashed":  # started by the automation with the crashed run's id
                assert form_errors(deployment, values)["errors"] == [
                    {"property": "flow_run_id", "errors": ["'flow_run_id' is a required property"]}
                ]
                continue
            assert form_errors(deployment, values) == {"errors": [], "valid": True}, (deployment.name, values)
            request = values.get("request", {})
            assert None not in request.values(), (deployment.name, request)  # no null is ever stored or sent
            if "request" in schema["properties"]:
                props = schema["definitions"][schema["properties"]["request"]["$ref"].split("/")[-1]]["properties"]
                assert all(p.get("default", "") is not None for p in props.values()), props


def test_run_form_accepts_a_typed_drill_file_a_block_and_a_time() -> None:
    from vaodrill_prefect.flows.deployments import deployments

    manual = {d.name: d for d in deployments()}["manual-drill"]
    typed = {
        "request": {
            "drill_file": "deployments/drills/demo.yaml",
            "report_dir": "reports",
            "vao_block": {"$ref": "0b6c0c0e-2f3c-4a3e-8e46-3f1b1f3c1a2b"},  # the picker's value
            "run_id": "drill-2026-12-05",
            "now": "2026-12-05T02:00:00Z",
        }
    }
    assert form_errors(manual, form_values(sent_schema(manual), typed))["valid"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("report_dir", "", "'' should be non-empty"),
        ("drill_file", "", "'' should be non-empty"),
        ("run_id", "https://prefect/runs/flow-run/1", "does not match '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'"),
        ("run_id", "../../etc/passwd", "does not match"),
        ("now", "last friday", "'last friday' is not a 'date-time'"),
        ("approval_timeout_minutes", 0, "0 is less than or equal to the minimum of 0"),
        ("approval_timeout_minutes", 2000, "2000 is greater than the maximum of 1440"),
    ],
)
def test_run_form_refuses_a_bad_value_under_its_field(field: str, value: Any, message: str) -> None:
    """What the drill would refuse later is refused by the form, under the field, before any run exists; the
    flow's own validation (pydantic) refuses the same values."""
    from pydantic import ValidationError

    from vaodrill_prefect.flows.deployments import deployments
    from vaodrill_prefect.flows.failover import FailoverRequest

    failover = {d.name: d for d in deployments()}["real-failover"]
    values = form_values(sent_schema(failover), {"request": {field: value}})
    assert form_errors(failover, values) == {
        "valid": False,
        "errors": [{"property": "request", "errors": [{"property": field, "errors": [_containing(message)]}]}],
    }
    with pytest.raises(ValidationError):
        FailoverRequest.model_validate({field: value})


class _containing(str):
    """Equal to any string that contains it (an assertion on a message's gist)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str(self) in other

    __hash__ = str.__hash__


def test_single_plan_flow_validates_its_empty_optionals() -> None:
    """failover-plan (no deployment, but a flow anyone may deploy): its optional fields validate empty."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import validate

    from vaodrill_prefect.flows.drill import failover_plan

    schema = parameter_schema(failover_plan.fn).model_dump_for_openapi()
    assert validate(form_values(schema, {"plan": "Web Tier"}), schema) == []


def test_unstarted_runs_are_named_like_the_runs_that_start() -> None:
    """``<drill name> · <time>Z`` from the drill file's spec; the file's stem when it cannot be read."""
    from datetime import UTC, datetime, timedelta, timezone

    from vaodrill_prefect.flows.deployments import unstarted_run_name

    at = datetime(2027, 1, 2, 2, 0, tzinfo=timezone(timedelta(hours=1)))
    assert (
        unstarted_run_name({"request": {"drill_file": str(ROOT / "deployments/drills/demo.yaml")}}, at)
        == "demo-app-stack · 2027-01-02 01:00:00Z"
    )
    assert (
        unstarted_run_name({"request": {"drill_file": "nowhere/ordering.yaml"}}, at.astimezone(UTC))
        == "ordering · 2027-01-02 01:00:00Z"
    )
    assert unstarted_run_name({"request": {}}, at).startswith("no drill file · ")
