"""The one retry policy for VAO calls.

Reads are retried on connection problems, timeouts, 429 (honouring ``Retry-After``) and 5xx, with capped
exponential backoff and jitter. Writes (every POST) are retried only when the request provably never reached
the server: a Run must never be sent twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vaodrill.errors import VaoConnectionError, VaoError, VaoRateLimited, VaoServerError


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently a call is repeated."""

    attempts: int = 4
    backoff: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.25
    max_retry_after: float = 120.0

    def should_retry(self, error: VaoError, *, write: bool, attempt: int) -> bool:
        """Whether ``attempt`` (1-based) may be followed by another one."""
        if attempt >= self.attempts:
            return False
        if write:
            return isinstance(error, VaoConnectionError) and not error.may_have_reached_server
        return isinstance(error, VaoConnectionError | VaoRateLimited | VaoServerError)

    def delay(self, error: VaoError, attempt: int) -> float:
        """Seconds to wait before the next attempt: the server's Retry-After, else capped backoff plus jitter."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = min(self.max_delay, self.backoff * 2 ** (attempt - 1))
        return base * (1 + self.jitter * random.random())


NO_RETRY = RetryPolicy(attempts=1)
