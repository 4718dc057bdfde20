"""Live progress of a drill, for whoever watches in this process (the CLI's live table).

The drill publishes one small record per plan transition; listeners must be quick and must not raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaodrill.report import DrillReport

log = logging.getLogger("vaodrill.progress")


@dataclass(frozen=True)
class PlanProgress:
    drill: str
    plan: str
    stage: str  # waiting | precondition | failing over | failed over | undoing | clean | failed | skipped ...
    at: datetime
    target_seconds: float | None = None
    started_at: datetime | None = None
    detail: str | None = None


Listener = Callable[[Any], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Receive every plan transition; returns the function that unsubscribes."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def publish(update: PlanProgress | DrillReport) -> None:
    """Tell every listener: a plan transition, or the final report."""
    for listener in list(_listeners):
        try:
            listener(update)
        except Exception:  # a broken display must never break a failover
            log.exception("progress listener failed")
