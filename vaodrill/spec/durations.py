"""Durations as people write them in drill files: ``6h``, ``1h30m``, ``2d``, ``PT6H`` or bare seconds.

Grammar (case-insensitive, whitespace between parts allowed):

* compact units, largest first, each at most once: ``1w2d3h4m5s``, ``1h 30m``, ``1.5h``.
  Units: ``w``/``week(s)``, ``d``/``day(s)``, ``h``/``hr(s)``/``hour(s)``, ``m``/``min(s)``/``minute(s)``,
  ``s``/``sec(s)``/``second(s)``. ``m`` is always minutes: months are not fixed lengths and are not supported.
* ISO 8601 durations with fixed-length parts: ``PT6H``, ``P2D``, ``P1DT2H``, ``P1W``, ``PT1.5H``.
  ``P1Y`` and ``P1M`` are rejected for the same reason as months above.
* a bare number (``int``/``float`` or a numeric string) is seconds; a ``timedelta`` is taken as is.

Every duration in a drill (windows, targets, timeouts, intervals) must be greater than zero and at most
``MAX_DURATION`` (3650 days, about 10 years), so zero, negative and absurd values (``999999999999999999999w``,
which would overflow ``timedelta``) are rejected here with one line rather than by each caller. Texts longer
than ``MAX_TEXT`` (100 characters) are refused before any parsing. Fields with tighter bounds (the poll interval,
for example) check them on top of these.

``DurationField`` is the pydantic type for such fields. It serializes, in both python and JSON mode, to the
compact readable form (``"1h30m"``, ``"2d"``, ``"1.5s"``), which parses back to the same duration, so a dumped
spec is valid YAML input again and ``yaml.safe_dump`` never meets a ``Duration`` object.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import pendulum
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

__all__ = ["MAX_DURATION", "MAX_TEXT", "DurationField", "parse_duration", "spec_duration"]

MAX_DURATION = timedelta(days=3650)
"""The longest duration a drill may give (about 10 years): far beyond any real window, far below overflow."""
MAX_TEXT = 100
"""The longest duration text read at all."""

_HINT = "use e.g. 6h, 90m, 2d or PT6H"
_TOO_LONG = "must be at most 3650d, about 10 years"

_UNIT_SECONDS: dict[str, int] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_ALIASES: dict[str, str] = {
    **{a: "w" for a in ("w", "wk", "wks", "week", "weeks")},
    **{a: "d" for a in ("d", "day", "days")},
    **{a: "h" for a in ("h", "hr", "hrs", "hour", "hours")},
    **{a: "m" for a in ("m", "min", "mins", "minute", "minutes")},
    **{a: "s" for a in ("s", "sec", "secs", "second", "seconds")},
}
_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_PART = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*")
_PLAIN_NUMBER = re.compile(rf"[+-]?(?:{_NUMBER})")
_ISO = re.compile(
    rf"""p
    (?:(?P<y>{_NUMBER})y)?
    (?:(?P<mo>{_NUMBER})m)?
    (?:(?P<w>{_NUMBER})w)?
    (?:(?P<d>{_NUMBER})d)?
    (?:t
        (?:(?P<h>{_NUMBER})h)?
        (?:(?P<mi>{_NUMBER})m)?
        (?:(?P<s>{_NUMBER})s)?
    )?""",
    re.VERBOSE,
)


def _invalid(value: object, why: str = _HINT) -> ValueError:
    return ValueError(f"invalid duration {_show(value)} ({why})")


def _show(value: object) -> str:
    if isinstance(value, timedelta):
        return repr(str(value))
    if isinstance(value, int) and value.bit_length() > 128:  # repr() of a huge int is slow, then refused
        return "a very large number"
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + ("...'" if isinstance(value, str) else "...")


def _from_seconds(seconds: Decimal, original: object) -> pendulum.Duration:
    if seconds <= 0:
        raise _invalid(original, "must be greater than zero")
    if seconds > int(MAX_DURATION.total_seconds()):  # before int() and timedelta, which would overflow
        raise _invalid(original, _TOO_LONG)
    whole = int(seconds)
    micros = int(((seconds - whole) * 1_000_000).to_integral_value())
    if whole == 0 and micros == 0:  # under half a microsecond would silently become zero
        raise _invalid(original, "must be greater than zero")
    return pendulum.duration(seconds=whole, microseconds=micros)


def _parse_compact(text: str, original: object) -> pendulum.Duration:
    pos, total, last_rank = 0, Decimal(0), -1
    order = list(_UNIT_SECONDS)
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or match.end() == pos:
            raise _invalid(original)
        number, unit_word = match.groups()
        unit = _UNIT_ALIASES.get(unit_word)
        if unit is None:
            raise _invalid(original, f"unknown unit {unit_word!r}; {_HINT}")
        rank = order.index(unit)
        if rank <= last_rank:
            raise _invalid(original, "give each unit once, largest first, e.g. 1h30m")
        last_rank = rank
        total += Decimal(number) * _UNIT_SECONDS[unit]
        pos = match.end()
    return _from_seconds(total, original)


def _parse_iso(text: str, original: object) -> pendulum.Duration:
    match = _ISO.fullmatch(text)
    if match is None or not any(match.groupdict().values()) or text.endswith("t"):
        raise _invalid(original)
    parts = match.groupdict()
    if parts["y"] or parts["mo"]:
        raise _invalid(original, "years and months are not fixed lengths; use days or weeks")
    scale = {"w": 604800, "d": 86400, "h": 3600, "mi": 60, "s": 1}
    total = sum((Decimal(parts[k]) * v for k, v in scale.items() if parts[k]), Decimal(0))
    return _from_seconds(total, original)


def parse_duration(value: str | int | float | timedelta) -> pendulum.Duration:
    """Parse one duration in the drill-file grammar (see module docstring); raise ``ValueError`` if invalid.

    The error text is one short line (``invalid duration 'abc' (use e.g. 6h, 90m, 2d or PT6H)``) because it
    ends up verbatim in spec validation errors.
    """
    if isinstance(value, bool):  # bool is an int subclass; `timeout: yes` is a mistake, not 1 second
        raise _invalid(value)
    if isinstance(value, timedelta):
        if isinstance(value, pendulum.Duration) and (value.years or value.months):
            raise _invalid(value, "years and months are not fixed lengths; use days or weeks")
        if value <= timedelta(0):
            raise _invalid(value, "must be greater than zero")
        if value > MAX_DURATION:
            raise _invalid(value, _TOO_LONG)
        return pendulum.duration(days=value.days, seconds=value.seconds, microseconds=value.microseconds)
    if isinstance(value, int):
        return _from_seconds(Decimal(value), value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(value)
        return _from_seconds(Decimal(repr(value)), value)
    if not isinstance(value, str):
        raise _invalid(value, f"expected a string or a number; {_HINT}")
    text = value.strip().lower()
    if not text:
        raise _invalid(value)
    if len(text) > MAX_TEXT:
        raise _invalid(value, f"longer than {MAX_TEXT} characters")
    try:
        if _PLAIN_NUMBER.fullmatch(text):
            return _from_seconds(Decimal(text), value)
        if text.startswith("-"):
            raise _invalid(value, "must be greater than zero")
        if text.startswith("p"):
            return _parse_iso(text, value)
        return _parse_compact(text, value)
    except InvalidOperation:  # pragma: no cover - the regexes only let decimal literals through
        raise _invalid(value) from None


def spec_duration(duration: timedelta) -> str:
    """Compact readable form that ``parse_duration`` reads back exactly: ``1d2h``, ``90s`` -> ``1m30s``."""
    micros = (duration.days * 86400 + duration.seconds) * 1_000_000 + duration.microseconds
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    seconds, frac = divmod(micros, 1_000_000)
    parts: list[str] = []
    for unit in ("d", "h", "m"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    if seconds or frac:
        parts.append(f"{seconds}.{frac:06d}".rstrip("0") + "s" if frac else f"{seconds}s")
    return sign + "".join(parts)


def _validate(value: Any) -> pendulum.Duration:
    return parse_duration(value)


def _serialize(value: Any) -> str:
    # Also called on raw defaults (e.g. "10s") when pydantic writes a JSON schema.
    return spec_duration(value if isinstance(value, timedelta) else parse_duration(value))


DurationField = Annotated[
    pendulum.Duration,
    PlainValidator(_validate),
    PlainSerializer(_serialize, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "examples": ["6h", "1h30m", "2d", "PT6H"]},
                {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
            ]
        }
    ),
]
"""A positive duration field: input per ``parse_duration``, output the compact string of ``spec_duration``."""
