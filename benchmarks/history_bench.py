"""Benchmark of drills over time and of the evidence pack, against the targets of issue 21.

* ``vaodrill history`` (and ``--check``) over ``--reports`` generated report files of ``--plans`` plans each
  (default 10,000 x 50), as a user runs it (a subprocess, ``--json`` to /dev/null): wall time and peak RSS, cold
  (no index yet: every file parsed) and warm (the index is up to date), and after one new report;
* the evidence pack of a ``--pack-plans``-plan drill (default 500) with its journal and ten earlier runs of the
  same drill: ``write_reports`` time, evidence.html size.

Targets: history and ``--check`` under 3 s and 300 MB; the pack under 5 MB, written in under 2 s.

    python benchmarks/history_bench.py [--reports 10000] [--plans 50] [--pack-plans 500] [--json out.json]

The reports are generated with a fixed seed: 100 drills, weekly runs, about 5 % of plan runs failing, RTOs drifting;
each is a schema-1 report as ``report_to_json`` writes it (checked by parsing the first one back).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vaodrill.journal import Journal
from vaodrill.report.files import write_reports
from vaodrill.report.model import DrillReport, PlanResult, load_report, report_directory, report_to_json

VAODRILL = str(Path(sys.executable).parent / "vaodrill")
DRILLS = 100
#: Runs of the generated history end about now, so the default policy (365 days) flags only the failing plans.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(weeks=101)


def _plan(name: str, pid: str, start: datetime, rng: random.Random, drift: float) -> dict[str, Any]:
    passed = rng.random() > 0.05
    rto = round(rng.uniform(120, 480) * drift, 3) if passed else None
    done = start + timedelta(seconds=rto or 900)
    return {
        "plan": name,
        "id": pid,
        "status": "passed" if passed else "failed",
        "reason": None if passed else "halted at step 3 of 7",
        "after": [],
        "restore_point": (start - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S"),
        "restore_point_rule": "ago 6h",
        "restore_point_seed": None,
        "failover_started_at": start.isoformat(),
        "failover_completed_at": done.isoformat() if passed else None,
        "failover_ended_at": done.isoformat(),
        "failover_details": "Complete, no errors, no warnings",
        "rto_seconds": rto,
        "rto_target_seconds": 600.0,
        "rto_met": None if rto is None else rto <= 600,
        "undo": "verified",
        "undo_reason": None,
        "undo_completed_at": (done + timedelta(minutes=4)).isoformat(),
    }


def generate(root: Path, reports: int, plans: int, seed: int = 21) -> None:
    """``reports`` report.json files under ``root``: drill ``d`` runs weekly, its plans ``Plan d-j``."""
    rng = random.Random(seed)
    for i in range(reports):
        d, week = i % DRILLS, i // DRILLS
        start = T0 + timedelta(weeks=week, minutes=d)
        drift = 1 + 0.002 * week
        body = [_plan(f"Plan {d}-{j}", f"{d:08x}-0000-4000-8000-{j:012x}", start, rng, drift) for j in range(plans)]
        verdict = "passed" if all(p["status"] == "passed" for p in body) else "failed"
        data: dict[str, Any] = {
            "schema_version": 1,
            "drill": f"drill-{d:03d}",
            "run_id": f"{i:08x}-bench",
            "mode": "drill",
            "verdict": verdict,
            "started_at": start.isoformat(),
            "finished_at": (start + timedelta(hours=1)).isoformat(),
            "description": None,
            "vao_server": "https://vao.example:9899",
            "flow_run_url": None,
            "reason": None if verdict == "passed" else "some plans did not pass",
            "stopped": None,
            "plans": body,
        }
        folder = root / data["drill"] / f"{start.strftime('%Y%m%dT%H%M%SZ')}-{i:08x}"
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    load_report(next(root.glob("*/*/report.json")))  # a real report, not a look-alike


def timed(*args: str, cache: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, exit code) of one vaodrill command; CPU time is what a busy
    machine does not inflate."""
    env = {**os.environ, "VAODRILL_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    with open(os.devnull, "w") as null:
        proc = subprocess.Popen([VAODRILL, *args], stdout=null, stderr=null, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - started, cpu, usage.ru_maxrss / 1024, proc.returncode


def bench_history(reports: int, plans: int, work: Path) -> dict[str, Any]:
    root, cache = work / "reports", work / "cache"
    t = time.perf_counter()
    generate(root, reports, plans)
    size = sum(p.stat().st_size for p in root.glob("*/*/report.json"))
    result: dict[str, Any] = {
        "reports": reports,
        "plans_per_report": plans,
        "generate_s": time.perf_counter() - t,
        "report_bytes": size,
    }
    base = ("history", "--report-dir", str(root))
    result["cold"] = timed(*base, "--json", cache=cache)
    result["warm"] = timed(*base, "--json", cache=cache)
    result["warm_table"] = timed(*base, cache=cache)
    result["check"] = timed(*base, "--check", cache=cache)
    generate(work / "one", 1, plans, seed=99)
    new = next((work / "one").glob("*/*"))
    new.rename(root / new.parent.name / (new.name[:16] + "-new"))
    result["after_one_new_report"] = timed(*base, "--json", cache=cache)
    result["index_bytes"] = sum(p.stat().st_size for p in cache.glob("*"))
    return result


def pack_report(plans: int, start: datetime, run_id: str, rng: random.Random) -> DrillReport:
    results = []
    for j in range(plans):
        began = start + timedelta(seconds=rng.uniform(0, 1800))
        rto = rng.uniform(60, 700)
        results.append(
            PlanResult.model_validate(
                {
                    **_plan(f"Plan {j:03d}", f"00000000-0000-4000-8000-{j:012x}", began, rng, 1.0),
                    "rto_seconds": rto,
                    "rto_met": rto <= 600,
                    "status": "passed",
                    "reason": None,
                    "failover_completed_at": began + timedelta(seconds=rto),
                    "after": [f"Plan {j - 1:03d}"] if j % 10 else [],
                }
            )
        )
    return DrillReport(
        drill="big",
        run_id=run_id,
        mode="drill",
        verdict="passed",
        started_at=start,
        finished_at=start + timedelta(hours=3),
        plans=results,
    )


def bench_pack(plans: int, work: Path) -> dict[str, Any]:
    rng = random.Random(5)
    root = work / "pack"
    for k in range(10):  # the history section reads the drill's earlier runs
        earlier = pack_report(plans, T0 + timedelta(weeks=k), f"earlier-{k}", rng)
        folder = report_directory(earlier, root)
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(report_to_json(earlier))
    report = pack_report(plans, T0 + timedelta(weeks=20), "the-run", rng)
    journal = Journal(root / "journal", "the-run")
    journal.append("open", drill="big", mode="drill", plans=[{"key": p.plan, "id": p.id} for p in report.plans])
    for p in report.plans:
        for phase in ("checking", "starting", "failing over", "failed over", "undoing", "clean"):
            journal.append("plan", plan=p.plan, phase=phase, record={"phase": phase, "target": {"name": p.plan}})
        for op in ("run", "undo"):
            journal.append("intent", plan=p.plan, op=op)
            journal.append("outcome", plan=p.plan, op=op, ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    files = write_reports(report, root, journal=journal)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert files.evidence is not None
    return {
        "plans": plans,
        "write_reports_s": seconds,
        "write_reports_cpu_s": cpu,
        "evidence_bytes": files.evidence.stat().st_size,
        "journal_lines": len(journal.path.read_bytes().splitlines()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--plans", type=int, default=50)
    parser.add_argument("--pack-plans", type=int, default=500)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="history-bench-") as tmp:
        figures: dict[str, Any] = {
            "history": bench_history(args.reports, args.plans, Path(tmp)),
            "pack": bench_pack(args.pack_plans, Path(tmp)),
            "load_average": os.getloadavg(),
        }
    h, p = figures["history"], figures["pack"]
    print(
        f"{h['reports']:,} reports x {h['plans_per_report']} plans ({h['report_bytes'] / 1e6:.0f} MB of JSON), "
        f"index {h['index_bytes'] / 1e6:.0f} MB; load average {figures['load_average'][0]:.1f}"
    )
    for key in ("cold", "warm", "warm_table", "check", "after_one_new_report"):
        seconds, cpu, rss, code = h[key]
        print(f"  history {key:<22} {seconds:6.2f} s (CPU {cpu:5.2f} s)  {rss:6.0f} MB  exit {code}")
    print(
        f"evidence pack of {p['plans']} plans: {p['evidence_bytes'] / 1e6:.2f} MB, write_reports "
        f"{p['write_reports_s']:.2f} s (CPU {p['write_reports_cpu_s']:.2f} s; journal {p['journal_lines']:,} lines)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
