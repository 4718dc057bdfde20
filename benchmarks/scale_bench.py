"""Scale-out benchmark: plans drilled per minute and the lag to a dependent's Run, at 1, 5 and 10 concurrent
drills, on Prefect server + PostgreSQL against Prefect's SQLite default.

    python benchmarks/scale_bench.py [--plans 20] [--levels 1 5 10] [--databases postgres sqlite] [--json]

For each database it brings up the topology of ``deployments/topology/up.py`` (``prefect server start``, two
process workers, five simulators on their own loopback addresses, write limit 2 per VAO server, one deployment per
drill), then for each level triggers that many drills at once (drill i on VAO server i mod 5, each a DAG of four
chains) and waits for all of them. Measured from outside the flows:

- plans per minute: plans of the drills that passed / wall time from the trigger to the last final state (includes
  the worker picking the runs up and starting one Python process per drill);
- lag to a dependent's Run: for every edge A -> B, the simulator's start of B's failover (its Run POST) minus
  the end of A's failover; p50, p95 and max over all edges of the level;
- failed drills and "database is locked" lines in the server's and workers' logs.

Failovers take 1 s and undos 0.5 s (simulated 60 s and 30 s at 60x); drills poll every second, so about 1 s of
each lag is the poll. Heavier sizes than the e2e test belong here (``--plans 20 --levels 1 5 10 20``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
SERVERS = 5
CHAINS = 4
LEVEL_TIMEOUT = 900  # seconds for one level's drills to end


def _topology_module() -> Any:
    spec = importlib.util.spec_from_file_location("vaodrill_topology", REPO / "deployments/topology/up.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


up = _topology_module()


def _plans(drill: int, count: int) -> list[str]:
    return [f"d{drill:02d}-{i:02d}" for i in range(1, count + 1)]


def _instant(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _lags(records: dict[str, dict[str, Any]], plans: list[str]) -> list[float]:
    """For each edge (plan i-CHAINS -> plan i): start of the dependent's failover - end of its dependency's."""

    def failover(name: str) -> dict[str, Any] | None:
        stages = [s for s in records[name]["stages"] if s["kind"] == "Failover"]
        return stages[-1] if stages else None

    lags = []
    for i in range(CHAINS, len(plans)):
        before, after = failover(plans[i - CHAINS]), failover(plans[i])
        if before and after and before["ended_at"]:
            lags.append(_instant(after["started_at"]) - _instant(before["ended_at"]))
    return lags


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def _level(topo: Any, level: int, plans: int) -> dict[str, Any]:
    for server in topo.servers:
        httpx.post(f"{server.url}/_sim/reset", json={}, timeout=10).raise_for_status()
    errors: list[str] = []
    async with topo.client() as client:
        deployments = [await client.read_deployment_by_name(f"dr-drill/bench-{i:02d}") for i in range(level)]
        started = time.monotonic()
        created = await asyncio.gather(
            *(client.create_flow_run_from_deployment(d.id) for d in deployments), return_exceptions=True
        )
        runs = [r for r in created if not isinstance(r, BaseException)]
        errors += [_short(e) for e in created if isinstance(e, BaseException)]
        states: list[Any] = [None] * len(runs)
        while time.monotonic() - started < LEVEL_TIMEOUT:
            try:
                states = [(await client.read_flow_run(r.id)).state for r in runs]
            except Exception as exc:  # an overloaded server answers 503: count it, ask again
                errors.append(_short(exc))
            if all(s is not None and s.is_final() for s in states):
                break
            await asyncio.sleep(0.5)
        seconds = time.monotonic() - started
    lags: list[float] = []
    for i in range(level):
        server = topo.servers[i % SERVERS]
        records = {p["name"]: p for p in httpx.get(f"{server.url}/_sim/plans", timeout=10).json()}
        lags += _lags(records, _plans(i, plans))
    passed = sum(1 for s in states if s is not None and s.is_completed())
    return {
        "drills": level,
        "plans": level * plans,
        "seconds": round(seconds, 1),
        "plans_per_minute": round(passed * plans / seconds * 60, 1),
        "lag_p50": round(statistics.median(lags), 2) if lags else None,
        "lag_p95": round(_percentile(lags, 0.95), 2) if lags else None,
        "lag_max": round(max(lags), 2) if lags else None,
        "failed": level - passed,
        "api_errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


async def bench(database: str, plans: int, levels: list[int], root: Path) -> list[dict[str, Any]]:
    per_server = math.ceil(max(levels) / SERVERS)
    specs_dir = root / "specs"
    specs_dir.mkdir(parents=True)
    scenarios = [
        up.write_scenario(
            specs_dir / f"site-{s}.yaml",
            f"site-{s}",
            [n for k in range(per_server) for n in _plans(s + k * SERVERS, plans)],
        )
        for s in range(SERVERS)
    ]
    specs = {
        i: up.write_drill(specs_dir / f"bench-{i:02d}.yaml", f"bench-{i:02d}", _plans(i, plans), chains=CHAINS)
        for i in range(max(levels))
    }
    drills = [
        up.DrillDeployment(f"bench-{i:02d}", str(path), f"vao-127-0-0-{i % SERVERS + 2}") for i, path in specs.items()
    ]
    topo = up.Topology(
        root / "topology", up.Settings(database=database, ui=False, worker_limit=math.ceil(max(levels) / 2))
    )
    await topo.up(scenarios, drills)
    try:
        rows = []
        for level in levels:
            row = {"database": database, **await _level(topo, level, plans)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        topo.down()
    locked = sum(p.read_text(errors="replace").count("database is locked") for p in topo.root.glob("*.log"))
    for row in rows:
        row["locked_lines"] = locked  # for the whole bring-up and every level of this database
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| database | drills | plans | wall s | plans/min | lag p50 s | lag p95 s | lag max s | failed | "
        "API errors | 'database is locked' |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r['database']} | {r['drills']} | {r['plans']} | {r['seconds']} | {r['plans_per_minute']} | "
        f"{r['lag_p50']} | {r['lag_p95']} | {r['lag_max']} | {r['failed']} | {r['api_errors']} | "
        f"{r['locked_lines']} |"
        for r in rows
    ]
    errors = [
        f"{r['database']}, {r['drills']} drills: first API error: {r['first_error']}" for r in rows if r["first_error"]
    ]
    return "\n".join([head, *lines, *errors])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--plans", type=int, default=20, help="plans per drill (at least 5)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 5, 10], help="concurrent drills")
    parser.add_argument("--databases", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"])
    parser.add_argument("--json", action="store_true", help="JSON lines instead of the table")
    args = parser.parse_args()
    if args.plans < CHAINS + 1 or min(args.levels) < 1:
        print(f"error: --plans must be at least {CHAINS + 1} and every level at least 1", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaodrill-scale-bench-") as tmp:
        for database in args.databases:
            try:
                rows += asyncio.run(bench(database, args.plans, args.levels, Path(tmp) / database))
            except up.TopologyError as exc:
                print(f"error: {database}: {exc}", file=sys.stderr)
                return 2
    print("\n".join(json.dumps(r) for r in rows) if args.json else _table(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
