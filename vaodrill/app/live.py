"""The CLI's live view of a running drill: which plan is in which phase, elapsed against target, server trouble."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from vaodrill.engine import progress
from vaodrill.engine.runs import Phase, PlanRun, Transition
from vaodrill.report.model import DrillReport
from vaodrill.report.text import format_duration

PHASE_STYLE = {
    Phase.FAILED_OVER: "cyan",
    Phase.FAILING_OVER: "yellow",
    Phase.VERIFYING: "blue",
    Phase.UNDOING: "magenta",
    Phase.CLEAN: "green",
    Phase.FAILED: "red",
    Phase.HALTED: "red",
    Phase.TIMED_OUT: "red",
    Phase.INTERRUPTED: "red",
    Phase.REFUSED: "red",
    Phase.LEFT_FAILED_OVER: "bold red",
    Phase.SKIPPED: "dim",
}


class LiveView:
    """Subscribes to drill progress while open; the table appears with the first plan transition (so a drill
    that never reached the server prints nothing but its error); keeps the final report."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plans: dict[str, PlanRun] = {}
        self.notice: str | None = None
        self.report: DrillReport | None = None
        self._live = Live(self, console=console, refresh_per_second=4, transient=False)
        self._started = False
        self._unsubscribe: Any = None

    def __enter__(self) -> LiveView:
        self._unsubscribe = progress.subscribe(self._on_update)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started:
            self._live.__exit__(None, None, None)
        if self._unsubscribe:
            self._unsubscribe()

    def _on_update(self, update: Any) -> None:
        if isinstance(update, DrillReport):
            self.report = update
        elif isinstance(update, progress.Notice):
            self.notice = update.message
        elif isinstance(update, Transition):
            self.plans[update.run.key] = update.run
            if not self._started and self.console.is_terminal:
                self._started = True
                self._live.__enter__()

    def __rich__(self) -> Group:
        table = Table(title="Drill progress", title_justify="left")
        for column in ("Plan", "Phase", "Elapsed", "Target RTO", "Detail"):
            table.add_column(column)
        now = datetime.now(UTC)
        for run in self.plans.values():
            elapsed = ((run.completed_at or now) - run.started_at).total_seconds() if run.started_at else None
            style = PHASE_STYLE.get(run.phase, "")
            table.add_row(
                run.name,
                f"[{style}]{run.phase.value}[/]" if style else run.phase.value,
                format_duration(elapsed),
                format_duration(run.target.rto_target_seconds),
                run.reason or run.details or "",
            )
        if self.notice:
            return Group(table, Text(f"⚠ {self.notice}", style="yellow"))
        return Group(table)
