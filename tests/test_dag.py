"""The DAG runner: a cancelled DAG waits for every node to wind down before it ends."""

from __future__ import annotations

import asyncio

import pytest

from vaodrill.engine.dag import run_dag


async def test_a_cancelled_dag_ends_only_after_a_node_that_is_winding_down() -> None:
    """``a`` has a Run in flight when the DAG is cancelled: it finishes it first (as the engine does); ``b`` waits on
    ``a`` and ends at once. The DAG must not end before ``a`` has."""
    started, finish, ended = asyncio.Event(), asyncio.Event(), []

    async def run(key: str) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await finish.wait()  # the Run in flight: its answer still has to arrive
            ended.append(key)
            raise

    dag = asyncio.ensure_future(run_dag(["a", "b"], {"b": ["a"]}, run))
    await started.wait()
    dag.cancel()
    for _ in range(20):  # loop turns enough for b's node to end and anything waiting on it to run
        await asyncio.sleep(0)
    assert not dag.done() and ended == []
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await dag
    assert ended == ["a"]
