"""SIGINT and SIGTERM for a drill run from a terminal: the first stops the drill cleanly, the second exits now.

Only the CLI asks for this (``handle``); a flow run under a Prefect worker keeps Prefect's own signal handling,
and its cancellation hook recovers from the journal instead. Prefect's flow engine installs its SIGTERM bridge
when a flow run starts (and puts back what it found when the run ends): a CLI drill's flow run calls
:func:`reclaim` first thing, so SIGTERM stays ours for the whole drill.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[[int], None]
_handler: Handler | None = None
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The drills running in this process (engine objects with ``stop()``), for the handler to stop.
running: set[Any] = set()


def handle(handler: Handler) -> None:
    """Route SIGINT/SIGTERM of this process to ``handler(signum)`` on the running loop (main thread only)."""
    global _handler
    if threading.current_thread() is not threading.main_thread():
        return
    _handler = handler
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        loop.add_signal_handler(signum, handler, signum)


def owned() -> bool:
    """Whether this process's SIGINT/SIGTERM are ours (a CLI drill), not Prefect's."""
    return _handler is not None


def reclaim() -> None:
    """Ours on SIGTERM again, if this process's signals are ours (see the module's docstring)."""
    if _handler is not None and threading.current_thread() is threading.main_thread():
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _handler, signal.SIGTERM)


def release() -> None:
    global _handler
    if _handler is None:
        return
    _handler = None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for signum in SIGNALS:
        loop.remove_signal_handler(signum)
