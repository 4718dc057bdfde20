"""The drill report: what an auditor, a CI dashboard and an on-call engineer read after a drill.

One data model (:class:`DrillReport`), its JSON form (the documented, versioned public schema) and where a run's
files live. Each rendering has its module: :mod:`~vaodrill.report.text` (words and flat rows),
:mod:`~vaodrill.report.markdown`, :mod:`~vaodrill.report.junit`, :mod:`~vaodrill.report.terminal` (a Rich table) and
:mod:`~vaodrill.report.timeline`. Nothing here imports Prefect, so reports can be read and rendered anywhere.

The one thing a report must never hide is a plan left failed over after a drill: production may be
running from the DR site. :attr:`DrillReport.left_failed_over` finds them and every writer shouts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from vaodrill.report.checks import CheckResult

__all__ = [
    "SCHEMA_VERSION",
    "DrillReport",
    "Mode",
    "PlanEvent",
    "PlanResult",
    "PlanStatus",
    "UndoStatus",
    "Verdict",
    "load_report",
    "report_directory",
    "report_from_json",
    "report_to_json",
]

SCHEMA_VERSION = 1

PlanStatus = Literal["passed", "failed", "skipped", "halted", "timed_out", "interrupted"]
UndoStatus = Literal["verified", "failed", "not_needed", "skipped"]
Verdict = Literal["passed", "failed"]
Mode = Literal["drill", "failover", "readiness"]
#: What the stage columns hold, by mode: a readiness drill's are its checks (started, completed).
STAGE_WORD: dict[str, str] = {"readiness": "Check"}
#: auth: credentials refused mid-drill; unreachable: the server failed longer than give_up_after;
#: signal: SIGINT/SIGTERM; cancelled: the flow run was cancelled.
Stopped = Literal["auth", "unreachable", "signal", "cancelled"]

PLAN_STATUSES: tuple[str, ...] = get_args(PlanStatus)
#: Plan statuses that count as a JUnit failure.
FAILING_STATUSES = frozenset({"failed", "halted", "timed_out", "interrupted"})
#: Undo outcomes after which a drilled plan is known to be back where it started.
CLEAN_UNDO = frozenset({"verified", "not_needed"})

DASH = "—"


# --------------------------------------------------------------------------------------------- model


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: Aware datetimes only: a naive one is ambiguous in an audit trail, so it is rejected rather than guessed.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _strip_url_secrets(value: str | None) -> str | None:
    """Keep scheme, host, port and path: user info, query and fragment may carry credentials or tokens.

    Stripped rather than rejected, so a report is never lost at the end of a drill over a URL's form.
    """
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:  # not a number: keep whatever followed the host, minus secrets
        port = None
    if not parts.scheme or not parts.hostname:
        return value.split("@")[-1].split("?")[0].split("#")[0]
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


SafeUrl = Annotated[str | None, AfterValidator(_strip_url_secrets)]


def _encodable(value: object) -> object:
    """A lone surrogate (a server's JSON may carry "\\ud800") becomes "?": pydantic would refuse the name, and
    with it the whole report, at the end of a drill."""
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value


#: A plan name as the server spelled it, minus what UTF-8 cannot carry.
PlanName = Annotated[str, BeforeValidator(_encodable)]

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


class PlanEvent(BaseModel):
    """A halt VAO showed, or a Continue vaodrill sent, while a plan failed over; in the order they happened."""

    model_config = _CONFIG

    kind: Literal["halt", "continue"]
    at: UtcDatetime = Field(description="When vaodrill saw the halt, or sent the Continue")
    step: int | None = Field(None, description="halt: the step VAO halted at, when its details name one")
    details: str | None = Field(None, description="halt: VAO's planStateDetails")
    option: str | None = Field(None, description="continue: the Continue option sent")
    outcome: str | None = Field(None, description="continue: what the plan did next (resumed, halted again, ...)")


class PlanResult(BaseModel):
    """The outcome of one failover plan in a drill.

    ``undo`` is required on purpose: whether a plan was put back is the question an auditor asks first.
    """

    model_config = _CONFIG

    plan: PlanName = Field(min_length=1, description="Failover plan name")
    id: str | None = Field(None, description="VAO plan id")
    status: PlanStatus
    reason: str | None = Field(None, description="Why the plan did not pass")
    after: list[str] = Field(default_factory=list, description="Plans this one waited for (DAG edges)")
    restore_point: str | None = Field(
        None, description="restorePointRule.date exactly as sent: VAO server wall time, no offset"
    )
    restore_point_rule: str | None = Field(None, description="Human form of the rule, e.g. 'ago 6h'")
    restore_point_seed: int | None = Field(None, description="Seed used to pick a random restore point")
    failover_started_at: UtcDatetime | None = None
    failover_completed_at: UtcDatetime | None = None
    failover_ended_at: UtcDatetime | None = Field(
        None, description="When the failover stage ended however it ended (completed, halted, timed out, failed)"
    )
    failover_details: str | None = Field(
        None, description="VAO's planStateDetails when the failover completed (its warnings and errors)"
    )
    rto_seconds: float | None = Field(None, description="Achieved recovery time")
    rto_target_seconds: float | None = Field(None, description="The plan's RTO target")
    rto_met: bool | None = None
    undo: UndoStatus
    undo_reason: str | None = None
    undo_completed_at: UtcDatetime | None = None
    undo_details: str | None = Field(None, description="VAO's planStateDetails when the undo finished")
    events: list[PlanEvent] = Field(default_factory=list, description="Halts and Continues during the failover")
    warnings: list[str] = Field(default_factory=list, description="Passed, but not cleanly: e.g. VAO's warnings")
    notes: list[str] = Field(
        default_factory=list,
        description="How the restore-point rule was read (after now, a repeated hour on the server...)",
    )
    checks: list[CheckResult] = Field(default_factory=list, description="Application checks after the failover")
    verified_at: UtcDatetime | None = Field(None, description="When the last critical check passed")
    rto_verified_seconds: float | None = Field(
        None, description="From the Run POST to all critical checks passed; rto_met compares this one when set"
    )


class DrillReport(BaseModel):
    """Everything a drill (or a real failover) did, plan by plan; serialized as schema v1."""

    model_config = _CONFIG

    drill: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    mode: Mode
    verdict: Verdict
    started_at: UtcDatetime
    finished_at: UtcDatetime
    description: str | None = None
    vao_server: SafeUrl = Field(None, description="VAO base URL; credentials are stripped")
    flow_run_url: SafeUrl = None
    reason: str | None = Field(None, description="Drill-level reason when the verdict is failed")
    stopped: Stopped | None = Field(None, description="Why the drill stopped early, if it did")
    warnings: list[str] = Field(default_factory=list, description="Drill-level warnings (e.g. the server's zone)")
    plans: list[PlanResult] = Field(default_factory=list)

    @property
    def left_failed_over(self) -> list[PlanResult]:
        """Drilled plans whose failover started but were not verifiably put back.

        Empty in ``failover`` mode, where staying failed over is the point.
        """
        if self.mode != "drill":
            return []
        return [p for p in self.plans if p.failover_started_at is not None and p.undo not in CLEAN_UNDO]

    @property
    def counts(self) -> dict[str, int]:
        """Plans per status; every status is present (zero included) so consumers need no defaults."""
        counts = dict.fromkeys(PLAN_STATUSES, 0)
        for p in self.plans:
            counts[p.status] += 1
        return counts

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


# ------------------------------------------------------------------------------------------ JSON


def report_to_json(report: DrillReport, integrity: Mapping[str, Any] | None = None) -> str:
    """The documented JSON form, ``schema_version`` first; ``integrity`` (hashes, see :func:`write_reports`) last."""
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **report.model_dump(mode="json")}
    if integrity is not None:
        data["integrity"] = integrity
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def report_from_json(data: str | bytes) -> DrillReport:
    """Parse a report written by :func:`report_to_json`; refuses other schema versions instead of guessing."""
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("drill report JSON must be an object")
    version = raw.pop("schema_version", None)
    raw.pop("integrity", None)  # about the files, not the drill: vaodrill.report.verify reads it
    if version != SCHEMA_VERSION:
        raise ValueError(f"unsupported drill report schema_version {version!r} (expected {SCHEMA_VERSION})")
    return DrillReport.model_validate(raw)


def load_report(path: Path | str) -> DrillReport:
    """Read a ``report.json`` (or a report directory containing one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    return report_from_json(path.read_bytes())


# ----------------------------------------------------------------------------- where a report lives


_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def _path_part(text: str) -> str:
    """A single safe path component: a drill called ``../prod`` must not write outside the directory."""
    part = _UNSAFE_PATH_CHARS.sub("_", text).strip("._") or "_"
    return part[:100]


def report_directory(report: DrillReport, directory: Path) -> Path:
    """``directory/<drill>/<YYYYmmddTHHMMSSZ>-<run_id[:8]>``, sortable by start time."""
    stamp = report.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(directory) / _path_part(report.drill) / f"{stamp}-{_path_part(report.run_id[:8])}"
