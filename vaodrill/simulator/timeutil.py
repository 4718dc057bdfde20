"""Time formats the simulator speaks: .NET-style naive local datetimes and ISO 8601 UTC instants.

VAO reads ``restorePointRule.date`` and ``startTime`` as a .NET ``DateTime`` without offset in the server's
local time zone (contract 4.4), and shows ``scheduleTime`` the same way. Internally every instant is a float of
epoch seconds on the simulator clock, so progression, token expiry and restore points share one time line.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from .errors import BadRequest


def iso_utc(ts: float) -> str:
    """``2026-11-27T10:00:00.123456Z``: the record/log format (UTC, always with microseconds)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def local_naive(ts: float, tz: tzinfo) -> str:
    """``2026-11-27T03:00:00``: an instant as the server would print a .NET ``DateTime`` (local, no offset)."""
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None).isoformat(timespec="seconds")


def parse_instant(value: str, tz: tzinfo) -> float:
    """Parse a client datetime to epoch seconds, reading a value without offset in ``tz``.

    Tolerant on purpose: 7-digit .NET fractions, a trailing ``Z`` or an explicit offset are converted rather
    than rejected, because a real server binding ``DateTime`` accepts them too. Raises ``ValueError``.
    """
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.timestamp()


def parse_client_instant(value: str, tz: tzinfo, *, field: str) -> float:
    """:func:`parse_instant` for request bodies: a bad value is a 400 naming the field."""
    try:
        return parse_instant(value, tz)
    except ValueError:
        raise BadRequest(
            f"{field} '{value}' is not a valid date and time (expected e.g. 2026-11-27T02:00:00)."
        ) from None
