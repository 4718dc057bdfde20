"""The one retry policy for everything that waits on VAO, and the one classification of transient errors.

What is retried (:meth:`RetryPolicy.retryable`): a read, on any transient error (:func:`is_transient`: connection
problems, timeouts, 429, 5xx); a write (every POST) only when the server provably did not act on it: the request
never reached it, or it was refused for now (429 or 503 with ``Retry-After``). A Run must never be sent twice.
The waits are capped exponential backoff with jitter, or the server's ``Retry-After``; one operation (every attempt
and wait) ends within the policy's ``deadline``. A drill allows its own operations longer (its ``give_up_after``)
with :func:`patience`. Each retry is announced while it happens: one line, what failed and when the next try is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from vaodrill.errors import (
    VaoConnectionError,
    VaoRateLimited,
    VaoResponseError,
    VaoServerError,
    VaoTLSError,
    one_line,
)

__all__ = ["RetryPolicy", "is_transient", "patience"]

T = TypeVar("T")

#: The jitter's own generator: retries neither consume nor depend on the process's global random state.
_JITTER = random.Random()
#: How long the operations of this task may go on retrying (seconds), when a drill said so (see :func:`patience`).
_PATIENCE: ContextVar[float | None] = ContextVar("vaodrill_patience", default=None)


def is_transient(error: BaseException) -> bool:
    """Whether a read that failed with ``error`` may succeed if repeated later (also for Prefect task retries).

    A certificate that is not trusted, a refusal (4xx other than 429), a broken answer or a drill verdict is not.
    """
    if isinstance(error, VaoTLSError):
        return False
    return isinstance(error, VaoConnectionError | VaoRateLimited | VaoServerError)


def _refused_for_now(error: BaseException) -> bool:
    """429 or 503 with Retry-After: the server says it did nothing, and when to ask again."""
    return (
        isinstance(error, VaoRateLimited | VaoServerError)
        and error.status_code in (429, 503)
        and error.retry_after is not None
    )


@contextlib.contextmanager
def patience(seconds: float) -> Iterator[None]:
    """Within this block (in this task), an operation may retry for ``seconds`` instead of the policy's deadline,
    however many attempts that takes: a drill bears an outage for its ``give_up_after``, a command does not."""
    token = _PATIENCE.set(seconds)
    try:
        yield
    finally:
        _PATIENCE.reset(token)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently an operation is repeated.

    ``deadline``: the longest one operation may take, every attempt and wait included (never less than one
    exchange's own timeout), so a command against a server that accepts and never answers ends in bounded time.
    Within :func:`patience`, its seconds replace both ``deadline`` and ``attempts``.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.25
    max_retry_after: float = 120.0
    deadline: float = 40.0

    @staticmethod
    def retryable(error: BaseException, *, write: bool) -> bool:
        """Whether an operation that failed with ``error`` may be sent again (see the module's docstring)."""
        if not is_transient(error):
            return False
        if not write:
            return True
        if isinstance(error, VaoConnectionError):
            return not error.may_have_reached_server
        return _refused_for_now(error)

    def should_retry(self, error: BaseException, *, write: bool, attempt: int) -> bool:
        """Whether ``attempt`` (1-based) may be followed by another one."""
        return attempt < self.attempts and self.retryable(error, write=write)

    def delay(self, error: BaseException, attempt: int) -> float:
        """Seconds to wait before the next attempt: the server's Retry-After, else capped backoff plus jitter."""
        if isinstance(error, VaoResponseError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        base = min(self.max_delay, self.backoff * 2.0 ** (attempt - 1))
        return base * (1 + self.jitter * _JITTER.random())

    async def run(
        self,
        attempt: Callable[[float], Awaitable[T]],
        *,
        retryable: Callable[[BaseException], bool],
        log: logging.Logger,
        what: str = "",
        floor: float = 0.0,
    ) -> T:
        """``attempt(seconds left)`` until it succeeds, fails for good, or the next wait would end past the deadline
        (the policy's, never less than ``floor``, or the current :func:`patience`); then its last error is raised.

        Every retry is announced on ``log`` as one line: what failed, which retry, and in how long.
        """
        patient = _PATIENCE.get()
        attempts = None if patient is not None else self.attempts
        deadline = time.monotonic() + max(patient if patient is not None else self.deadline, floor)
        number = 0
        while True:
            number += 1
            try:
                return await attempt(deadline - time.monotonic())
            except Exception as error:
                if (attempts is not None and number >= attempts) or not retryable(error):
                    raise
                delay = self.delay(error, number)
                if time.monotonic() + delay >= deadline - 0.1:
                    raise
                of = f" of {attempts}" if attempts is not None else ""
                log.warning(
                    "%s%s; retry %d%s in %.1fs",
                    f"{what}: " if what else "",
                    one_line(str(error), 300),
                    number + 1,
                    of,
                    delay,
                )
                await asyncio.sleep(delay)
