"""The CLI's live view of a running drill: which plan is in which stage, elapsed against target."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from vaodrill import progress
from vaodrill.report import DrillReport, format_duration

STAGE_STYLE = {"passed": "green", "failed over": "cyan", "failing over": "yellow", "undoing": "magenta",
               "failed": "red", "halted": "red", "timed_out": "red", "skipped": "dim"}


class LiveView:
    """Subscribes to drill progress while open; keeps the final report."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plans: dict[str, progress.PlanProgress] = {}
        self.report: DrillReport | None = None
        self._live = Live(self, console=console, refresh_per_second=4, transient=False)
        self._unsubscribe: Any = None

    def __enter__(self) -> LiveView:
        self._unsubscribe = progress.subscribe(self._on_update)
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.__exit__(None, None, None)
        if self._unsubscribe:
            self._unsubscribe()

    def _on_update(self, update: Any) -> None:
        if isinstance(update, DrillReport):
            self.report = update
        elif isinstance(update, progress.PlanProgress):
            previous = self.plans.get(update.plan)
            if previous and update.started_at is None and previous.started_at is not None:
                update = progress.PlanProgress(update.drill, update.plan, update.stage, update.at,
                                               update.target_seconds or previous.target_seconds,
                                               previous.started_at, update.detail)
            self.plans[update.plan] = update

    def __rich__(self) -> Table:
        table = Table(title="Drill progress", title_justify="left")
        for column in ("Plan", "Stage", "Elapsed", "Target RTO", "Detail"):
            table.add_column(column)
        now = datetime.now(UTC)
        for p in self.plans.values():
            elapsed = (now - p.started_at).total_seconds() if p.started_at and p.stage in (
                "failing over", "starting") else None
            style = STAGE_STYLE.get(p.stage, "")
            table.add_row(p.plan, f"[{style}]{p.stage}[/]" if style else p.stage, format_duration(elapsed),
                          format_duration(p.target_seconds), p.detail or "")
        return table
