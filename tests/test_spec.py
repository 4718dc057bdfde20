"""Drill spec: shapes, defaults, graph helpers, one-line errors with their place, and the example drills."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pendulum
import pytest
import yaml
from pydantic import ValidationError

from vaodrill.spec.loader import SpecError, load_spec, parse_spec
from vaodrill.spec.model import DrillSpec, PlanStep
from vaodrill.spec.policies import CONTINUE_OPTIONS, HaltPolicy
from vaodrill.spec.rules import AgoRule, LastRule, LatestRule, StartOfRule

DRILLS = Path(__file__).resolve().parents[1] / "deployments" / "drills"

BRIEF_EXAMPLE = """\
name: app-stack-quarterly          # [a-z0-9-]+
description: Quarterly DR test of the ordering application
mode: drill                        # drill: failover then undo | failover: real DR, no undo
timezone: Europe/Berlin            # zone in which restore-point rules are read (default UTC)
restore_point: latest              # default rule for every plan
max_parallel: 3                    # plans failing over at once (default: no limit beyond the DAG)
poll_interval: 10s                 # optional, how often plan states are read (default 10s)
on_halt: fail                      # default halt policy: fail | {continue: ProceedToNextStep, max: 2}
plans:
  - plan: Core Network             # a plan name or id (GUID)
  - plan: Active Directory
    after: [Core Network]
  - plan: SQL Tier
    after: [Active Directory]
    restore_point: {ago: 6h}
    rto_target: 45m                # overrides the plan's targetRTO
    timeout: 2h                    # give up waiting (default: a multiple of the target, decided by the engine)
    on_halt: {continue: RetryFailedStep, max: 1}
"""

DEMO = """\
name: demo
poll_interval: 1s
plans:
  - plan: Core Network
  - plan: Active Directory
    after: [Core Network]
  - plan: SQL Tier
    after: [Active Directory]
    restore_point: {ago: 6h}
  - plan: App Tier
    after: [SQL Tier]
  - plan: Web Tier
    after: [App Tier]
  - plan: Reporting
    after: [SQL Tier]
"""


def error(text: str, source: str = "demo.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source=source)
    message = str(info.value)
    assert "\n" not in message
    for noise in ("Traceback", "pydantic", "input_value", "Value error", "errors.pydantic.dev", "[type="):
        assert noise not in message
    return info.value


def keys(steps: list[PlanStep]) -> list[str]:
    return [step.plan for step in steps]


# ---------------------------------------------------------------------------------------- shapes


def test_brief_example() -> None:
    spec = parse_spec(BRIEF_EXAMPLE)
    assert spec.name == "app-stack-quarterly"
    assert spec.mode == "drill"
    assert spec.timezone == "Europe/Berlin"
    assert spec.restore_point == LatestRule()
    assert spec.max_parallel == 3
    assert spec.poll_interval == pendulum.duration(seconds=10)
    assert spec.poll_interval_seconds == 10.0
    assert spec.on_halt.is_fail
    sql = spec.steps_by_key["SQL Tier"]
    assert sql.after == ("Active Directory",)
    assert sql.restore_point == AgoRule.model_validate({"ago": "6h"})
    assert sql.rto_target == pendulum.duration(minutes=45)
    assert sql.timeout == pendulum.duration(hours=2)
    assert sql.on_halt == HaltPolicy.model_validate({"continue_with": "RetryFailedStep", "max": 1})


def test_defaults() -> None:
    spec = parse_spec("name: x\nplans: [A]\n")
    assert (spec.description, spec.mode, spec.timezone, spec.max_parallel) == ("", "drill", "UTC", None)
    assert spec.restore_point == LatestRule()
    assert spec.poll_interval == pendulum.duration(seconds=10)
    assert spec.on_halt == HaltPolicy()
    assert spec.plans == (PlanStep(plan="A"),)
    step = spec.plans[0]
    assert (step.after, step.restore_point, step.rto_target, step.timeout, step.on_halt) == ((), None, None, None, None)


def test_shorthands() -> None:
    text = "name: x\nmode: failover\nplans:\n  - A\n  - {plan: ' B ', after: A}\n  - {plan: C, after: null}\n"
    spec = parse_spec(text)
    assert spec.mode == "failover"
    assert spec.steps_by_key["B"].after == ("A",)
    assert spec.steps_by_key["C"].after == ()


def test_plan_may_be_a_guid() -> None:
    guid = "b8517d70-028d-4740-a130-787e164a3d83"
    spec = parse_spec(f"name: x\nplans:\n  - plan: {guid}\n  - plan: Web\n    after: [{guid}]\n")
    assert keys(spec.topological_order()) == [guid, "Web"]


def test_halt_policy_shapes() -> None:
    assert HaltPolicy.model_validate("fail").is_fail
    dumped: object = HaltPolicy.model_validate(" FAIL ").model_dump()  # its own serializer: as YAML spells it
    assert dumped == "fail"
    policy = HaltPolicy.model_validate({"continue": "proceed_to_next_step"})
    assert (policy.continue_with, policy.max, policy.is_fail) == ("ProceedToNextStep", 1, False)
    assert HaltPolicy.model_validate({"continue": "retry failed vm", "max": 10}).model_dump() == {
        "continue": "RetryFailedVm",
        "max": 10,
    }
    policy = HaltPolicy.model_validate({"continue_with": "RetryFailedGroup", "max": 2})
    assert str(policy) == "continue RetryFailedGroup (max 2)"
    for option in CONTINUE_OPTIONS:
        assert HaltPolicy.model_validate({"continue": option.upper()}).continue_with == option


def test_models_are_frozen_and_strict() -> None:
    spec = parse_spec(DEMO)
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="unknown key 'colour'"):
        PlanStep(plan="A", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="cycle: A -> B -> A"):
        DrillSpec.model_validate({"name": "x", "plans": [{"plan": "A", "after": ["B"]}, {"plan": "B", "after": ["A"]}]})


@pytest.mark.parametrize("path", sorted(DRILLS.glob("*.yaml")), ids=lambda p: p.name)
def test_dump_round_trips(path: Path) -> None:
    spec = load_spec(path)
    dumped = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    assert parse_spec(dumped) == spec
    assert parse_spec(yaml.safe_dump(spec.model_dump())) == spec


def test_brief_example_round_trips() -> None:
    spec = parse_spec(BRIEF_EXAMPLE)
    assert parse_spec(yaml.safe_dump(spec.model_dump(mode="json"))) == spec


# ---------------------------------------------------------------------------------- graph helpers


def test_topological_order_and_dependents() -> None:
    spec = parse_spec(DEMO)
    assert keys(spec.topological_order()) == [
        "Core Network",
        "Active Directory",
        "SQL Tier",
        "App Tier",
        "Web Tier",
        "Reporting",
    ]
    assert spec.dependents("SQL Tier") == {"App Tier", "Web Tier", "Reporting"}
    assert spec.dependents("Core Network") == {"Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting"}
    assert spec.dependents(spec.steps_by_key["App Tier"]) == {"Web Tier"}
    assert spec.dependents("Reporting") == set()
    with pytest.raises(KeyError, match="'Nope' is not a plan of drill 'demo'"):
        spec.dependents("Nope")


def test_topological_order_prefers_declaration_order_among_ready_steps() -> None:
    spec = parse_spec(
        textwrap.dedent(
            """\
            name: x
            plans:
              - {plan: C, after: [A]}
              - {plan: A}
              - {plan: B}
              - {plan: D, after: [B, C]}
              - {plan: E}
            """
        )
    )
    # A and B and E are ready at once; A first (declared before B). Then C (declared first of all) is ready
    # and beats B; D waits for B and C; E is last of the initially ready ones but before D (declared later).
    assert keys(spec.topological_order()) == ["A", "C", "B", "D", "E"]
    order = keys(spec.topological_order())
    for step in spec.plans:
        assert all(order.index(dep) < order.index(step.plan) for dep in step.after)


def test_diamond_and_steps_by_key_order() -> None:
    spec = parse_spec("name: x\nplans:\n  - {plan: D, after: [B, C]}\n  - {plan: C, after: [A]}\n  - B\n  - A\n")
    assert list(spec.steps_by_key) == ["D", "C", "B", "A"]
    assert keys(spec.topological_order()) == ["B", "A", "C", "D"]
    assert spec.dependents("A") == {"C", "D"}


def test_rule_and_halt_policy_fall_back_to_the_drill() -> None:
    spec = parse_spec(BRIEF_EXAMPLE.replace("restore_point: latest ", "restore_point: {start_of: day}"))
    assert spec.rule_for("Core Network") == StartOfRule(start_of="day")
    assert spec.rule_for(spec.steps_by_key["SQL Tier"]) == AgoRule.model_validate({"ago": "6h"})
    assert spec.halt_policy_for("Core Network") == HaltPolicy()
    assert spec.halt_policy_for("SQL Tier").continue_with == "RetryFailedStep"
    with pytest.raises(KeyError):
        spec.rule_for("Nope")


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("old", "new", "message", "line"),
    [
        ("plans:", "plan_s:", "demo.yaml: unknown key 'plan_s' (did you mean 'plans'?)", 3),
        (
            "{ago: 6h}",
            "{agoo: 6h}",
            "demo.yaml: plans[2].restore_point: unknown rule key 'agoo' "
            "(expected one of latest, ago, at, last, start_of, random_within)",
            9,
        ),
        (
            "after: [Core Network]",
            "after: [Core Netwrk]",
            "demo.yaml: plans[1].after: 'Core Netwrk' is not a plan of this drill (did you mean 'Core Network'?)",
            6,
        ),
        (
            "poll_interval: 1s",
            "timezone: Europe/Berln",
            "demo.yaml: timezone: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)",
            2,
        ),
        (
            "poll_interval: 1s",
            "mode: dril",
            "demo.yaml: mode: expected 'drill', 'failover' or 'readiness', got 'dril'",
            2,
        ),
        (
            "name: demo",
            "name: Demo App",
            "demo.yaml: name: must be lowercase letters, digits and hyphens ([a-z0-9-]+), got 'Demo App'",
            1,
        ),
        ("poll_interval: 1s", "max_parallel: 0", "demo.yaml: max_parallel: must be >= 1, got 0", 2),
        ("poll_interval: 1s", "max_parallel: yes", "demo.yaml: max_parallel: expected a whole number, got true", 2),
        (
            "poll_interval: 1s",
            "poll_interval: 0s",
            "demo.yaml: poll_interval: invalid duration '0s' (must be greater than zero)",
            2,
        ),
        (
            "restore_point: {ago: 6h}",
            "timeout: soon",
            "demo.yaml: plans[2].timeout: invalid duration 'soon' (use e.g. 6h, 90m, 2d or PT6H)",
            9,
        ),
        (
            "restore_point: {ago: 6h}",
            "restore_pont: {ago: 6h}",
            "demo.yaml: plans[2]: unknown key 'restore_pont' (did you mean 'restore_point'?)",
            9,
        ),
        (
            "{ago: 6h}",
            "{last: funday 02:00}",
            "demo.yaml: plans[2].restore_point.last: unknown day 'funday' "
            "(expected one of monday, tuesday, wednesday, thursday, friday, saturday, sunday, or daily)",
            9,
        ),
        (
            "{ago: 6h}",
            "{ago: 6h, at: 2026-01-01T00:00:00}",
            "demo.yaml: plans[2].restore_point: one rule per restore point, got 'ago' and 'at'",
            9,
        ),
        (
            "plan: Reporting",
            "plan: no",
            "demo.yaml: plans[5].plan: expected a plan name or id, got false (quote it in YAML)",
            14,
        ),
        (
            "plan: Reporting",
            "plan: core network",
            "demo.yaml: plans[5].plan: duplicate plan 'core network' (also plans[0])",
            14,
        ),
        (
            "after: [App Tier]",
            "after: [Web Tier]",
            "demo.yaml: plans[4].after: 'Web Tier' cannot run after itself",
            13,
        ),
        (
            "after: [App Tier]",
            "after: [App Tier, App Tier]",
            "demo.yaml: plans[4].after: 'App Tier' is listed twice",
            13,
        ),
        (
            "after: [App Tier]",
            "after: {App Tier: 1}",
            "demo.yaml: plans[4].after: expected a list of plan names, got a mapping",
            13,
        ),
        (
            "poll_interval: 1s",
            "on_halt: {continue: ProceedNext}",
            "demo.yaml: on_halt.continue: unknown continue option 'ProceedNext' (expected one of ProceedToNextVm, "
            "ProceedToNextGroup, ProceedToNextStep, RetryFailedStep, RetryFailedVm, RetryFailedGroup)",
            2,
        ),
        (
            "poll_interval: 1s",
            "on_halt: {continue: ProceedToNextVm, max: 11}",
            "demo.yaml: on_halt.max: must be <= 10, got 11",
            2,
        ),
        (
            "poll_interval: 1s",
            "on_halt: {continue: ProceedToNextVm, max: 0}",
            "demo.yaml: on_halt.max: must be >= 1, got 0",
            2,
        ),
        ("poll_interval: 1s", "on_halt: {max: 2}", "demo.yaml: on_halt: 'max' needs 'continue: <option>'", 2),
        (
            "poll_interval: 1s",
            "on_halt: retry",
            "demo.yaml: on_halt: expected 'fail' or {continue: <option>, max: N}, got 'retry'",
            2,
        ),
        (
            "poll_interval: 1s",
            "on_halt: {continu: RetryFailedVm}",
            "demo.yaml: on_halt: unknown key 'continu' (did you mean 'continue'?)",
            2,
        ),
        ("  - plan: Reporting\n", "  - restore_point: latest\n", "demo.yaml: plans[5]: missing key 'plan'", 14),
        ("  - plan: Core Network\n", "  - [Core Network]\n", "demo.yaml: plans[0]: expected a mapping, got a list", 4),
        ("name: demo\n", "", "demo.yaml: missing key 'name'", 1),
    ],
)
def test_error_messages(old: str, new: str, message: str, line: int) -> None:
    assert old in DEMO
    err = error(DEMO.replace(old, new, 1))
    assert str(err) == message
    assert err.line == line


def test_error_parts() -> None:
    err = error(DEMO.replace("after: [Core Network]", "after: [Core Netwrk]"))
    assert (err.source, err.location) == ("demo.yaml", "plans[1].after")
    assert err.problem.startswith("'Core Netwrk' is not a plan of this drill")
    assert isinstance(err, ValueError)


def test_a_failing_only_plan_is_one_error() -> None:
    err = error("name: x\nplans:\n  - {plan: A, restore_point: {agoo: 1h}}\n")
    assert str(err).startswith("demo.yaml: plans[0].restore_point: unknown rule key 'agoo'")
    assert "more" not in str(err)


def test_several_errors_show_the_first_and_a_count() -> None:
    err = error(DEMO.replace("poll_interval: 1s", "mode: dril\nmax_parallel: 0\ntimezone: Nowhere"))
    assert str(err) == "demo.yaml: mode: expected 'drill', 'failover' or 'readiness', got 'dril' (+2 more)"


@pytest.mark.parametrize(
    ("plans", "cycle"),
    [
        (
            "[{plan: SQL Tier, after: [App Tier]}, {plan: App Tier, after: [SQL Tier]}]",
            "SQL Tier -> App Tier -> SQL Tier",
        ),
        ("[{plan: A, after: [C]}, {plan: B, after: [A]}, {plan: C, after: [B]}]", "A -> B -> C -> A"),
        # Declared out of run order: the cycle still starts at its first-declared member and follows run order.
        ("[{plan: B, after: [A]}, {plan: C, after: [B]}, {plan: A, after: [C]}]", "B -> C -> A -> B"),
        # A step downstream of the cycle (Z) and one outside it (X) are not named.
        (
            "[X, {plan: Z, after: [Q]}, {plan: Q, after: [R, X]}, {plan: R, after: [Q]}]",
            "Q -> R -> Q",
        ),
    ],
)
def test_cycles_are_named_in_order(plans: str, cycle: str) -> None:
    err = error(f"name: x\nplans: {plans}\n")
    assert str(err) == f"demo.yaml: plans: cycle: {cycle}"
    assert err.line == 2


def test_yaml_errors() -> None:
    err = error("name: x\nmode: drill: oops\nplans: [A]\n")
    assert str(err) == "demo.yaml: line 2: invalid YAML (mapping values are not allowed in this context)"
    assert err.line == 2
    err = error("name: x\nplans:\n  - plan: [A\n")
    assert str(err).startswith("demo.yaml: line 4: invalid YAML (did not find expected ',' or ']'")
    assert str(error("name: x\nplans: [A]\nname: y\n")) == "demo.yaml: line 3: invalid YAML (duplicate key 'name')"
    assert str(error("")) == "demo.yaml: empty drill file"
    assert str(error("# only a comment\n")) == "demo.yaml: empty drill file"
    assert str(error("- a\n- b\n")) == "demo.yaml: expected a mapping (name, plans, ...) at the top level, got a list"
    assert str(error("name: x\nplans: []\n")) == "demo.yaml: plans: must not be empty"
    assert str(error("name: x\nplans: {A: 1}\n")) == "demo.yaml: plans: expected a list, got a mapping"
    assert str(error("plans: [A]", source="<string>")) == "<string>: missing key 'name'"


def test_load_spec_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec("x.yaml")
    assert str(info.value) == "no such drill file: x.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a drill file"
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec("latin1.yaml")
    assert str(info.value) == "latin1.yaml: not UTF-8 text"
    (tmp_path / "bad.yaml").write_text(DEMO.replace("{ago: 6h}", "{agoo: 6h}"))
    with pytest.raises(SpecError, match=r"^bad\.yaml: plans\[2\]\.restore_point: unknown rule key 'agoo'"):
        load_spec(Path("bad.yaml"))
    (tmp_path / "good.yaml").write_text(DEMO)
    assert load_spec("good.yaml") == load_spec(tmp_path / "good.yaml") == parse_spec(DEMO)


# ------------------------------------------------------------------------------- example drill files


def test_demo_drill() -> None:
    spec = load_spec(DRILLS / "demo.yaml")
    assert spec.name == "demo-app-stack"
    assert spec.mode == "drill"
    assert spec.poll_interval == pendulum.duration(seconds=0.25)
    assert keys(spec.topological_order()) == [
        "Core Network",
        "Active Directory",
        "SQL Tier",
        "App Tier",
        "Web Tier",
        "Reporting",
    ]
    edges = {step.plan: set(step.after) for step in spec.plans}
    assert edges == {
        "Core Network": set(),
        "Active Directory": {"Core Network"},
        "SQL Tier": {"Active Directory"},
        "App Tier": {"SQL Tier"},
        "Web Tier": {"App Tier"},
        "Reporting": {"SQL Tier"},
    }
    assert spec.rule_for("SQL Tier") == AgoRule.model_validate({"ago": "6h"})
    assert [spec.rule_for(key) for key in edges if key != "SQL Tier"] == [LatestRule()] * 5


def test_demo_drill_plans_exist_in_the_simulator_scenario() -> None:
    scenario = Path(__file__).resolve().parents[1] / "vaodrill" / "simulator" / "scenarios" / "demo.yaml"
    if not scenario.exists():
        pytest.skip("simulator demo scenario not present")
    names = {plan["name"] for plan in yaml.safe_load(scenario.read_text())["plans"]}
    for drill in ("demo.yaml", "with-legacy-erp.yaml", "app-stack-monthly.yaml"):
        assert set(load_spec(DRILLS / drill).steps_by_key) <= names, drill


def test_monthly_drill() -> None:
    spec = load_spec(DRILLS / "app-stack-monthly.yaml")
    assert spec.timezone == "Europe/Berlin"
    assert spec.rule_for("SQL Tier") == LastRule(last="sunday 02:00")
    assert spec.mode == "drill"


def test_legacy_erp_drill() -> None:
    spec = load_spec(DRILLS / "with-legacy-erp.yaml")
    assert spec.steps_by_key["Legacy ERP"].after == ("SQL Tier",)
    assert "Legacy ERP" in spec.steps_by_key["Reporting"].after
    assert spec.dependents("Legacy ERP") == {"Reporting"}
    assert spec.dependents("App Tier") == {"Web Tier"}  # the branch that still runs


def test_spec_modules_do_not_import_prefect() -> None:
    code = (
        "import sys, vaodrill.spec.model, vaodrill.spec.restore_points, vaodrill.spec.durations; "
        "sys.exit(1 if any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_json_schema_is_clean(recwarn: pytest.WarningsRecorder) -> None:
    schema = DrillSpec.model_json_schema()
    assert schema["properties"]["poll_interval"]["default"] == "10s"
    assert schema["properties"]["restore_point"]["default"] == "latest"
    assert schema["properties"]["on_halt"]["default"] == "fail"
    assert schema["required"] == ["name", "plans"]
    assert not [w for w in recwarn if "pydantic" in str(w.category.__module__)]
