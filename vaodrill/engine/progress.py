"""Live progress of the drills running in this process, for whoever watches here (the CLI's live table, tests).

``bus`` is an engine observer that fans each transition, notice and report out to its listeners. Listeners
must be quick and must not raise (errors are logged, never passed to the drill).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaodrill.engine.runs import Observer

if TYPE_CHECKING:
    from vaodrill.report.model import DrillReport

log = logging.getLogger("vaodrill.progress")


@dataclass(frozen=True)
class Notice:
    """A drill-level condition shown while it lasts (``message`` None clears it)."""

    drill: str
    message: str | None


Listener = Callable[[Any], None]


class Bus(Observer):
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive every Transition, Notice and DrillReport; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _tell(self, update: object) -> None:
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:  # a broken display must never break a failover
                log.exception("progress listener failed")

    def on_transition(self, transition: Any) -> None:
        self._tell(transition)

    def on_notice(self, drill: str, message: str | None) -> None:
        self._tell(Notice(drill, message))

    async def on_report(self, report: DrillReport) -> None:
        self._tell(report)


bus = Bus()
subscribe = bus.subscribe
