"""The pictures of drills over time and of the evidence pack, rendered by headless Chromium (shown in docs/reports.md).

* ``docs/history.png``: ``vaodrill history --html`` over 14 monthly runs of a six-plan drill (generated here, with
  an RTO regression, an overdue plan and a failure streak), judged by ``history: {max_age: 90d,
  rto_regression: 25%}``;
* ``docs/evidence-pack.png``: the evidence pack of ``deployments/drills/with-legacy-erp.yaml`` (the demo plus a
  disabled plan, so it has deficiencies) run by the engine against the simulator at the demo's speed, after two
  earlier runs so that its history column has something to show.

    python benchmarks/history_pictures.py [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from vaodrill.engine.drill import Drill
from vaodrill.report.model import DrillReport, PlanResult, report_directory, report_to_json
from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer
from vaodrill.spec.loader import load_spec
from vaodrill.vao.connection import ConnectionSettings

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
VAODRILL = str(Path(sys.executable).parent / "vaodrill")
#: plan -> (target minutes, usual RTO minutes)
PLANS = {
    "Core Network": (15, 9),
    "Active Directory": (30, 14),
    "SQL Tier": (60, 38),
    "App Tier": (45, 21),
    "Web Tier": (30, 11),
    "Reporting": (90, 40),
}
SPEC = """name: app-stack-monthly
history: {max_age: 90d, rto_regression: 25%}
plans: [Core Network, Active Directory, SQL Tier, App Tier, Web Tier, Reporting]
"""


def _result(name: str, month: int, rng: random.Random) -> PlanResult:
    target, usual = PLANS[name]
    failed = (name == "Reporting" and month >= 10) or (name == "App Tier" and month == 6)
    minutes = usual * rng.uniform(0.9, 1.1) * (1.45 if name == "SQL Tier" and month == 13 else 1.0)
    return PlanResult(
        plan=name,
        status="failed" if failed else "passed",
        undo="verified",
        reason="halted at step 4 of 9 (VM RPT-02: no network)" if failed else None,
        rto_seconds=None if failed else round(minutes * 60, 1),
        rto_target_seconds=target * 60.0,
        rto_met=None if failed else minutes <= target,
    )


def history_sample(root: Path) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    for month in range(14):
        start = now - timedelta(days=30 * (13 - month) + 6)
        plans = [_result(name, month, rng) for name in PLANS]
        report = DrillReport(
            drill="app-stack-monthly",
            run_id=f"m{month:02d}-sample",
            mode="drill",
            verdict="passed" if all(p.status == "passed" for p in plans) else "failed",
            started_at=start,
            finished_at=start + timedelta(hours=2),
            plans=plans,
        )
        folder = report_directory(report, root)
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(report_to_json(report))


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def demo_pack(root: Path) -> Path:
    spec = load_spec(ROOT / "deployments" / "drills" / "with-legacy-erp.yaml")
    with BackgroundServer(create_app("demo", time_scale=120)) as server:
        settings = ConnectionSettings(url=server.url, username="demo", password=SecretStr("demo"), simulated=True)
        for run in ("earlier-1", "earlier-2", "the-run"):
            asyncio.run(Drill(spec, settings, run_id=run, report_dir=root).run())
    return next(root.glob("demo-with-legacy-erp/*-the-run/evidence.html"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="history-pictures-") as tmp:
        work = Path(tmp)
        history_sample(work / "reports")
        (work / "app-stack-monthly.yaml").write_text(SPEC)
        page = work / "history.html"
        subprocess.run(
            [
                VAODRILL,
                "history",
                "--report-dir",
                str(work / "reports"),
                "--spec",
                str(work / "app-stack-monthly.yaml"),
                "--html",
                str(page),
            ],
            check=True,
            env={**os.environ, "VAODRILL_CACHE_DIR": str(work / "cache")},
            capture_output=True,
        )
        screenshot(page, args.out / "history.png", 1860, 560)
        screenshot(demo_pack(work / "demo"), args.out / "evidence-pack.png", 1200, 3000)
    print(f"written: {args.out / 'history.png'}, {args.out / 'evidence-pack.png'}")


if __name__ == "__main__":
    main()
