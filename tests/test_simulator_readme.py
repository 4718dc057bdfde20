"""The simulator README's examples run as written, so the docs cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.test_simulator_support import DEMO_IDS, Api, app_for
from vaodrill.simulator import load_scenario
from vaodrill.simulator.scenario import parse_scenario

README = Path(__file__).resolve().parents[1] / "vaodrill" / "simulator" / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


async def test_every_control_plane_example_succeeds_in_order() -> None:
    [examples] = blocks("http")
    api = Api(app_for("demo"))
    try:
        lines = [line for line in examples.splitlines() if line.strip()]
        assert len(lines) >= 15
        for line in lines:
            method, path, *body = line.split(" ", 2)
            content = body[0].encode() if body else b""
            if body:
                json.loads(body[0])  # the example itself must be valid JSON
            response = await api.http.request(method, path, content=content)
            assert response.status_code < 300, (line, response.text)
    finally:
        await api.aclose()


def test_scenario_example_is_valid() -> None:
    [example] = blocks("yaml")
    scenario = parse_scenario(example, "README")
    assert [p.name for p in scenario.plans] == ["SQL Tier", "Reporting", "Archive"]
    reporting = scenario.settings_for(scenario.plans[1])
    assert reporting.failback_duration == 240 and reporting.steps == 5


def test_demo_table_matches_the_demo_scenario() -> None:
    rows = re.findall(
        r"^\| ([A-Z][^|]+?) \| ([0-9a-f-]{36}) \| (\d+) / (\d+) \| (\d+) \| (\d+) / (\d+) \| (\w+) \|$",
        README.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    demo = load_scenario("demo")
    table = {}
    for spec in demo.plans:
        s = demo.settings_for(spec)
        table[spec.name] = (
            demo.plan_id(spec),
            int(s.failover_duration),
            int(s.undo_duration),
            s.steps,
            s.target_rto,
            s.target_rpo,
            spec.state,
        )
    documented = {
        name: (pid, int(f), int(u), int(st), int(rto), int(rpo), state) for name, pid, f, u, st, rto, rpo, state in rows
    }
    assert documented == table
    assert {name: row[0] for name, row in documented.items()} == DEMO_IDS


def test_veeam_docs_table_matches_the_scenario() -> None:
    rows = re.findall(
        r"^\| ([A-Z][\w ]+?) \| (\w+) \| (\w+) \| (object|array) \| (\d+) \| ([\w/]+) \| (\w+) \|$",
        README.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    docs = load_scenario("veeam-docs")
    table = {}
    for spec in docs.plans:
        s = docs.settings_for(spec)
        table[spec.name] = (
            s.idle_state,
            s.after_undo,
            s.single_get,
            str(s.illegal_status),
            s.continue_path,
            s.details_style,
        )
    assert {name: tuple(rest) for name, *rest in rows} == table
