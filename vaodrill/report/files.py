"""One run's report files, written and sealed: report.md, junit.xml, timeline.svg, evidence.html, report.json.

Here, not in :mod:`vaodrill.report.model`, because it draws on every rendering (the timeline and the evidence pack
read the model) and anchors the files in the run's journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaodrill.journal import Journal
from vaodrill.report.evidence import render_evidence
from vaodrill.report.junit import render_junit
from vaodrill.report.markdown import render_markdown
from vaodrill.report.model import DrillReport, report_directory, report_to_json
from vaodrill.report.timeline import render_svg

__all__ = ["ReportFiles", "file_sha256", "write_reports"]

log = logging.getLogger("vaodrill.report")


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`write_reports` put one run's report."""

    directory: Path
    json: Path
    markdown: Path
    junit: Path
    #: None when the picture could not be drawn: a drawing bug must never cost the report itself.
    timeline: Path | None
    #: The evidence pack (vaodrill.report.evidence); None when it could not be written, for the same reason.
    evidence: Path | None = None


def _atomic_write(path: Path, text: str) -> None:
    """Write through a temp file in the same directory, fsync, then rename: readers see all or nothing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # errors="replace": a lone surrogate (a server's JSON may carry "\ud800") must not cost the report.
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    # Makes the renames durable; not supported everywhere (e.g. Windows), where it is skipped.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def write_reports(report: DrillReport, directory: Path, *, journal: Journal | None = None) -> ReportFiles:
    """Write report.md, junit.xml, timeline.svg, evidence.html and report.json for one run; safe to call again.

    Tamper evidence: report.json's ``integrity`` holds the SHA-256 of the other report files and the run's
    journal head (line count, last line's hash); the evidence pack shows the same and report.json's own hash;
    the journal then gets a ``reports`` line with the hashes of report.json and the pack, chaining them in.
    report.json is written last: it is the record of truth, so its presence means the set is complete.
    """
    target = report_directory(report, directory)
    target.mkdir(parents=True, exist_ok=True)
    _atomic_write(target / "report.md", render_markdown(report))
    _atomic_write(target / "junit.xml", render_junit(report))
    timeline: Path | None = target / "timeline.svg"
    svg: str | None
    try:
        svg = render_svg(report)
    except Exception:
        log.exception("the drill timeline could not be drawn; the other reports are written")
        timeline, svg = None, None
        with contextlib.suppress(FileNotFoundError):
            (target / "timeline.svg").unlink()  # a picture of an earlier write of this run would mislead
    else:
        _atomic_write(target / "timeline.svg", svg)
    hashes = {p.name: file_sha256(p) for p in (target / "report.md", target / "junit.xml", timeline) if p}
    head = journal.head() if journal is not None else None
    integrity: dict[str, Any] = {"algorithm": "sha256", "files": hashes, "journal": None}
    if head is not None:
        integrity["journal"] = {
            "path": os.path.relpath(head.path, target),
            "lines": head.lines,
            "last_hash": head.last_hash,
        }
    text = report_to_json(report, integrity)
    evidence = _write_evidence(
        report, target, directory, {**hashes, "report.json": _text_sha256(text)}, integrity["journal"], journal, svg
    )
    files = ReportFiles(
        directory=target,
        json=target / "report.json",
        markdown=target / "report.md",
        junit=target / "junit.xml",
        timeline=timeline,
        evidence=evidence,
    )
    _atomic_write(files.json, text)
    _fsync_dir(target)
    if journal is not None:
        sealed = {
            name: file_sha256(target / name) for name in ("report.json", "evidence.html") if (target / name).is_file()
        }
        journal.append("reports", directory=f"{target.parent.name}/{target.name}", files=sealed)
    return files


def _write_evidence(
    report: DrillReport,
    target: Path,
    root: Path,
    hashes: dict[str, str],
    head: Mapping[str, Any] | None,
    journal: Journal | None,
    svg: str | None,
) -> Path | None:
    """The evidence pack; a failure is logged and never costs the report files."""
    path = target / "evidence.html"
    try:
        page = render_evidence(
            report,
            root=root,
            hashes=hashes,
            journal_head=head,
            journal_path=journal.path if journal is not None else None,
            timeline_svg=svg,
        )
    except Exception:
        log.exception("the evidence pack could not be written; the other reports are")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    _atomic_write(path, page)
    return path
