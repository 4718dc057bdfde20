"""Application checks in the report: one result per check, the lines and JUnit cases every rendering shows.

The engine (:mod:`vaodrill.engine.checks`) fills :class:`CheckResult`; :mod:`vaodrill.report.model` carries them in
each plan's result and calls the functions below, so the Markdown, JUnit, the CLI table and the Prefect table
all say the same words.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "CHECK_COLOURS",
    "CheckResult",
    "CheckStatus",
    "check_legend",
    "check_lines",
    "check_markers",
    "junit_check_cases",
]

CheckStatus = Literal["passed", "failed", "not_run"]


class CheckResult(BaseModel):
    """One application check of a plan, after VAO reported its failover complete."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(description="The check's name (its kind and target when the spec gave none)")
    kind: Literal["http", "tcp", "dns", "command"]
    target: str = Field(description="URL, host:port, DNS name or command line, as the spec wrote it")
    critical: bool = Field(description="A failing critical check fails the plan; any other is a warning")
    status: CheckStatus = Field(
        description="not_run: stopped before its verdict (the drill stopped, or a "
        "critical check of the plan already failed)"
    )
    attempts: int = Field(0, ge=0)
    passed_at: AwareDatetime | None = Field(None, description="When its first passing attempt ended")
    ended_at: AwareDatetime | None = Field(None, description="When its verdict came (passed, failed or stopped)")
    seconds_after_complete: float | None = Field(
        None, description="From VAO's failover complete (as vaodrill saw it) to passing"
    )
    message: str | None = Field(None, description="Why its last attempt failed")

    def describe(self) -> str:
        """One line: ``check 'web' passed 12s after complete (3 attempts)``, or why it failed."""
        what = f"check {self.name!r}" + ("" if self.critical else " (non-critical)")
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if self.status == "passed":
            after = (
                f" {self.seconds_after_complete:.1f}s after complete" if self.seconds_after_complete is not None else ""
            )
            return f"{what} passed{after} ({tries})"
        if self.status == "not_run":
            return f"{what} not finished: {self.message or 'stopped'}"
        return f"{what} failed after {tries}: {self.message or 'no reason'}"


def check_lines(checks: Iterable[CheckResult]) -> list[str]:
    """One line per check, for every rendering's list of what happened to a plan."""
    return [c.describe() for c in checks]


def junit_check_cases(suite: ET.Element, checks: Iterable[CheckResult], classname: str) -> None:
    """One testcase per check inside the plan's suite: failed critical checks fail, others pass (with a
    property saying a non-critical one failed), checks that never finished are skipped."""
    for c in checks:
        seconds = c.seconds_after_complete if c.seconds_after_complete is not None else 0.0
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": c.name, "time": f"{seconds:.3f}"})
        props = ET.SubElement(case, "properties")
        for name, value in _check_properties(c):
            ET.SubElement(props, "property", {"name": name, "value": value})
        if c.status == "failed" and c.critical:
            ET.SubElement(case, "failure", {"type": "check", "message": c.message or "failed"}).text = c.describe()
        elif c.status == "not_run":
            ET.SubElement(case, "skipped", {"message": c.message or "not finished"})
        ET.SubElement(case, "system-out").text = c.describe()


def _check_properties(c: CheckResult) -> Iterable[tuple[str, str]]:
    yield "kind", c.kind
    yield "target", c.target
    yield "critical", "true" if c.critical else "false"
    if c.passed_at is not None:
        yield "passed_at", c.passed_at.astimezone(UTC).isoformat()
    if c.status == "failed" and not c.critical:
        yield "warning", c.describe()


#: A check's marker on the timeline: passed, failed critical (the plan failed), failed non-critical (a warning).
CHECK_COLOURS = {"passed": "#1e8449", "failed": "#c0392b", "warning": "#d68910"}


def check_markers(
    row: ET.Element, checks: Iterable[CheckResult], x_of: Callable[[datetime], float], mid: float
) -> None:
    """A diamond per check on the plan's timeline row, where its verdict came; its title says what it was."""
    for c in checks:
        if c.ended_at is None:
            continue
        colour = CHECK_COLOURS["passed" if c.status == "passed" else "failed" if c.critical else "warning"]
        x = x_of(c.ended_at)
        marker = ET.SubElement(
            row,
            "path",
            {
                "d": f"M{x:.1f},{mid - 9:.1f} L{x + 5:.1f},{mid:.1f} L{x:.1f},{mid + 9:.1f} L{x - 5:.1f},{mid:.1f} z",
                "fill": colour,
                "stroke": "#ffffff",
                "stroke-width": "1",
                "class": f"check {c.status}",
            },
        )
        ET.SubElement(marker, "title").text = c.describe()


def check_legend() -> list[tuple[str, str, dict[str, object]]]:
    """The timeline legend's keys for the check markers: (label, SVG tag, attributes)."""
    return [
        (f"check {word}", "path", {"d": "M8,-7 L12,0 L8,7 L4,0 z", "fill": colour})
        for word, colour in CHECK_COLOURS.items()
    ]
