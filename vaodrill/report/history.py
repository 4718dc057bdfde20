"""Drills over time: every plan's runs, passes, last good drill and RTO trend, read from the report files.

The report files (``<report dir>/<drill>/<stamp>-<run>/report.json``) are the truth. Parsing 10,000 of them (50
plans each, 370 MB) takes about 4 s, so a SQLite index of what history needs (a row per plan per run) is
kept in the user's cache, never on the shared report storage: each call compares every file's size
and mtime with the index and reads again only the new or changed ones. Deleting the index only costs one full
read. A file that is not a drill report of this schema (an older one, torn, foreign) is skipped with a warning.

Policy (:class:`vaodrill.spec.model.HistoryPolicy`): a plan is **overdue** when its last passed drill is older than
``max_age`` (or it never passed), **regressed** when its last passed RTO exceeds the median of its five passed
drills before it by more than ``rto_regression`` percent (with at least :data:`MIN_BASELINE` of them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import statistics
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vaodrill.report.model import SCHEMA_VERSION
from vaodrill.report.text import format_duration
from vaodrill.spec.policies import HistoryPolicy

__all__ = ["MIN_BASELINE", "TREND", "History", "PlanHistory", "Skipped", "load_history"]

#: Runs shown in a plan's trend (terminal sparkline, HTML picture, JSON).
TREND = 20
#: Passed drills before the last one that a regression is measured against (their median).
BASELINE = 5
#: Fewer passed drills than this before the last one: too little to call anything a regression.
MIN_BASELINE = 3
#: A report bigger than this is not a drill report (a 1,000-plan report is about 1 MB).
MAX_REPORT_BYTES = 32 * 1024 * 1024
_INDEX_VERSION = 1
_SCHEMA = f"""
PRAGMA user_version = {_INDEX_VERSION};
CREATE TABLE IF NOT EXISTS reports (id INTEGER PRIMARY KEY, path TEXT UNIQUE, size INTEGER, mtime_ns INTEGER,
                                    skipped TEXT);
CREATE TABLE IF NOT EXISTS runs (report INTEGER, drill TEXT, plan TEXT, started TEXT, run_id TEXT, status TEXT,
                                 rto REAL, target REAL, PRIMARY KEY (drill, plan, started, run_id, report))
                                 WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_by_report ON runs (report);
"""


class ReportSkipped(ValueError):
    """A file under the report directory that is not a readable drill report of this schema."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class PlanHistory:
    """One plan of one drill over time: counts over every run, the last :data:`TREND` runs oldest first."""

    drill: str
    plan: str
    runs: int = 0
    passes: int = 0
    last_run_at: datetime | None = None
    last_status: str | None = None
    last_good_at: datetime | None = None
    last_good_rto: float | None = None
    rto_target: float | None = None
    failure_streak: int = 0  # runs since the last pass (all of them if it never passed)
    trend: list[tuple[datetime, str, float | None, str]] = field(default_factory=list)  # (at, status, rto, run id)
    good_rtos: list[float] = field(default_factory=list)  # the last BASELINE + 1 passed RTOs, oldest first
    overdue: str | None = None  # why, when the policy calls it overdue
    regressed: str | None = None  # why, when the policy calls it regressed
    baseline_rto: float | None = None  # median of the passed drills before the last one

    @property
    def margin(self) -> float | None:
        """Target minus the last passed RTO: negative when the target was missed."""
        if self.rto_target is None or self.last_good_rto is None:
            return None
        return self.rto_target - self.last_good_rto

    def days_since_good(self, now: datetime) -> float | None:
        return None if self.last_good_at is None else (now - self.last_good_at).total_seconds() / 86400

    def rto_stats(self) -> tuple[float, float, float] | None:
        """Min, median and max of the achieved RTOs in the trend window."""
        values = [rto for _, _, rto, _ in self.trend if rto is not None]
        return (min(values), statistics.median(values), max(values)) if values else None

    def judge(self, policy: HistoryPolicy, now: datetime) -> None:
        """Overdue / regressed under ``policy``, with the figures in words."""
        max_age = policy.max_age.total_seconds() / 86400
        if self.last_good_at is None:
            self.overdue = (
                f"never passed in {self.runs} run{'s' if self.runs != 1 else ''}" if self.runs else "never drilled"
            )
        elif (days := self.days_since_good(now) or 0.0) > max_age:
            self.overdue = f"last passed {days:.0f} days ago (max {max_age:g})"
        earlier = list(self.good_rtos)[:-1]
        if self.last_good_rto is None or len(earlier) < MIN_BASELINE:
            return
        self.baseline_rto = statistics.median(earlier)
        rise = (self.last_good_rto / self.baseline_rto - 1) * 100 if self.baseline_rto > 0 else 0.0
        if policy.rto_regression is not None and rise > policy.rto_regression:
            self.regressed = (
                f"RTO {_secs(self.last_good_rto)} is {rise:.0f}% over the median "
                f"{_secs(self.baseline_rto)} of its {len(earlier)} passed drills before "
                f"(max {policy.rto_regression:g}%)"
            )


def _secs(value: float) -> str:
    """``7m 30s``; ``0.22s`` under 10 s (a simulated drill's RTOs are under a second)."""
    return f"{value:.2f}s" if value < 10 else format_duration(value)


@dataclass
class History:
    """Per drill and plan, in name order; the files skipped, each with why."""

    plans: list[PlanHistory]
    skipped: list[Skipped]
    now: datetime

    def flagged(self) -> list[PlanHistory]:
        return [p for p in self.plans if p.overdue or p.regressed]


# --------------------------------------------------------------------------------------------- reading


def _time(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ReportSkipped(f"{what} is not a date")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ReportSkipped(f"{what} is not a date: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ReportSkipped(f"{what} has no UTC offset")
    return parsed.astimezone(UTC).isoformat()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def report_rows(data: bytes) -> list[tuple[str, str, str, str, str, float | None, float | None]]:
    """(drill, plan, started, run_id, status, rto, target) per plan of one report.json; :class:`ReportSkipped`
    naming the problem for anything else."""
    try:
        raw = json.loads(data)
    except UnicodeDecodeError:
        raise ReportSkipped("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ReportSkipped(f"not JSON, torn or foreign ({exc})") from None
    if not isinstance(raw, dict) or "drill" not in raw or "plans" not in raw:
        raise ReportSkipped("not a vaodrill drill report")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ReportSkipped(f"schema_version {raw.get('schema_version')!r}, this vaodrill reads {SCHEMA_VERSION}")
    drill, run_id, plans = raw.get("drill"), raw.get("run_id"), raw.get("plans")
    if not isinstance(drill, str) or not isinstance(run_id, str) or not isinstance(plans, list):
        raise ReportSkipped("drill, run_id or plans of the wrong type")
    started = _time(raw.get("started_at"), "started_at")
    rows = []
    for p in plans:
        if not isinstance(p, dict) or not isinstance(p.get("plan"), str) or not isinstance(p.get("status"), str):
            raise ReportSkipped("a plan without a name or status")
        rows.append(
            (
                drill,
                p["plan"],
                started,
                run_id,
                p["status"],
                _number(p.get("rto_seconds")),
                _number(p.get("rto_target_seconds")),
            )
        )
    return rows


def report_files(report_dir: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every ``<drill>/<run>/report.json`` under the report directory, with its stat."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for drill in os.scandir(report_dir):
            if not drill.is_dir(follow_symlinks=False) or drill.name == "journal":
                continue
            for run in os.scandir(drill.path):
                path = os.path.join(run.path, "report.json")
                with contextlib.suppress(OSError):
                    if run.is_dir(follow_symlinks=False):
                        yield path, os.stat(path)


def _read(path: str, size: int) -> list[tuple[str, str, str, str, str, float | None, float | None]]:
    if size > MAX_REPORT_BYTES:
        raise ReportSkipped(f"{size} bytes is too big for a drill report")
    try:
        with open(path, "rb") as f:
            return report_rows(f.read(MAX_REPORT_BYTES + 1))
    except OSError as exc:
        raise ReportSkipped(f"cannot read it ({exc.strerror or exc})") from None


# ----------------------------------------------------------------------------------------------- index


def index_path(report_dir: Path) -> Path:
    """``$VAODRILL_CACHE_DIR``, else ``$XDG_CACHE_HOME/vaodrill``, else ``~/.cache/vaodrill``: one file per
    report directory (local to this host even when the reports are on shared storage)."""
    base = os.environ.get("VAODRILL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vaodrill"
    )
    digest = hashlib.sha256(str(report_dir.resolve()).encode("utf-8", "replace")).hexdigest()[:16]
    return Path(base) / f"history-{digest}.sqlite"


def _open_index(report_dir: Path) -> sqlite3.Connection:
    """The index, or an in-memory one when the cache cannot be written (same answers, a full read each time)."""
    path = index_path(report_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path)
        if db.execute("PRAGMA user_version").fetchone()[0] not in (0, _INDEX_VERSION):
            db.close()
            path.unlink()
            db = sqlite3.connect(path)
        db.executescript(_SCHEMA)
        return db
    except (OSError, sqlite3.Error):
        db = sqlite3.connect(":memory:")
        db.executescript(_SCHEMA)
        return db


def refresh(db: sqlite3.Connection, report_dir: Path) -> list[Skipped]:
    """Bring the index in line with the files: drop the gone, read the new and the changed."""
    known = {
        path: (rid, size, mtime)
        for rid, path, size, mtime in db.execute("SELECT id, path, size, mtime_ns FROM reports")
    }
    seen: set[str] = set()
    with db:
        for path, st in report_files(report_dir):
            seen.add(path)
            old = known.get(path)
            if old is not None and old[1:] == (st.st_size, st.st_mtime_ns):
                continue
            if old is not None:
                _forget(db, old[0])
            try:
                rows, skipped = _read(path, st.st_size), None
            except ReportSkipped as exc:
                rows, skipped = [], str(exc)
            rid = db.execute(
                "INSERT INTO reports (path, size, mtime_ns, skipped) VALUES (?, ?, ?, ?)",
                (path, st.st_size, st.st_mtime_ns, skipped),
            ).lastrowid
            db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(rid, *r) for r in rows])
        for gone in known.keys() - seen:
            _forget(db, known[gone][0])
    return [
        Skipped(p, r)
        for p, r in db.execute("SELECT path, skipped FROM reports WHERE skipped IS NOT NULL ORDER BY path")
    ]


def _forget(db: sqlite3.Connection, report: int) -> None:
    db.execute("DELETE FROM runs WHERE report = ?", (report,))
    db.execute("DELETE FROM reports WHERE id = ?", (report,))


_GROUPS = """
WITH g AS (SELECT drill, plan, COUNT(*) AS runs, SUM(status = 'passed') AS passes,
                  MAX(CASE WHEN status = 'passed' THEN started END) AS last_good
           FROM runs {where} GROUP BY drill, plan)
SELECT drill, plan, runs, passes, last_good,
       (SELECT COUNT(*) FROM runs r WHERE r.drill = g.drill AND r.plan = g.plan AND r.started >= :since
        AND r.started > COALESCE(g.last_good, '')) AS streak
FROM g ORDER BY drill, plan
"""
_TREND = (
    "SELECT started, status, rto, run_id, target FROM runs WHERE drill = ? AND plan = ? AND started >= ? "
    "ORDER BY started DESC, run_id DESC LIMIT ?"
)
_GOOD = (
    "SELECT rto FROM runs WHERE drill = ? AND plan = ? AND started >= ? AND status = 'passed' "
    "AND rto IS NOT NULL ORDER BY started DESC, run_id DESC LIMIT ?"
)


def _groups(db: sqlite3.Connection, drills: list[str], plans: list[str], since: str) -> list[PlanHistory]:
    """Counts per drill and plan in SQL (one pass over the index), then each plan's last runs by the index."""
    where, args = ["started >= :since"], {"since": since}
    for column, values in (("drill", drills), ("plan", plans)):
        if values:
            names = [f"{column}{i}" for i in range(len(values))]
            where.append(f"{column} IN ({', '.join(':' + n for n in names)})")
            args.update(zip(names, values, strict=True))
    found = []
    for drill, plan, runs, passes, last_good, streak in db.execute(
        _GROUPS.format(where="WHERE " + " AND ".join(where)), args
    ):
        p = PlanHistory(drill, plan, runs=runs, passes=passes, failure_streak=streak)
        rows = db.execute(_TREND, (drill, plan, since, TREND)).fetchall()[::-1]
        p.trend = [(datetime.fromisoformat(at), status, rto, run_id) for at, status, rto, run_id, _ in rows]
        p.last_run_at, p.last_status = p.trend[-1][0], p.trend[-1][1]
        p.rto_target = next((target for *_, target in reversed(rows) if target is not None), None)
        p.good_rtos = [rto for _, status, rto, _ in p.trend if status == "passed" and rto is not None]
        if len(p.good_rtos) <= BASELINE and passes > len(p.good_rtos):  # older passes hold the baseline
            p.good_rtos = [rto for (rto,) in db.execute(_GOOD, (drill, plan, since, BASELINE + 1))][::-1]
        p.good_rtos = p.good_rtos[-(BASELINE + 1) :]
        if last_good is not None:
            p.last_good_at = datetime.fromisoformat(last_good)
            p.last_good_rto = p.good_rtos[-1] if p.good_rtos else None
        found.append(p)
    return found


def load_history(
    report_dir: Path,
    *,
    drills: Iterable[str] = (),
    plans: Iterable[str] = (),
    since: datetime | None = None,
    policies: Mapping[str, HistoryPolicy] | None = None,
    expected: Mapping[str, Iterable[str]] | None = None,
    now: datetime | None = None,
) -> History:
    """Every plan's history under ``report_dir``, judged by its drill's policy (the default one otherwise).

    ``expected``: the plans each drill spec names; one without any report is listed as never drilled.
    """
    now = now or datetime.now(UTC)
    policies = policies or {}
    default = HistoryPolicy()
    drills, plans = list(drills), list(plans)
    db = _open_index(report_dir)
    try:
        skipped = refresh(db, report_dir)
        found = _groups(db, drills, plans, since.astimezone(UTC).isoformat() if since else "")
    finally:
        db.close()
    have = {(p.drill, p.plan) for p in found}
    found += [
        PlanHistory(drill, plan)
        for drill, names in (expected or {}).items()
        for plan in names
        if (drill, plan) not in have and (not plans or plan in plans) and (not drills or drill in drills)
    ]
    found.sort(key=lambda p: (p.drill, p.plan))
    for p in found:
        p.judge(policies.get(p.drill, default), now)
    return History(found, skipped, now)
