"""The write-ahead journal of a drill run: what it may have done to production, on disk before it is done.

One append-only JSON-lines file per run, ``<journal dir>/<run id>.jsonl`` (default ``reports/journal``). Each
line is written at once (it survives the process, even a SIGKILL) and is on disk (fsync'd, it survives a power
loss) before the call it announces, so a drill stopped at any line can be recovered from the file alone:

- ``open``: the drill, its mode, the server URL (no credentials), the spec file and the plans;
- ``intent`` before every Run, Undo and Halt POST, ``outcome`` after it (missing if the process died);
- ``plan``: every transition of a plan record, with the whole record;
- ``close``: the run ended with nothing of it left failed over (or it was a real failover). An unclosed
  journal is what ``vaodrill recover`` looks for.

It never holds a password, a token or a client secret: records are built from plan records and settings' URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Version of the line format, written in every ``open`` record.
JOURNAL_VERSION = 1
#: A run id becomes a file name: anything else is refused rather than mangled into a path.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Bounded reads: a journal is a few KB per plan; a bigger file is not ours.
MAX_JOURNAL_BYTES = 64 * 1024 * 1024


class JournalError(ValueError):
    """A journal that cannot be written or read (bad run id, unreadable or foreign file)."""


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise JournalError(f"run id {run_id!r}: use letters, digits, '.', '_' or '-' (at most 128)")
    return run_id


def default_journal_dir(report_dir: str | Path | None) -> Path:
    """``$VAODRILL_JOURNAL_DIR``, else ``<report dir>/journal``."""
    configured = os.environ.get("VAODRILL_JOURNAL_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(report_dir or "reports") / "journal"


class Journal:
    """Appends JSON lines to one run's file; safe to reopen (a resumed run appends).

    ``append`` writes at once; ``await sync()`` puts everything appended so far on disk before a POST. Syncs
    that overlap share one fsync (a group commit), run off the event loop: a wave of a hundred Runs waits for a
    few fsyncs, not a hundred in a row on the loop.
    """

    def __init__(self, directory: Path, run_id: str) -> None:
        self.run_id = check_run_id(run_id)
        self.path = Path(directory) / f"{run_id}.jsonl"
        self._written = self._synced = 0  # lines appended by this object; of those, known to be on disk
        self._sync_lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.is_file()

    def append(self, kind: str, **fields: Any) -> None:
        record = {"at": datetime.now(UTC).isoformat(), "type": kind, "run_id": self.run_id, **fields}
        line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
        if not self._written:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
        self._written += 1

    async def sync(self) -> None:
        """Every line appended so far is on disk when this returns."""
        await asyncio.to_thread(self._sync, self._written)

    def _sync(self, wanted: int) -> None:
        with self._sync_lock:  # an fsync that started after our lines were written covers them
            if self._synced >= wanted:
                return
            upto = self._written
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._synced = upto

    def read(self) -> JournalState:
        return JournalState.parse(self.path)


@dataclass
class JournalState:
    """What a journal says: the run, each plan's last record, the POSTs announced and whether it closed."""

    path: Path
    run_id: str = ""
    opened: dict[str, Any] = field(default_factory=dict)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    closed: dict[str, Any] | None = None

    @classmethod
    def parse(cls, path: Path) -> JournalState:
        state = cls(path=path)
        try:
            size = path.stat().st_size
            if size > MAX_JOURNAL_BYTES:
                raise JournalError(f"{path}: {size} bytes is too big for a drill journal")
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise JournalError(f"{path}: cannot read the journal ({exc.strerror or exc})") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(text.splitlines()):
                    continue  # the last line was being written when the process died
                raise JournalError(f"{path}:{number}: not a journal line") from None
            if not isinstance(record, dict):
                raise JournalError(f"{path}:{number}: not a journal line")
            state._apply(record)
        if not state.opened:
            raise JournalError(f"{path}: not a vaodrill journal (no 'open' record)")
        return state

    def _apply(self, record: Mapping[str, Any]) -> None:
        kind = record.get("type")
        if kind == "open":
            self.opened = dict(record)
            self.run_id = str(record.get("run_id", ""))
        elif kind == "plan" and isinstance(record.get("record"), dict):
            self.plans[str(record.get("plan"))] = dict(record["record"])
        elif kind == "intent":
            self.intents.append(dict(record))
        elif kind == "outcome":
            self.outcomes.append(dict(record))
        elif kind == "close":
            self.closed = dict(record)
        elif kind in ("resume", "recover"):
            self.closed = None

    @property
    def is_open(self) -> bool:
        return self.closed is None

    @property
    def mode(self) -> str:
        return str(self.opened.get("mode", "drill"))

    @property
    def drill(self) -> str:
        return str(self.opened.get("drill", "?"))

    def run_sent(self, plan_key: str) -> bool:
        """A Run POST for this plan was announced: it may have reached VAO."""
        return any(i.get("plan") == plan_key and i.get("op") == "run" for i in self.intents)

    def may_be_failed_over(self) -> list[str]:
        """Plan keys this run may have failed over and not verifiably put back.

        A Run announced may have started a failover, unless the plan's record says it provably did not (refused by
        the server, or never sent) or that it is clean again.
        """
        def settled(record: dict[str, Any]) -> bool:
            phase = record.get("phase")
            return phase in ("clean", "refused") or (phase == "failed" and not record.get("run_sent"))

        return [key for key in self._plan_keys() if self.run_sent(key) and not settled(self.plans.get(key, {}))]

    def _plan_keys(self) -> list[str]:
        return [str(p.get("key")) for p in self.opened.get("plans", []) if isinstance(p, dict)]

    def plan_info(self, key: str) -> dict[str, Any]:
        for p in self.opened.get("plans", []):
            if isinstance(p, dict) and p.get("key") == key:
                return dict(p)
        return {"key": key}


def journals(directory: Path) -> Iterator[JournalState]:
    """Every readable journal in ``directory``, oldest first; unreadable files are skipped."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        try:
            yield JournalState.parse(path)
        except JournalError:
            continue


def open_journals(directory: Path) -> list[JournalState]:
    """Runs that did not close: they may have left plans failed over."""
    return [j for j in journals(directory) if j.is_open]


__all__ = ["JOURNAL_VERSION", "Journal", "JournalError", "JournalState", "check_run_id", "default_journal_dir",
           "journals", "open_journals"]
