"""Drill benchmark: vaodrill against a bare-asyncio and a naive sequential runner, on one simulator, in one run.

    python benchmarks/drill_bench.py --plans 10 50 200 500 [--json FILE] [--plot FILE.png] [--seed N]
                                     [--runners vaodrill vaodrill-adaptive vaodrill-prefect-sqlite
                                                vaodrill-prefect-postgres bare sequential]
                                     [--critical-path-seconds 30]
                                     [--poll-interval 0.75] [--quick]

For each plan count it generates a seeded scenario and drill (a DAG of depth 5-8, each plan after 1-2 plans of
the previous layer, failovers of 60-600 and undos of 30-180 simulated seconds) and a time scale that makes the
critical path about ``--critical-path-seconds`` of wall time. Then each runner drives the same drill file, as
its own process tree, against one real uvicorn simulator (reset between runners):

- ``vaodrill``: ``vaodrill run DRILL`` with ``VAO_URL``/``VAO_USERNAME``/``VAO_PASSWORD`` and no Prefect API
  configured (a new user's CLI: the engine runs the drill alone);
- ``vaodrill-adaptive``: the same CLI on the same drill with ``polling: adaptive`` (``vaodrill.engine.cadence``: reads
  timed by the plans' progress within the same read budget);
- ``vaodrill-prefect-sqlite`` and ``vaodrill-prefect-postgres``: the same CLI with ``PREFECT_API_URL`` set to a
  ``prefect server start`` that the benchmark starts once per database, with its defaults: SQLite in a fresh
  PREFECT_HOME (a user's first server), or PostgreSQL started as ``deployments/topology/up.py`` starts it. The
  drill is a ``dr-drill`` flow run, as it is watched in the Prefect UI. The server's peak RSS and the CPU seconds
  it spent during the run are reported beside the CLI's (``server_rss_mb``, ``server_cpu_s``, ``cpu_s``), and
  PostgreSQL's CPU seconds apart (``db_cpu_s``);
- ``bare`` and ``sequential``: ``benchmarks/baselines.py`` (vaodrill's client only, no Prefect); sequential only
  where its estimated run stays under ``--sequential-limit`` seconds.

Everything is measured from the simulator's request log and its stage records, not from the runners' own
reports. The *critical path* is the longest chain of failover durations plus, per undo wave, its longest undo,
in wall seconds. A runner's *span* runs from its first Run POST to the first read that could show it the last
undo completed. A completion is *seen* at the first read (plan list, or a GET of that plan) after it.

To measure a committed version while the working tree changes, export it and put it first on the path:
``git archive HEAD vaodrill flows tasks | tar -x -C /tmp/v && PYTHONPATH=/tmp/v python benchmarks/drill_bench.py``
(the runners inherit the environment).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import importlib.util
import itertools
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from vaodrill.engine.dag import reverse_order as reverse_waves
from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer

HERE = Path(__file__).resolve().parent
PREFECT_RUNNERS = {"vaodrill-prefect-sqlite": "sqlite", "vaodrill-prefect-postgres": "postgres"}
RUNNERS = ("vaodrill", "vaodrill-adaptive", *PREFECT_RUNNERS, "bare", "sequential")
KEYS = ("plans", "runner", "ratio", "vs_bare", "lag_p95_s", "startup_s", "rss_mb", "list_reads_per_interval")
"""Keys every JSON object has (None when not measured: a runner skipped or failed)."""
USERNAME = PASSWORD = "demo"
PLAN_PATH = re.compile(r"^/v2/FailoverPlans/([^/]+)$")
OPERATION_PATH = re.compile(r"^/v2/FailoverPlans/([^/]+)/(Run|Undo)$")


# -- the generated drill ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """One generated scenario + drill: plans in dependency order, durations in simulated seconds."""

    plans: int
    seed: int
    depth: int
    order: list[str]
    after: dict[str, list[str]]
    failover: dict[str, int]
    undo: dict[str, int]
    interval: float
    time_scale: float = 1.0

    @property
    def critical_path_sim(self) -> float:
        finish: dict[str, float] = {}
        for name in self.order:
            finish[name] = self.failover[name] + max((finish[dep] for dep in self.after[name]), default=0.0)
        waves = reverse_waves(self.order, self.after)
        return max(finish.values()) + sum(max(self.undo[name] for name in wave) for wave in waves)

    @property
    def critical_path_s(self) -> float:
        return self.critical_path_sim / self.time_scale

    def sequential_estimate_s(self) -> float:
        """Every stage one after the other, each seen half an interval late on average, plus start-up."""
        stages = sum(self.failover.values()) + sum(self.undo.values())
        return stages / self.time_scale + len(self.order) * self.interval + 2.0

    def scenario(self) -> dict[str, Any]:
        return {
            "name": f"bench-{self.plans}",
            "timezone": "UTC",
            "defaults": {"steps": 5},
            "plans": [
                {"name": name, "failover_duration": self.failover[name], "undo_duration": self.undo[name]}
                for name in self.order
            ],
        }

    def drill(self, polling: str = "fixed") -> dict[str, Any]:
        return {
            "name": f"bench-{self.plans}",
            "description": f"drill benchmark: {self.plans} plans, depth {self.depth}, seed {self.seed}",
            "mode": "drill",
            "timezone": "UTC",
            "restore_point": "latest",
            "poll_interval": self.interval,
            "polling": polling,
            "on_halt": "fail",
            "plans": [
                {"plan": name, **({"after": self.after[name]} if self.after[name] else {})} for name in self.order
            ],
        }


def generate(plans: int, seed: int, *, critical_path_seconds: float, interval: float) -> Bench:
    """A seeded DAG of depth 5-8 (fewer with fewer plans); each plan after 1-2 plans of the previous layer."""
    rng = random.Random(seed * 1_000_003 + plans)
    depth = min(plans, rng.randint(5, 8))
    sizes = [1] * depth
    for _ in range(plans - depth):
        sizes[rng.randrange(depth)] += 1
    order: list[str] = []
    after: dict[str, list[str]] = {}
    previous: list[str] = []
    for size in sizes:
        layer = [f"plan-{len(order) + i:04d}" for i in range(size)]
        for name in layer:
            after[name] = sorted(rng.sample(previous, rng.randint(1, min(2, len(previous))))) if previous else []
        order += layer
        previous = layer
    bench = Bench(
        plans=plans,
        seed=seed,
        depth=depth,
        order=order,
        after=after,
        failover={name: rng.randint(60, 600) for name in order},
        undo={name: rng.randint(30, 180) for name in order},
        interval=interval,
    )
    return replace(bench, time_scale=bench.critical_path_sim / critical_path_seconds)


# -- running one runner as a process tree -------------------------------------------------------------------


@dataclass
class ProcessRun:
    started_at: float  # epoch seconds, just before the process was started
    ended_at: float
    returncode: int | None  # None: killed after the timeout
    peak_rss_mb: float
    output: str
    server_rss_mb: float | None = None  # peak of the process tree given as ``server``
    cpu_s: float | None = None  # CPU seconds of the runner's process tree
    server_cpu_s: float | None = None  # CPU seconds the ``server`` tree spent meanwhile
    db_cpu_s: float | None = None  # and the ``db`` tree (PostgreSQL)


def _tree_usage(root: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds (its reaped children's included) of ``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    usage: dict[int, tuple[int, float]] = {}
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry.name}/statm", encoding="ascii") as f:
                rss = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        usage[int(entry.name)] = (rss, sum(int(v) for v in fields[11:15]) / tick)  # utime stime cutime cstime
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    rss_total, cpu_total, stack = 0, 0.0, [root]
    while stack:
        pid = stack.pop()
        rss, cpu = usage.get(pid, (0, 0.0))
        rss_total, cpu_total = rss_total + rss, cpu_total + cpu
        stack += children.get(pid, [])
    return rss_total, cpu_total


def run_process(
    command: Sequence[str],
    env: dict[str, str],
    timeout: float,
    sample_every: float = 0.2,
    server: int | None = None,
    db: int | None = None,
) -> ProcessRun:
    """Run ``command`` in its own session, sampling its tree's RSS (and the ``server`` pid's tree apart); killed
    (whole group) after ``timeout``. CPU seconds: the runner's from the kernel's account of reaped children, the
    ``server``'s and ``db``'s as the growth of their trees' counters over the run."""
    with tempfile.TemporaryFile(mode="w+") as output:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = _tree_usage(server)[1] if server is not None else 0.0
        db_cpu = _tree_usage(db)[1] if db is not None else 0.0
        started = time.time()
        proc = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        peak = server_peak = 0
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            peak = max(peak, _tree_usage(proc.pid)[0])
            if server is not None:
                server_peak = max(server_peak, _tree_usage(server)[0])
            time.sleep(sample_every)
        returncode = proc.poll()
        ended = time.time()
        if returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        output.seek(0)
        return ProcessRun(
            started,
            ended,
            returncode,
            peak / 2**20,
            output.read(),
            server_peak / 2**20 if server is not None else None,
            cpu_s=cpu,
            server_cpu_s=_tree_usage(server)[1] - server_cpu if server is not None else None,
            db_cpu_s=_tree_usage(db)[1] - db_cpu if db is not None else None,
        )


# -- metrics from the simulator's request log ---------------------------------------------------------------


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


def _pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (nearest rank, so the value was really observed), None without values."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked) + 0.5) - 1))]


@dataclass
class Log:
    """The request log of one run, indexed by what the metrics ask."""

    lists: list[float] = field(default_factory=list)  # GET /v2/FailoverPlans
    gets: dict[str, list[float]] = field(default_factory=dict)  # GET /v2/FailoverPlans/{id}
    runs: dict[str, list[float]] = field(default_factory=dict)  # successful Run POSTs
    undos: dict[str, list[float]] = field(default_factory=dict)
    tokens: int = 0

    @classmethod
    def parse(cls, entries: list[dict[str, Any]]) -> Log:
        log = cls()
        for entry in entries:
            at, path, method = _epoch(entry["at"]), entry["path"], entry["method"]
            if method == "POST" and path.rstrip("/").endswith("/Token"):
                log.tokens += 1
            elif method == "GET" and path == "/v2/FailoverPlans":
                log.lists.append(at)
            elif method == "GET" and (match := PLAN_PATH.match(path)):
                log.gets.setdefault(match[1].lower(), []).append(at)
            elif method == "POST" and entry["status"] == 200 and (match := OPERATION_PATH.match(path)):
                target = log.runs if match[2] == "Run" else log.undos
                target.setdefault(match[1].lower(), []).append(at)
        log.lists.sort()
        for times in log.gets.values():
            times.sort()
        return log

    def seen(self, plan_id: str, instant: float) -> float | None:
        """The first read after ``instant`` that shows this plan: a list read or a GET of the plan."""
        candidates = []
        for times in (self.lists, self.gets.get(plan_id, [])):
            i = bisect.bisect_left(times, instant)
            if i < len(times):
                candidates.append(times[i])
        return min(candidates, default=None)


def stage_ends(records: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """Plan id -> when its last ``kind`` stage ended, from ``GET /_sim/plans`` (exact instants)."""
    ends: dict[str, float] = {}
    for record in records:
        for stage in record["stages"]:
            if stage["kind"] == kind and stage["ended_at"] is not None:
                ends[record["id"].lower()] = _epoch(stage["ended_at"])
    return ends


def analyse(
    bench: Bench,
    runner: str,
    ids: dict[str, str],
    entries: list[dict[str, Any]],
    records: list[dict[str, Any]],
    proc: ProcessRun,
) -> dict[str, Any]:
    """One row: span / critical path, polling, reads, lags, start-up and memory of one runner's run."""
    log = Log.parse(entries)
    failover_end, undo_end = stage_ends(records, "Failover"), stage_ends(records, "UndoFailover")
    row: dict[str, Any] = {
        "plans": bench.plans,
        "runner": runner,
        "seed": bench.seed,
        "depth": bench.depth,
        "time_scale": round(bench.time_scale, 3),
        "poll_interval_s": bench.interval,
        "critical_path_s": round(bench.critical_path_s, 3),
        "exit_code": proc.returncode,
        "rss_mb": round(proc.peak_rss_mb, 1),
        "tokens": log.tokens,
    }
    if proc.cpu_s is not None:
        row["cpu_s"] = round(proc.cpu_s, 1)
    for key in ("server_rss_mb", "server_cpu_s", "db_cpu_s"):
        if (value := getattr(proc, key)) is not None:
            row[key] = round(value, 1)
    problems = []
    if proc.returncode != 0:
        problems.append("timed out" if proc.returncode is None else f"exit {proc.returncode}")
    doubled = [pid for pid, times in log.runs.items() if len(times) > 1]
    if doubled:
        problems.append(f"{len(doubled)} plans got two Runs")
    all_ids = list(ids.values())
    undone = [pid for pid in all_ids if pid in undo_end]
    if len(undone) < len(all_ids):
        problems.append(f"{len(all_ids) - len(undone)} plans not undone")
    first_run = min((times[0] for times in log.runs.values()), default=None)
    seen_undone = [log.seen(pid, undo_end[pid]) for pid in undone]
    end = proc.ended_at if problems else max((s for s in seen_undone if s is not None), default=proc.ended_at)
    if first_run is not None:
        span = end - first_run
        row |= {
            "span_s": round(span, 3),
            "ratio": round(span / bench.critical_path_s, 4),
            "startup_s": round(first_run - proc.started_at, 3),
            "tail_s": round(proc.ended_at - end, 3),
        }
        polls = [t for t in log.lists if first_run <= t <= end]
        periods = [b - a for a, b in itertools.pairwise(polls)]
        row |= {
            "list_reads": len(polls),
            "list_reads_per_interval": round(len(polls) / (span / bench.interval), 3),
            "poll_p50_s": _round(_pct(periods, 50)),
            "poll_p90_s": _round(_pct(periods, 90)),
        }
    row["gets_per_plan"] = round(sum(len(times) for times in log.gets.values()) / bench.plans, 2)
    lags = list(_failover_lags(bench, ids, log, failover_end))
    undo_lags = list(_undo_lags(bench, ids, log, undo_end))
    row |= {
        "lag_p50_s": _round(_pct(lags, 50)),
        "lag_p95_s": _round(_pct(lags, 95)),
        "undo_lag_p50_s": _round(_pct(undo_lags, 50)),
        "undo_lag_p95_s": _round(_pct(undo_lags, 95)),
    }
    if problems:
        last_line = proc.output.strip().splitlines()[-1:]  # the runner's error line (or a traceback's last)
        row["error"] = "; ".join(problems + [line[:300] for line in last_line])
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _failover_lags(bench: Bench, ids: dict[str, str], log: Log, failover_end: dict[str, float]) -> Iterator[float]:
    """From the read that showed a plan's last dependency complete to that plan's Run POST."""
    for name in bench.order:
        deps = [ids[dep] for dep in bench.after[name]]
        run = log.runs.get(ids[name])
        if not deps or not run or not all(dep in failover_end for dep in deps):
            continue
        seen = [log.seen(dep, failover_end[dep]) for dep in deps]
        if all(s is not None for s in seen):
            yield run[0] - max(s for s in seen if s is not None)


def _undo_lags(bench: Bench, ids: dict[str, str], log: Log, undo_end: dict[str, float]) -> Iterator[float]:
    """From the read that showed an undo wave complete to each Undo POST of the next wave."""
    waves = reverse_waves(bench.order, bench.after)
    for previous, wave in itertools.pairwise(waves):
        seen = [log.seen(ids[name], undo_end[ids[name]]) if ids[name] in undo_end else None for name in previous]
        if any(s is None for s in seen):
            return
        ready = max(s for s in seen if s is not None)
        for name in wave:
            if undo := log.undos.get(ids[name]):
                yield undo[0] - ready


# -- the benchmark ------------------------------------------------------------------------------------------


def runner_command(runner: str, drill_file: Path, report_dir: Path) -> list[str]:
    if runner.startswith("vaodrill"):  # the adaptive row's drill file says polling: adaptive
        local = Path(sys.executable).parent / "vaodrill"
        exe = str(local) if local.exists() else shutil.which("vaodrill") or "vaodrill"
        return [exe, "run", str(drill_file), "--report-dir", str(report_dir)]
    return [sys.executable, str(HERE / "baselines.py"), runner, str(drill_file)]


class PrefectServer:
    """``prefect server start`` on loopback with its defaults, for a ``vaodrill-prefect-*`` runner: on SQLite in a
    fresh PREFECT_HOME, or on a throw-away PostgreSQL cluster started as ``deployments/topology/up.py`` starts it."""

    def __init__(self, home: Path, database: str = "sqlite") -> None:
        self.home = home
        self.database = database
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen[bytes] | None = None
        self.postgres: Any = None

    def __enter__(self) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.database == "postgres":
            self.postgres = _topology().Postgres.start(self.home)
        prefect = Path(sys.executable).parent / "prefect"
        self.process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("prefect server start did not answer within 120 s")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.postgres is not None:
            self.postgres.stop()

    def env(self) -> dict[str, str]:
        database = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": self.postgres.url} if self.postgres else {}
        return {
            **_without_prefect(os.environ),
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **database,
        }

    def pids(self) -> tuple[int | None, int | None]:
        """The server's pid and PostgreSQL's postmaster pid (None without PostgreSQL)."""
        server = self.process.pid if self.process else None
        if self.postgres is None:
            return server, None
        pid_file = Path(self.postgres.directory) / "data" / "postmaster.pid"
        return server, int(pid_file.read_text().split()[0])


def _topology() -> Any:
    """``deployments/topology/up.py`` (not a package): its PostgreSQL, started the way the topology starts it."""
    if (module := sys.modules.get("vaodrill_topology")) is not None:
        return module
    spec = importlib.util.spec_from_file_location("vaodrill_topology", HERE.parent / "deployments/topology/up.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _without_prefect(env: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if not key.startswith(("VAO_", "PREFECT_"))}


def runner_env(runner: str, url: str, work: Path, prefect: PrefectServer | None) -> dict[str, str]:
    """The VAO settings, and a Prefect API only for a ``vaodrill-prefect-*`` runner (its server; an empty
    PREFECT_HOME otherwise)."""
    vao = {"VAO_URL": url, "VAO_USERNAME": USERNAME, "VAO_PASSWORD": PASSWORD}
    if runner in PREFECT_RUNNERS:
        assert prefect is not None
        return prefect.env() | vao
    (work / "no-prefect").mkdir(exist_ok=True)
    return _without_prefect(os.environ) | {"PREFECT_HOME": str(work / "no-prefect")} | vao


def bench_one_size(
    sim: httpx.Client,
    url: str,
    bench: Bench,
    runners: Sequence[str],
    work: Path,
    sequential_limit: float,
    console: Console,
    prefect: Mapping[str, PrefectServer] | None = None,
) -> list[dict[str, Any]]:
    """One row per runner on ``bench``; ``prefect``: the started server per database (``sqlite``, ``postgres``)."""
    drill_files = {}
    for polling in ("fixed", "adaptive"):
        drill_files[polling] = work / f"bench-{bench.plans}-{polling}.yaml"
        drill_files[polling].write_text(yaml.safe_dump(bench.drill(polling), sort_keys=False), encoding="utf-8")
    sim.post("/_sim/scenario", content=yaml.safe_dump(bench.scenario(), sort_keys=False)).raise_for_status()
    summary = sim.post("/_sim/reset", json={"time_scale": bench.time_scale}).raise_for_status().json()
    ids = {plan["name"]: plan["id"].lower() for plan in summary["plans"]}
    rows: list[dict[str, Any]] = []
    for runner in runners:
        if runner == "sequential" and (estimate := bench.sequential_estimate_s()) > sequential_limit:
            console.print(
                f"[yellow]{bench.plans} plans: sequential skipped (estimated {estimate:.0f} s > "
                f"{sequential_limit:.0f} s)[/yellow]"
            )
            rows.append(
                {
                    "plans": bench.plans,
                    "runner": runner,
                    "ratio": None,
                    "vs_bare": None,
                    "skipped": f"estimated {estimate:.0f} s",
                }
            )
            continue
        sim.post("/_sim/reset", json={}).raise_for_status()
        console.print(f"[dim]{bench.plans} plans: {runner} (critical path {bench.critical_path_s:.1f} s) ...[/dim]")
        timeout = max(120.0, 6 * bench.critical_path_s) + (
            bench.sequential_estimate_s() if runner == "sequential" else 0.0
        )
        load = os.getloadavg()[0]  # other work on the machine shows here
        drill_file = drill_files["adaptive" if runner == "vaodrill-adaptive" else "fixed"]
        server = (prefect or {}).get(PREFECT_RUNNERS.get(runner, ""))
        server_pid, db_pid = server.pids() if server else (None, None)
        proc = run_process(
            runner_command(runner, drill_file, work / "reports"),
            runner_env(runner, url, work, server),
            timeout,
            server=server_pid,
            db=db_pid,
        )
        entries = sim.get("/_sim/requests").raise_for_status().json()
        records = sim.get("/_sim/plans").raise_for_status().json()
        rows.append(analyse(bench, runner, ids, entries, records, proc) | {"load_before": round(load, 2)})
        if "error" in rows[-1]:
            console.print(f"[red]{bench.plans} plans: {runner}: {rows[-1]['error']}[/red]")
    bare = next((row for row in rows if row["runner"] == "bare" and "error" not in row), None)
    for row in rows:
        row["vs_bare"] = round(row["ratio"] / bare["ratio"], 4) if bare and row.get("ratio") else None
    return [{key: row.get(key) for key in KEYS} | row for row in rows]


def _fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def table(rows: list[dict[str, Any]], cores: int, interval: float) -> Table:
    out = Table(
        title=f"drill benchmark: {cores} cores, poll interval {interval:g} s, span / critical path",
        caption="span: first Run POST -> read showing the last undo done; lag: read showing a plan's "
        "dependencies done -> its Run POST; undo lag: read showing a wave done -> next wave's Undo "
        "POST; start->Run: process start -> first Run POST; exit tail: that read -> process exit; "
        "RSS: peak of the runner's process tree (+ the Prefect server's); CPU: seconds of the runner's "
        "tree (+ the Prefect server's, + PostgreSQL's) during the run; load: 1-minute load average "
        "before the run",
    )
    for name in (
        "plans",
        "runner",
        "crit. path",
        "span/CP",
        "/bare",
        "lists/int.",
        "poll p50/p90",
        "tokens",
        "GETs/plan",
        "lag p50/p95",
        "undo lag p50",
        "start->Run",
        "exit tail",
        "RSS MB",
        "CPU s",
        "load",
        "note",
    ):
        out.add_column(name, justify="left" if name in ("runner", "note") else "right")
    for row in rows:
        if row.get("skipped"):
            out.add_row(str(row["plans"]), row["runner"], *["-"] * 14, f"skipped ({row['skipped']})")
            continue
        out.add_row(
            str(row["plans"]),
            row["runner"],
            _fmt(row.get("critical_path_s"), ".1f", " s"),
            _fmt(row.get("ratio"), ".3f"),
            _fmt(row.get("vs_bare"), ".3f"),
            _fmt(row.get("list_reads_per_interval"), ".2f"),
            f"{_fmt(row.get('poll_p50_s'), '.3f')}/{_fmt(row.get('poll_p90_s'), '.3f')}",
            str(row.get("tokens", "-")),
            _fmt(row.get("gets_per_plan"), ".2f"),
            f"{_fmt(row.get('lag_p50_s'), '.3g')}/{_fmt(row.get('lag_p95_s'), '.3g')}",
            _fmt(row.get("undo_lag_p50_s"), ".3g"),
            _fmt(row.get("startup_s"), ".1f", " s"),
            _fmt(row.get("tail_s"), ".1f", " s"),
            _rss(row),
            _cpu(row),
            _fmt(row.get("load_before"), ".1f"),
            row.get("error", "")[:60],
        )
    return out


def _rss(row: dict[str, Any]) -> str:
    server = row.get("server_rss_mb")
    return _fmt(row.get("rss_mb"), ".0f") + (f" + {server:.0f} server" if server else "")


def _cpu(row: dict[str, Any]) -> str:
    extra = "".join(
        f" + {row[key]:.0f} {what}"
        for key, what in (("server_cpu_s", "server"), ("db_cpu_s", "db"))
        if row.get(key) is not None
    )
    return _fmt(row.get("cpu_s"), ".1f") + extra


def plot(rows: list[dict[str, Any]], path: Path, cores: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for runner in RUNNERS:
        points = sorted(
            (row["plans"], row["ratio"])
            for row in rows
            if row["runner"] == runner and row.get("ratio") is not None and "error" not in row
        )
        failed = sorted(
            (row["plans"], row["ratio"])
            for row in rows
            if row["runner"] == runner and row.get("ratio") is not None and "error" in row
        )
        if points:
            line = ax.plot(*zip(*points, strict=True), marker="o", label=runner)[0]
        if failed:  # timed out: its span is at least this
            ax.scatter(
                *zip(*failed, strict=True),
                marker="^",
                facecolors="none",
                edgecolors=line.get_color() if points else None,
                label=f"{runner}: timed out (at least)",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({row["plans"] for row in rows})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ratios = [row["ratio"] for row in rows if row.get("ratio") is not None]
    ticks = [t for t in (1, 1.1, 1.25, 1.5, 2, 3, 5, 10, 20, 50) if t <= max(ratios, default=1) * 1.1]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_ylim(bottom=0.95)
    ax.set_xlabel("plans")
    ax.set_ylabel("span / critical path (log)")
    ax.set_title(f"drill benchmark ({cores} cores)")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vaodrill vs bare-asyncio vs naive sequential, on one simulator")
    parser.add_argument("--plans", type=int, nargs="+", default=None, help="plan counts (default 10 50 200 500)")
    parser.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--critical-path-seconds", type=float, default=None, help="wall seconds (default 30)")
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds, for every runner (default 0.75)")
    parser.add_argument(
        "--sequential-limit",
        type=float,
        default=300.0,
        help="skip the sequential runner when its estimated run is longer (seconds)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 8 plans, 4 s critical path, 0.25 s interval (unless given)"
    )
    parser.add_argument("--json", type=Path, help="write one object per plans x runner")
    parser.add_argument("--plot", type=Path, help="PNG of span / critical path against plan count")
    args = parser.parse_args(argv)
    quick = args.quick
    args.plans = args.plans or ([8] if quick else [10, 50, 200, 500])
    args.critical_path_seconds = args.critical_path_seconds or (4.0 if quick else 30.0)
    args.poll_interval = args.poll_interval or (0.25 if quick else 0.75)
    if min(args.plans) < 1 or args.critical_path_seconds <= 0 or args.poll_interval <= 0:
        parser.error("--plans, --critical-path-seconds and --poll-interval must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=shutil.get_terminal_size((180, 24)).columns)  # a wide table, also when piped
    cores = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="drill-bench-") as tmp,
        contextlib.ExitStack() as stack,
        BackgroundServer(create_app("demo", username=USERNAME, password=PASSWORD)) as server,
        httpx.Client(base_url=server.url, timeout=60) as sim,
    ):
        prefect = {
            database: stack.enter_context(PrefectServer(Path(tmp) / f"prefect-{database}", database))
            for runner, database in PREFECT_RUNNERS.items()
            if runner in args.runners
        }
        for plans in args.plans:
            bench = generate(
                plans, args.seed, critical_path_seconds=args.critical_path_seconds, interval=args.poll_interval
            )
            rows += bench_one_size(
                sim, server.url, bench, args.runners, Path(tmp), args.sequential_limit, console, prefect
            )
    console.print(table(rows, cores, args.poll_interval))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(rows, args.plot, cores)
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
