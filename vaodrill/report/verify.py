"""``vaodrill verify RUN_DIR``: recompute a run's hashes and say whether anything changed since it was written.

Checks, in order: the files report.json lists, the files the evidence pack lists (report.json among them), the
journal's hash chain, that the journal still holds the line report.json anchored (its count and hash), and the
hashes of report.json and the pack that the journal's ``reports`` line holds. The first that does not match is
named. Tamper evidence, not a signature: whoever can rewrite every file can recompute every hash.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaodrill.journal import JournalError, read_chain
from vaodrill.report.evidence import evidence_hashes
from vaodrill.report.files import file_sha256

__all__ = ["Verification", "VerifyError", "verify_run"]


class VerifyError(ValueError):
    """Not a run directory at all (bad input): one line, exit 2."""


@dataclass
class Verification:
    """One line per check (``ok``, text); ``notes`` for what holds but is not covered."""

    checks: list[tuple[bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((ok, text))
        return ok

    @property
    def first_problem(self) -> str | None:
        return next((text for ok, text in self.checks if not ok), None)


def _files(run_dir: Path, listed: Any, source: str, result: Verification) -> None:
    if not isinstance(listed, dict) or not listed:
        result.check(False, f"{source} lists no file hashes")
        return
    for name, digest in sorted(listed.items()):
        path = run_dir / str(name)
        if Path(str(name)).name != name:
            result.check(False, f"{source} names {name!r}, not a file of this folder")
        elif not path.is_file():
            result.check(False, f"{name}: missing (its hash is in {source})")
        else:
            same = file_sha256(path) == digest
            result.check(same, f"{name}: " + (f"matches {source}" if same else f"CHANGED since {source} was written"))


def _load_report(run_dir: Path, result: Verification) -> dict[str, Any] | None:
    try:
        raw = json.loads((run_dir / "report.json").read_bytes())
    except ValueError:
        result.check(False, "report.json: not JSON any more (changed or torn)")
        return None
    if not isinstance(raw, dict):
        result.check(False, "report.json: not a drill report")
        return None
    return raw


def _journal(run_dir: Path, report: dict[str, Any], given: Path | None, result: Verification) -> None:
    integrity = report.get("integrity") or {}
    head = integrity.get("journal")
    if not isinstance(head, dict) or not isinstance(head.get("path"), str):
        result.check(False, "report.json anchors no journal (written without one)")
        return
    path = given or Path(os.path.normpath(run_dir / head["path"]))
    try:
        chain = read_chain(path)
    except JournalError as exc:
        result.check(False, f"journal {path}: {exc} (give it with --journal)")
        return
    if chain.starts is None:
        result.check(False, f"journal {path}: no hash chain (written by an older vaodrill)")
        return
    if chain.starts > 2:
        result.notes.append(
            f"journal lines 1-{chain.starts - 2} were written by an older vaodrill, before the "
            "chain started: not covered"
        )
    if chain.broken:
        result.check(False, f"journal {path}: {chain.broken}")
        return
    result.check(True, f"journal {path}: {len(chain.hashes)} lines, hash chain intact from line {chain.starts}")
    lines, last = head.get("lines"), head.get("last_hash")
    anchored = isinstance(lines, int) and 0 < lines <= len(chain.hashes) and chain.hashes[lines - 1] == last
    if not isinstance(lines, int) or not result.check(
        anchored,
        f"journal line {lines}: "
        + (
            "is the line report.json anchored"
            if anchored
            else "is NOT the line report.json anchored (the journal was cut or rewritten)"
        ),
    ):
        return
    if len(chain.hashes) > lines:
        result.notes.append(
            f"journal lines {lines + 1}-{len(chain.hashes)} follow the report: chained, but only "
            "the chain itself vouches for the last one"
        )
    _sealed(run_dir, path, result)


def _sealed(run_dir: Path, journal: Path, result: Verification) -> None:
    """The journal's last ``reports`` line for this folder holds report.json's and the pack's hashes."""
    folder = f"{run_dir.parent.name}/{run_dir.name}"
    sealed: Any = None
    for line in journal.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("type") == "reports" and record.get("directory") == folder:
            sealed = record.get("files")
    if sealed is None:
        result.check(False, f"the journal holds no hashes of {folder}'s report.json (a report written later?)")
        return
    _files(run_dir, sealed, "the journal", result)


def verify_run(run_dir: Path, journal: Path | None = None) -> Verification:
    """Every check on one run's folder; :class:`VerifyError` when it is not a run's folder at all."""
    if not run_dir.is_dir():
        raise VerifyError(f"{run_dir}: not a directory (give a run's report folder, e.g. reports/<drill>/<run>)")
    if not (run_dir / "report.json").is_file():
        raise VerifyError(f"{run_dir}: no report.json here (give a run's report folder, not the report root)")
    result = Verification()
    report = _load_report(run_dir, result)
    if report is None:
        return result
    integrity = report.get("integrity")
    if not isinstance(integrity, dict):
        result.check(False, "report.json holds no hashes (written by an older vaodrill): nothing to verify")
        return result
    _files(run_dir, integrity.get("files"), "report.json", result)
    pack = run_dir / "evidence.html"
    if pack.is_file():
        _files(run_dir, evidence_hashes(pack.read_text("utf-8", "replace")), "evidence.html", result)
    else:
        result.check(False, "evidence.html: missing")
    _journal(run_dir, report, journal, result)
    return result
