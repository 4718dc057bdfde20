"""The history benchmark's generator and measurements on a small scale (the figures are in docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

from history_bench import bench_history, bench_pack, generate

from vaodrill.report.model import load_report


def test_generated_reports_are_real_reports(tmp_path: Path) -> None:
    generate(tmp_path, 120, 5)
    files = sorted(tmp_path.glob("*/*/report.json"))
    assert len(files) == 120 and len({f.parent.parent.name for f in files}) == 100
    report = load_report(files[0])
    assert len(report.plans) == 5 and report.plans[0].rto_target_seconds == 600.0


def test_history_and_pack_are_measured(tmp_path: Path) -> None:
    figures = bench_history(150, 4, tmp_path)
    for key in ("cold", "warm", "warm_table", "check", "after_one_new_report"):
        seconds, cpu, rss, code = figures[key]
        assert seconds > 0 and cpu > 0 and rss > 10 and code in (0, 1), (key, figures[key])
    assert figures["index_bytes"] > 0
    pack = bench_pack(20, tmp_path)
    assert pack["evidence_bytes"] > 10_000 and pack["journal_lines"] == 1 + 20 * 10 + 1
    json.dumps(figures)
