"""What a drill's observers are told beyond its transitions: the start, the plans that never ran, the report.

Observers are Prefect's logs, events, artifacts and task runs in ``flows/``. Each call here is bounded in time
and only logged when it fails: an observer is never in the way of the drill, its cleanup or its report files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

from vaodrill.engine.dag import run_dag
from vaodrill.engine.runs import Observer, PlanRun, Steps
from vaodrill.report.model import DrillReport

log = logging.getLogger("vaodrill.drill")

#: How long the report's observers (Prefect artifacts, events) may take once the files are written.
PUBLISH_TIMEOUT = 15.0


def tell_start(
    observers: Iterable[Observer], drill: str, run_id: str, mode: str, server: str, records: Iterable[PlanRun]
) -> None:
    """The drill resolved its plans and is about to start; each observer gets its own copies of the records."""
    runs = list(records)
    for observer in observers:
        try:
            observer.on_start(drill, run_id, mode, server, [replace(r) for r in runs])
        except Exception:
            log.exception("observer failed on the start")


async def show_unstarted(steps: Steps, records: Mapping[str, PlanRun], grouped: Collection[str]) -> None:
    """Plans that never ran still get their group, in DAG order, so a UI shows the whole drill (best effort:
    bounded, and never in the way of the report)."""
    keys = [k for k in records if k not in grouped]
    if not keys:
        return

    async def show(key: str) -> None:
        run = records[key]

        async def nothing() -> PlanRun:
            return run

        await steps.plan(run.target, nothing)

    after = {k: [d for d in records[k].target.after if d in keys] for k in keys}
    try:
        await asyncio.wait_for(run_dag(keys, after, show), PUBLISH_TIMEOUT)
    except Exception as exc:
        log.warning("plans that never started are not all shown: %s", exc)


async def publish(report: DrillReport, observers: Iterable[Observer]) -> None:
    """The report to each observer (Prefect artifacts, events), each bounded in time; a failing one is only
    logged."""

    async def tell(observer: Observer) -> None:
        try:
            await asyncio.wait_for(observer.on_report(report), PUBLISH_TIMEOUT)
        except Exception:
            log.exception("observer failed on the report")

    await asyncio.gather(*(tell(o) for o in observers))


__all__ = ["PUBLISH_TIMEOUT", "publish", "show_unstarted", "tell_start"]
