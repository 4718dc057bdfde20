"""A real server's vocabulary: every spelling of the table read as the project expects it, the rules on the
normalized record, fields no decision uses kept raw, and an administrator's added spellings.

The expectations below are written by hand from Veeam's pages (not derived from the table): a test fails if a row
of the table says something else, or if a row has no expectation here.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from vaodrill.engine.steps import DrillSession
from vaodrill.errors import VaoUsageError
from vaodrill.journal import Journal
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.models import FailoverPlan
from vaodrill.vao.rules import failover_complete, is_clean, is_failed_over_by_anyone, not_runnable_because
from vaodrill.vao.vocabulary import VOCABULARY, Condition, Kind, Vocabulary, spelling_key

IDLE, DISABLED, FAILOVER, UNDO = "idle", "disabled", "failover", "undo"
RUNNING, HALTED, OTHER = "running", "halted", "other"

#: What each spelling means, by hand: a plan shown so is ... (every table row must be here, and nothing else).
EXPECTED = {
    "Enabled": IDLE,
    "Verified": IDLE,
    "NotVerified": IDLE,
    "NEEDS VERIFIED": IDLE,
    "Verified (passed check)": IDLE,
    "Verified (passed test and check)": IDLE,
    "Ready": IDLE,
    "Disabled": DISABLED,
    "Failover": FAILOVER,
    "FailoverComplete": FAILOVER,
    "PROCESSING": RUNNING,
    "Running": RUNNING,
    "In progress": RUNNING,
    "HALTING": RUNNING,
    "Halted": HALTED,
    "UNDO FAILOVER": UNDO,
    "Undoing": UNDO,
    "Undo in progress": UNDO,
    "inUndoProgress": UNDO,
    "PERMANENT FAILOVER": OTHER,
    "PREPARE FOR FAILBACK": OTHER,
    "FAILBACK": OTHER,
    "UNDO FAILBACK": OTHER,
    "COMMIT FAILBACK": OTHER,
    "FailbackComplete": OTHER,
    "DryRun": OTHER,
    "TESTING HALTED": OTHER,
    "TEST PENDING": OTHER,
    "TESTING": OTHER,
    "CHECKING": OTHER,
    "CHECK HALTING": OTHER,
    "EDITING": OTHER,
    "CREATING": OTHER,
    "SAVING": OTHER,
    "RESETTING": OTHER,
    "DELETING": OTHER,
}


def plan(state: Any, details: str = "", in_use: bool = False, **extra: Any) -> FailoverPlan:
    return FailoverPlan.parse(
        {"id": "p1", "name": "P", "planState": state, "planStateDetails": details, "planInUse": in_use, **extra}
    )


def test_every_row_of_the_table_has_an_expectation_and_every_row_a_source() -> None:
    assert sorted(row.words for row in VOCABULARY) == sorted(EXPECTED)
    assert all(row.source.strip() for row in VOCABULARY)


@pytest.mark.parametrize("words", sorted(EXPECTED))
def test_each_spelling_is_read_as_expected(words: str) -> None:
    """Each spelling, in a situation a server shows it in, leads the rules where a DR admin expects."""
    expected = EXPECTED[words]
    if expected == IDLE:
        idle = plan(words, "Ready")
        assert not_runnable_because(idle) is None and is_clean(idle) and not is_failed_over_by_anyone(idle)
        assert "in use" in (not_runnable_because(plan(words, "Ready", in_use=True)) or "")
    elif expected == DISABLED:
        assert "needs it enabled" in (not_runnable_because(plan(words)) or "")
        assert not is_clean(plan(words))
    elif expected == FAILOVER:
        running = plan(words, "In progress: step 2 of 5", in_use=True)
        done = plan(words, "Complete, no errors, 1 warning")
        assert running.status().condition is Condition.FAILING_OVER
        assert (running.status().step, running.status().steps) == (2, 5)
        assert failover_complete(done) and not failover_complete(running)
        assert is_failed_over_by_anyone(done) and not is_clean(done) and not_runnable_because(done) is not None
    elif expected == UNDO:
        running = plan(words, "In progress: step 1 of 3", in_use=True)
        assert running.status().condition is Condition.UNDOING and not is_clean(running)
        assert is_clean(plan(words, "Complete, no errors, no warnings"))
        assert not is_clean(plan(words, "Complete, 2 errors"))
    elif expected == RUNNING:
        shown = plan(words, "In progress: step 3 of 4", in_use=True)
        assert shown.status("failover").condition is Condition.FAILING_OVER
        assert shown.status("undo").condition is Condition.UNDOING
        assert shown.status().condition is Condition.BUSY  # a stage vaodrill did not start: not guessed
        assert not_runnable_because(shown) is not None and is_failed_over_by_anyone(shown)
    elif expected == HALTED:
        halted = plan(words, "Halted at step 2 of 5", in_use=True)
        assert halted.status("failover").condition is Condition.HALTED and is_failed_over_by_anyone(halted)
    else:
        other = plan(words, "Complete, no errors, no warnings")
        assert other.status().condition is Condition.OTHER
        assert "needs it idle" in (not_runnable_because(other) or "") and not is_failed_over_by_anyone(other)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("undo_failover", Condition.UNDONE),
        ("UndoFailover", Condition.UNDONE),
        ("Undo Failover", Condition.UNDONE),
        (" UNDO-FAILOVER ", Condition.UNDONE),
        ("needs_verified", Condition.IDLE),
        ("NeedsVerified", Condition.IDLE),
        ("verified (PASSED CHECK)", Condition.IDLE),
        ("Not Verified", Condition.IDLE),
        ("processing", Condition.BUSY),
        ("Verified passed check", Condition.UNKNOWN),
        ("Failed over", Condition.UNKNOWN),
        ("", Condition.UNKNOWN),
        ("(Verified)", Condition.UNKNOWN),
        ("Verified" + " " * 300, Condition.UNKNOWN),
        (0, Condition.UNKNOWN),
        (None, Condition.UNKNOWN),
        (["Verified"], Condition.UNKNOWN),
    ],
)
def test_spellings_match_after_case_spaces_underscores_and_a_qualifier(words: Any, expected: Condition) -> None:
    assert plan(words, "Complete, no errors, no warnings").status().condition is expected


def test_an_unknown_state_is_refused_and_named() -> None:
    reason = not_runnable_because(plan("SOMETHING NEW", "Ready"))
    assert reason is not None and "does not know" in reason and "SOMETHING NEW" in reason
    assert not is_clean(plan("SOMETHING NEW", "Ready"))


def test_a_server_cannot_choose_what_a_state_means() -> None:
    assert plan("SOMETHING NEW", kind="idle").kind is Kind.UNKNOWN


def test_fields_no_decision_uses_are_kept_raw_whatever_their_type() -> None:
    shown = plan(
        "Verified (passed check)",
        "Ready",
        scheduleType=0,
        scheduleEnabled="yes",
        description=["a", 1],
        contactName={"first": "Wendy"},
        contactTel=18003334455,
        scheduleTime=12.5,
        siteScopeId=None,
        targetRPO="1440",
        targetRTO=60.0,
    )
    assert shown.schedule_type == 0 and shown.schedule_enabled == "yes" and shown.contact_tel == 18003334455
    assert shown.description == '["a", 1]' and shown.contact_name == '{"first": "Wendy"}'
    assert (shown.target_rpo, shown.target_rto) == (1440, 60)
    assert not_runnable_because(shown) is None
    odd = plan("Enabled", targetRTO="an hour", targetRPO=-5, description={"x": "y" * 10_000})
    assert odd.target_rto is None and odd.target_rpo is None and len(str(odd.description)) <= 200


def test_an_administrator_adds_spellings_but_never_changes_a_documented_one() -> None:
    vocabulary = Vocabulary.with_states({"Bereit": "idle", "Wird ausgeführt": "running", "Verified (custom)": "idle"})
    assert vocabulary.kind("BEREIT") is Kind.IDLE and vocabulary.kind("wird_ausgeführt") is Kind.RUNNING
    assert (
        FailoverPlan.parse({"id": "p", "name": "P", "planState": "Bereit"}, vocabulary).status().condition
        is Condition.IDLE
    )
    assert plan("Bereit").kind is Kind.UNKNOWN  # the default vocabulary is untouched
    for states, fragment in [
        ({"Failover": "idle"}, "documented spelling that means failover"),
        ({"Bereit": "unknown"}, "must map to one of"),
        ({"Bereit": "runnable"}, "must map to"),
        ({"  ": "idle"}, "not a state spelling"),
        ({"(x)": "idle"}, "not a state spelling"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            Vocabulary.with_states(states)


def test_connection_settings_carry_the_mapping_to_the_client() -> None:
    settings = ConnectionSettings(url="http://127.0.0.1:9899", username="u", states={"Bereit": "idle"})
    assert settings.client().vocabulary.kind("Bereit") is Kind.IDLE
    assert ConnectionSettings.model_validate(settings.model_dump()).states == {"Bereit": "idle"}
    with pytest.raises(ValidationError, match="documented spelling"):
        ConnectionSettings(url="http://127.0.0.1:9899", states={"Undoing": "idle"})
    env = {"VAO_URL": "http://127.0.0.1:9899", "VAO_STATES": '{"Bereit": "idle"}'}
    from_env = ConnectionSettings.from_env(env)
    assert from_env is not None and from_env.vocabulary.kind("Bereit") is Kind.IDLE
    for bad in ('{"Bereit": idle}', '["Bereit"]', '{"Bereit": 1}', '{"Halted": "idle"}', '{"x": "y"}'):
        with pytest.raises(VaoUsageError) as caught:
            ConnectionSettings.from_env({**env, "VAO_STATES": bad})
        message = str(caught.value)
        assert "\n" not in message and ("VAO_STATES" in message or "states" in message), message


def test_the_key_ignores_only_a_trailing_qualifier() -> None:
    assert spelling_key("Verified (passed test and check)") == spelling_key("VERIFIED") == "verified"
    assert spelling_key("Undo (Failover)") == "undo" and spelling_key("x" * 201) == ""


async def test_a_session_knows_what_its_journal_started(tmp_path: Any) -> None:
    """``Processing`` after the journal's Undo is that undo running; after its Run, the failover (recover)."""
    journal = Journal(tmp_path, "run-1")
    journal.append("open", drill="d", mode="drill", plans=[{"key": "a", "id": "A1"}, {"key": "b", "id": "B1"}])
    journal.append("intent", plan="a", plan_id="A1", op="run")
    journal.append("intent", plan="b", plan_id="B1", op="run")
    journal.append("intent", plan="b", plan_id="B1", op="halt")
    journal.append("intent", plan="b", plan_id="B1", op="undo")
    settings = ConnectionSettings(url="http://127.0.0.1:9", username="u", password=SecretStr("x"))
    async with DrillSession(settings.client(), poll_interval=1, give_up_after=1, journal=journal) as session:
        busy = {
            "name": "P",
            "planState": "Processing",
            "planStateDetails": "In progress: step 1 of 2",
            "planInUse": True,
        }
        assert session.status(FailoverPlan.parse({**busy, "id": "a1"})).condition is Condition.FAILING_OVER
        assert session.status(FailoverPlan.parse({**busy, "id": "B1"})).condition is Condition.UNDOING
        assert session.status(FailoverPlan.parse({**busy, "id": "C1"})).condition is Condition.BUSY


def test_a_bad_mapping_is_one_line_and_exit_2(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    vaodrill = str(Path(sys.executable).with_name("vaodrill"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("VAO_")}
    base.update(VAO_URL="http://127.0.0.1:9", VAO_USERNAME="u", VAO_PASSWORD="p", PREFECT_HOME=str(tmp_path))
    for states, fragment in [
        ('{"Halted": "idle"}', "documented spelling"),
        ('{"Bereit": "runnable"}', "must map"),
        ('{"Bereit":', "VAO_STATES must be a JSON object"),
    ]:
        result = subprocess.run(
            [vaodrill, "doctor"],
            env={**base, "VAO_STATES": states},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 2, (result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr
        assert "Traceback" not in result.stdout + result.stderr
