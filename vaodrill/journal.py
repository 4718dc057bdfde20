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

Tamper evidence: every line carries ``prev``, the SHA-256 of the line before it (of :data:`GENESIS` for the first
line), so changing, removing or inserting a line breaks the chain at that place (:func:`read_chain`). A line is
hashed as the exact bytes on disk, without its newline. Journals of an older vaodrill have no ``prev``: a resumed
or recovered one gets a chain from the first line this version appends. This is evidence, not a signature:
whoever can rewrite the whole file can rebuild the chain.
"""

from __future__ import annotations

import asyncio
import hashlib
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
#: The ``prev`` of a journal's first line: there is no line before it.
GENESIS = "0" * 64
#: Held from reading the last line's hash to writing the next line (appends take microseconds).
_APPENDING = threading.Lock()


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
        self._tail: tuple[int, str] | None = None  # (file size, hash of its last line) after our last append

    def exists(self) -> bool:
        return self.path.is_file()

    def append(self, kind: str, **fields: Any) -> None:
        """One line, written at once, carrying the hash of the line before it.

        One lock per process from reading that hash to writing the line, so two writers in this process (two
        threads, two objects on one file) never chain two lines to the same predecessor. Two processes writing
        one run's journal at once is not a state vaodrill allows; verify would show the fork.
        """
        if not self._written:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with _APPENDING:
            self._append(kind, fields)
        self._written += 1

    def _append(self, kind: str, fields: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            record = {
                "at": datetime.now(UTC).isoformat(),
                "type": kind,
                "run_id": self.run_id,
                **fields,
                "prev": self._prev_hash(fd, size),
            }
            data = json.dumps(record, default=str, ensure_ascii=False).encode("utf-8")
            os.write(fd, data + b"\n")
            self._tail = (size + len(data) + 1, line_hash(data))
        finally:
            os.close(fd)

    def _prev_hash(self, fd: int, size: int) -> str:
        if size == 0:
            return GENESIS
        if self._tail is not None and self._tail[0] == size:
            return self._tail[1]  # nobody appended since our last line
        return line_hash(_last_line(fd, size))

    def head(self) -> JournalHead | None:
        """Where the journal stands now (its line count and last line's hash), for a report to anchor; None
        without a journal file."""
        try:
            data = _read_bounded(self.path)
        except JournalError:
            return None
        lines = _split_lines(data)
        return JournalHead(self.path, len(lines), line_hash(lines[-1]) if lines else GENESIS)

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


def line_hash(line: bytes) -> str:
    """SHA-256 of one journal line as stored (UTF-8, without its newline)."""
    return hashlib.sha256(line).hexdigest()


def _last_line(fd: int, size: int) -> bytes:
    """The file's last line (without its newline), read backwards from the end in 64 KiB steps."""
    tail, pos = b"", size
    while True:
        step = min(65536, pos)
        pos -= step
        tail = os.pread(fd, step, pos) + tail
        body = tail[:-1] if tail.endswith(b"\n") else tail
        cut = body.rfind(b"\n")
        if cut >= 0 or pos == 0:
            return body[cut + 1 :]


def _read_bounded(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_JOURNAL_BYTES:
            raise JournalError(f"{path}: {size} bytes is too big for a drill journal")
        return path.read_bytes()
    except OSError as exc:
        raise JournalError(f"{path}: cannot read the journal ({exc.strerror or exc})") from None


def _split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    return lines[:-1] if lines and not lines[-1] else lines


@dataclass(frozen=True)
class JournalHead:
    """A journal's state at one moment: what a report records so that later lines cannot rewrite earlier ones."""

    path: Path
    lines: int
    last_hash: str


@dataclass
class Chain:
    """A journal's hash chain as found on disk: every line's hash, where the chain starts and its first break."""

    path: Path
    hashes: list[str]
    #: First line carrying ``prev`` (1-based); None: no chain at all (a journal of an older vaodrill).
    starts: int | None = None
    #: The first place that does not match, in words naming the line; None: the chain holds.
    broken: str | None = None


def read_chain(path: Path) -> Chain:
    """Recompute a journal's hash chain. A single changed line is named exactly: its own hash no longer matches
    the next line's ``prev`` (and, if its ``prev`` was the changed part, it no longer matches its predecessor)."""
    lines = _split_lines(_read_bounded(path))
    chain = Chain(path, [line_hash(line) for line in lines])
    links: list[bool | None] = []  # links[i]: line i+2's prev matches line i+1 (None: line i+2 has no prev)
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            prev = record.get("prev") if isinstance(record, dict) else None
        except ValueError:
            prev = None
            if chain.starts is not None or number < len(lines):
                chain.broken = f"line {number} is not a journal line (torn or edited)"
                return chain
        if prev is None:
            if chain.starts is not None:
                chain.broken = f"line {number} carries no hash, though the chain started at line {chain.starts}"
                return chain
            continue
        chain.starts = chain.starts or number
        expected = GENESIS if number == 1 else chain.hashes[number - 2]
        if number == chain.starts and number > 1 and prev != expected:
            chain.broken = f"line {number - 1} was changed (line {number} holds a different hash of it)"
            return chain
        links.append(prev == expected)
    chain.broken = _first_break(links, chain.starts or 0, len(lines))
    return chain


def _first_break(links: list[bool | None], starts: int, total: int) -> str | None:
    """The first changed line from the link results (link k: line starts+k holds line starts+k-1's hash)."""
    for k, ok in enumerate(links):
        if ok:
            continue
        line = starts + k  # this line's prev does not match its predecessor
        if line == 1:
            return "line 1 was changed (it does not start a chain: lines before it removed?)"
        if k + 1 < len(links) and not links[k + 1]:
            return f"line {line} was changed (its hash of line {line - 1} and line {line + 1}'s hash of it differ)"
        if line == total:
            return (
                f"line {line - 1} or line {line} was changed (the last line holds a different hash of line {line - 1})"
            )
        return f"line {line - 1} was changed, or lines removed after it (line {line} holds a different hash of it)"
    return None


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


__all__ = [
    "GENESIS",
    "JOURNAL_VERSION",
    "Chain",
    "Journal",
    "JournalError",
    "JournalHead",
    "JournalState",
    "check_run_id",
    "default_journal_dir",
    "journals",
    "line_hash",
    "open_journals",
    "read_chain",
]
