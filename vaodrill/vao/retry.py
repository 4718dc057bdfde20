"""The one retry policy for VAO calls, and the one classification of transient errors.

Reads are retried on transient errors (:func:`is_transient`: connection problems, timeouts, 429 honouring
``Retry-After``, 5xx), with capped exponential backoff and jitter. Writes (every POST) are retried only when the
request provably never reached the server: a Run must never be sent twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vaodrill.errors import VaoConnectionError, VaoRateLimited, VaoResponseError, VaoServerError, VaoTLSError

#: The jitter's own generator: retries neither consume nor depend on the process's global random state.
_JITTER = random.Random()


def is_transient(error: BaseException) -> bool:
    """Whether a read that failed with ``error`` may succeed if repeated later (also for Prefect task retries).

    A certificate that is not trusted, a refusal (4xx other than 429), a broken answer or a drill verdict is not.
    """
    if isinstance(error, VaoTLSError):
        return False
    return isinstance(error, VaoConnectionError | VaoRateLimited | VaoServerError)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently a call is repeated.

    ``deadline``: the longest one operation may take, every attempt and wait included (never less than one
    exchange's own timeout), so a command against a server that accepts and never answers ends in bounded time.
    Waiting beyond it inside a drill is the drill's ``give_up_after``.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.25
    max_retry_after: float = 120.0
    deadline: float = 40.0

    def should_retry(self, error: BaseException, *, write: bool, attempt: int) -> bool:
        """Whether ``attempt`` (1-based) may be followed by another one."""
        if attempt >= self.attempts:
            return False
        if write:
            return is_transient(error) and isinstance(error, VaoConnectionError) and not error.may_have_reached_server
        return is_transient(error)

    def delay(self, error: BaseException, attempt: int) -> float:
        """Seconds to wait before the next attempt: the server's Retry-After, else capped backoff plus jitter."""
        if isinstance(error, VaoResponseError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        base = min(self.max_delay, self.backoff * 2.0 ** (attempt - 1))
        return base * (1 + self.jitter * _JITTER.random())
