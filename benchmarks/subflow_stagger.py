"""Prefect 3.9: concurrent async child flow runs start one after another, seconds apart.

    python benchmarks/subflow_stagger.py [N]

Starts a ``prefect server start`` (SQLite, its defaults), then one parent flow that gathers N child flows, each
of one task and a 1 s sleep, and prints when each child's body started. No vaodrill code is involved. Measured on
this 2-core machine, N=4: bodies at 2.5, 3.5, 3.9 and 7.7 s after the parent was called (another run: 1.5, 3.8,
7.9, 8.3 s), where all four should start together. This is what made a drill run as a flow wait seconds per plan
that had siblings while each plan was a child flow run (until the plans became task runs: ``drill_bench.py``'s
``vaodrill-prefect-*`` rows, before and after, in docs/benchmarks.md).

Why, from the API exchanges of such a run: concurrent writes (``POST /task_runs/``, ``POST /flow_runs/``) collide
on SQLite; the server answers ``SQLITE_BUSY``/``SQLITE_BUSY_SNAPSHOT`` with a 503 and no ``Retry-After``, and
Prefect's client then waits ``2 ** attempt`` seconds (``prefect/client/base.py``) before trying again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from drill_bench import PrefectServer


def main(children: int) -> None:
    with tempfile.TemporaryDirectory(prefix="subflow-stagger-") as tmp, PrefectServer(Path(tmp)) as server:
        os.environ.update({"PREFECT_API_URL": server.url, "PREFECT_HOME": tmp})
        from prefect import flow, task

        started = time.monotonic()
        bodies: dict[str, float] = {}

        @task
        async def step(name: str) -> str:
            return name

        @flow(name="child", flow_run_name="{name}", validate_parameters=False, persist_result=False)
        async def child(name: str) -> str:
            bodies[name] = time.monotonic() - started
            await step(name)
            await asyncio.sleep(1.0)
            return name

        @flow(name="parent")
        async def parent() -> None:
            await asyncio.gather(*(child(f"child-{i}") for i in range(children)))

        asyncio.run(parent())
        for name, at in sorted(bodies.items(), key=lambda item: item[1]):
            print(f"{name}: body started {at:.2f} s after the parent was called")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
