"""Tamper evidence: the journal's hash chain, the report files' hashes and ``vaodrill verify`` as a user runs it.

One real drill (the engine against the simulator over loopback) writes a run; each test verifies a copy of it,
untouched or with one character changed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.test_engine import write_spec
from vaodrill.engine.drill import Drill
from vaodrill.journal import GENESIS, Journal, JournalState, line_hash, read_chain
from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer
from vaodrill.spec.loader import load_spec
from vaodrill.vao.connection import ConnectionSettings

VAODRILL = str(Path(sys.executable).parent / "vaodrill")


@pytest.fixture(scope="module")
def written_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The report root of one passed demo-DAG drill: <root>/test-drill/<run>/ and <root>/journal/run-1.jsonl."""
    tmp = tmp_path_factory.mktemp("run")
    with BackgroundServer(create_app("demo", time_scale=600)) as server:
        settings = ConnectionSettings(url=server.url, username="demo", password=SecretStr("demo"), simulated=True)
        engine = Drill(load_spec(write_spec(tmp)), settings, run_id="run-1", report_dir=tmp / "reports")
        report = asyncio.run(engine.run())
    assert report.verdict == "passed", report.reason
    yield tmp / "reports"


@pytest.fixture
def run(written_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A fresh copy: (the run's report folder, its journal)."""
    root = tmp_path / "reports"
    shutil.copytree(written_run, root)
    return next(root.glob("test-drill/*/")), root / "journal" / "run-1.jsonl"


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VAODRILL, "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_an_untouched_run_verifies(run: tuple[Path, Path]) -> None:
    folder, journal = run
    result = verify(str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout and "✗" not in result.stdout
    for name in ("report.json", "report.md", "junit.xml", "timeline.svg", "evidence.html"):
        assert f"✓ {name}: matches" in result.stdout
    lines = journal.read_bytes().splitlines()
    anchored = json.loads((folder / "report.json").read_text())["integrity"]["journal"]
    assert anchored["last_hash"] == line_hash(lines[anchored["lines"] - 1])
    assert [json.loads(line)["type"] for line in lines[anchored["lines"] :]] == ["reports", "close"]


def test_one_changed_character_in_a_journal_line_is_named(run: tuple[Path, Path]) -> None:
    folder, journal = run
    lines = journal.read_bytes().split(b"\n")
    target = 7  # a plan transition in the middle of the run
    assert b'"type": "plan"' in lines[target - 1]
    lines[target - 1] = lines[target - 1].replace(b'"phase": "', b'"phase": "X', 1)
    journal.write_bytes(b"\n".join(lines))
    result = verify(str(folder))
    assert result.returncode == 1, result.stdout
    assert f"line {target} was changed" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_changed_hash_field_names_its_own_line(run: tuple[Path, Path]) -> None:
    folder, journal = run
    lines = journal.read_bytes().split(b"\n")
    record = json.loads(lines[4])
    changed = ("0" if record["prev"][0] != "0" else "1") + record["prev"][1:]  # one character, always different
    lines[4] = lines[4].replace(record["prev"].encode(), changed.encode())
    journal.write_bytes(b"\n".join(lines))
    assert "line 5 was changed" in verify(str(folder)).stderr


def test_an_edited_report_json_is_named(run: tuple[Path, Path]) -> None:
    folder, _ = run
    path = folder / "report.json"
    path.write_text(path.read_text().replace('"verdict": "passed"', '"verdict": "failed"', 1))
    result = verify(str(folder))
    assert result.returncode == 1
    assert "✗ report.json: CHANGED since evidence.html was written" in result.stdout
    assert "NOT VERIFIED: report.json" in result.stderr


def test_a_cut_journal_is_named(run: tuple[Path, Path]) -> None:
    folder, journal = run
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:10]))
    result = verify(str(folder))
    assert result.returncode == 1 and "is NOT the line report.json anchored" in result.stderr


def test_bad_input_is_one_line_and_exit_2(run: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = run
    for args in ([str(tmp_path / "nowhere")], [str(folder.parent.parent)]):
        result = verify(*args)
        assert result.returncode == 2, result.stdout
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:"), result.stderr
    (folder / "report.json").write_text('{"torn": ')
    result = verify(str(folder))
    assert result.returncode == 1 and "report.json: not JSON" in result.stderr and "Traceback" not in result.stderr


def test_a_moved_journal_is_given_with_journal_option(run: tuple[Path, Path], tmp_path: Path) -> None:
    folder, journal = run
    moved = tmp_path / "elsewhere.jsonl"
    journal.rename(moved)
    assert verify(str(folder)).returncode == 1
    assert verify(str(folder), "--journal", str(moved)).returncode == 0


# -- the chain itself --------------------------------------------------------------------------------------


def test_two_writers_never_fork_the_chain(tmp_path: Path) -> None:
    first, second = Journal(tmp_path, "r"), Journal(tmp_path, "r")
    for i in range(20):
        (first if i % 3 else second).append("plan", plan=f"p{i}")
    chain = read_chain(first.path)
    assert chain.broken is None and chain.starts == 1 and len(chain.hashes) == 20
    assert json.loads(first.path.read_bytes().splitlines()[0])["prev"] == GENESIS


def test_an_old_journal_keeps_working_and_its_chain_starts_later(tmp_path: Path) -> None:
    """A journal of an older vaodrill (no ``prev``), resumed or recovered by this one."""
    path = tmp_path / "old.jsonl"
    plans = [{"key": "A", "id": "1", "name": "A"}]
    old = [
        {"type": "open", "run_id": "old", "drill": "d", "mode": "drill", "plans": plans},
        {"type": "intent", "run_id": "old", "plan": "A", "op": "run"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert read_chain(path).starts is None
    journal = Journal(tmp_path, "old")
    journal.append("recover")
    state = JournalState.parse(path)
    assert state.may_be_failed_over() == ["A"] and state.is_open
    chain = read_chain(path)
    assert chain.starts == 3 and chain.broken is None
    path.write_text(path.read_text().replace('"op": "run"', '"op": "undo"'))  # line 2, just before the chain
    assert read_chain(path).broken == "line 2 was changed (line 3 holds a different hash of it)"


def test_a_line_without_hash_inside_the_chain_is_named(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "r")
    journal.append("open")
    with journal.path.open("a") as f:
        f.write(json.dumps({"type": "plan"}) + "\n")
    journal.append("close")
    assert read_chain(journal.path).broken == "line 2 carries no hash, though the chain started at line 1"
