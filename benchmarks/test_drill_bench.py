"""Tests of the drill benchmark: the generated drills, the critical path, and the metrics of real baseline runs.

Run with ``.venv/bin/pytest benchmarks/test_drill_bench.py -q`` (not under ``tests/``: the benchmark is not
product). The runs use the real baselines as subprocesses against the simulator over loopback HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from drill_bench import KEYS, Bench, ProcessRun, analyse, bench_one_size, generate
from rich.console import Console

from vaodrill.engine.dag import reverse_order as reverse_waves
from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer


@pytest.mark.parametrize("plans", [5, 10, 50, 200])
def test_generated_dag_has_the_promised_shape(plans: int) -> None:
    bench = generate(plans, 7, critical_path_seconds=30, interval=0.75)
    assert len(bench.order) == plans
    assert 5 <= bench.depth <= 8
    layer: dict[str, int] = {}
    for name in bench.order:  # dependencies first, every plan after 1-2 plans of the layer just before
        deps = bench.after[name]
        layer[name] = 0 if not deps else layer[deps[0]] + 1
        assert all(layer[dep] == layer[name] - 1 for dep in deps)
        assert len(deps) == len(set(deps)) <= 2
        assert 60 <= bench.failover[name] <= 600 and 30 <= bench.undo[name] <= 180
    assert max(layer.values()) == bench.depth - 1
    assert all(len(bench.after[name]) >= 1 for name in bench.order if layer[name] > 0)
    assert bench.critical_path_s == pytest.approx(30)


def test_generation_is_seeded() -> None:
    first, again = (generate(50, 3, critical_path_seconds=30, interval=1) for _ in range(2))
    other = generate(50, 4, critical_path_seconds=30, interval=1)
    assert first == again
    assert first != other


def test_critical_path_is_longest_failover_chain_plus_each_undo_waves_longest_undo() -> None:
    # a -> b -> d, a -> c; undo waves: [c, d], [b], [a]
    bench = Bench(
        plans=4,
        seed=0,
        depth=3,
        order=["a", "b", "c", "d"],
        after={"a": [], "b": ["a"], "c": ["a"], "d": ["b"]},
        failover={"a": 100, "b": 100, "c": 500, "d": 100},
        undo={"a": 10, "b": 20, "c": 40, "d": 30},
        interval=1,
        time_scale=10,
    )
    assert reverse_waves(bench.order, bench.after) == [["c", "d"], ["b"], ["a"]]
    assert bench.critical_path_sim == 600 + 40 + 20 + 10  # a -> c is the longest chain
    assert bench.critical_path_s == pytest.approx(67)


def test_a_runner_that_failed_is_recorded_without_figures() -> None:
    bench = generate(6, 1, critical_path_seconds=5, interval=0.5)
    ids = {name: f"id-{name}" for name in bench.order}
    proc = ProcessRun(
        started_at=0, ended_at=9, returncode=2, peak_rss_mb=10, output="starting\nerror: cannot connect to the server\n"
    )
    row = analyse(bench, "vaodrill", ids, entries=[], records=[], proc=proc)
    assert row["error"] == "exit 2; 6 plans not undone; error: cannot connect to the server"
    assert "ratio" not in row and row["exit_code"] == 2


@pytest.fixture(scope="module")
def simulator() -> Iterator[tuple[httpx.Client, str]]:
    with BackgroundServer(create_app("demo")) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, server.url


def test_baselines_on_the_simulator(simulator: tuple[httpx.Client, str], tmp_path: Path) -> None:
    sim, url = simulator
    bench = generate(12, 5, critical_path_seconds=3, interval=0.2)
    rows = bench_one_size(
        sim, url, bench, ["bare", "sequential"], tmp_path, sequential_limit=60, console=Console(quiet=True)
    )
    bare, sequential = rows
    assert "error" not in bare and "error" not in sequential
    # Nothing beats the critical path; waiting for reads costs bare at most an interval per stage.
    stages = bench.depth + len(reverse_waves(bench.order, bench.after))
    assert 1.0 < bare["ratio"] < 1 + (stages * bench.interval + 1) / bench.critical_path_s
    assert sequential["ratio"] > bare["ratio"] and sequential["vs_bare"] > 1 and bare["vs_bare"] == 1
    assert bare["tokens"] == sequential["tokens"] == 1
    assert bare["gets_per_plan"] == 0 and sequential["list_reads"] == 0 and sequential["gets_per_plan"] >= 2
    assert bare["list_reads_per_interval"] == pytest.approx(1, abs=0.1)
    assert bench.interval * 0.95 < bare["poll_p50_s"] < bench.interval * 1.2
    assert 0 <= bare["lag_p50_s"] <= bare["lag_p95_s"] < bench.interval
    assert bare["rss_mb"] > 10 and bare["startup_s"] > 0 and bare["cpu_s"] > 0
    assert list(bare)[: len(KEYS)] == list(KEYS)


def test_sequential_is_skipped_when_too_long(simulator: tuple[httpx.Client, str], tmp_path: Path) -> None:
    sim, url = simulator
    bench = generate(50, 5, critical_path_seconds=30, interval=0.5)
    (row,) = bench_one_size(sim, url, bench, ["sequential"], tmp_path, sequential_limit=60, console=Console(quiet=True))
    assert row["ratio"] is None and row["skipped"].startswith("estimated")
    assert {key: row[key] for key in KEYS} == {"plans": 50, "runner": "sequential", **dict.fromkeys(KEYS[2:])}
    assert sim.get("/_sim/requests").json() == []  # it did not run at all


def test_the_adaptive_row_runs_the_cli_on_the_same_drill_with_adaptive_polling(tmp_path: Path) -> None:
    """The fourth row: the same generated drill with ``polling: adaptive``, run by the vaodrill CLI (here its
    ``validate`` command, which parses that file with the product's spec loader)."""
    import os
    import subprocess

    import yaml
    from drill_bench import RUNNERS, runner_command

    from vaodrill.spec.loader import parse_spec

    bench = generate(8, 2, critical_path_seconds=4, interval=0.25)
    assert RUNNERS == (
        "vaodrill",
        "vaodrill-adaptive",
        "vaodrill-prefect-sqlite",
        "vaodrill-prefect-postgres",
        "bare",
        "sequential",
    )
    fixed, adaptive = (parse_spec(yaml.safe_dump(bench.drill(polling))) for polling in ("fixed", "adaptive"))
    assert (fixed.polling, adaptive.polling) == ("fixed", "adaptive")
    assert adaptive.model_copy(update={"polling": "fixed"}) == fixed  # nothing else differs
    drill_file = tmp_path / "drill.yaml"
    drill_file.write_text(yaml.safe_dump(bench.drill("adaptive")), encoding="utf-8")
    command = runner_command("vaodrill-adaptive", drill_file, tmp_path / "reports")
    assert command[-3:] == [str(drill_file), "--report-dir", str(tmp_path / "reports")]
    validate = [*command[: command.index("run")], "validate", str(drill_file)]
    done = subprocess.run(
        validate, capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 plans" in done.stdout


def test_only_the_prefect_row_has_a_prefect_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``vaodrill`` rows measure a new user's CLI (no Prefect API, even if this shell has one); the
    ``vaodrill-prefect-*`` rows the same CLI reporting to the benchmark's server for that database."""
    from drill_bench import PrefectServer, runner_env

    monkeypatch.setenv("PREFECT_API_URL", "http://somewhere:4200/api")
    server = PrefectServer(tmp_path / "home")
    plain = runner_env("vaodrill", "http://sim", tmp_path, server)
    assert "PREFECT_API_URL" not in plain and not any((tmp_path / "no-prefect").iterdir())
    assert plain["PREFECT_HOME"] == str(tmp_path / "no-prefect") and plain["VAO_URL"] == "http://sim"
    flow = runner_env("vaodrill-prefect-sqlite", "http://sim", tmp_path, server)
    assert (flow["PREFECT_API_URL"], flow["PREFECT_HOME"]) == (server.url, str(tmp_path / "home"))
