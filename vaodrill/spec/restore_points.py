"""Restore-point rules: which point in time a drill asks VAO to fail over to, as data plus pure functions.

The project always sends VAO an explicit ``restorePointRule.date`` (VAO then takes the restore point nearest
before it), so a report can say which moment was asked for. A rule turns the drill's "now" into that moment.

YAML grammar (one rule; a plain string or a mapping with exactly one rule key)::

    latest                                   # now
    {ago: 6h}                                # now - 6h of elapsed time (durations: see vaodrill.spec.durations)
    {at: "2026-11-01T02:00:00+01:00"}        # an exact instant: ISO 8601 with a UTC offset (or Z)
    {at: "2026-11-01T02:00 Europe/Berlin"}   # a wall time in an IANA zone, after one space
    {at: "2026-11-01T02:00", tz: Europe/Berlin}  # the same, zone as its own key
    {at: "2026-11-01T02:00"}                 # a wall time in the drill's zone
    {last: "sunday 02:00"}                   # most recent such weekday+time in the drill's zone, <= now
    {last: "daily 02:00"}                    # ... any day (also "day 02:00"); seconds optional (02:00:30)
    {start_of: week}                         # day | week (ISO: Monday) | month, in the drill's zone
    {random_within: 7d}                      # a random second in [now - 7d, now]; seed drawn and reported
    {random_within: 7d, seed: 42}            # ... reproducibly (with the same now)

Weekday names are full or three letters, case-insensitive. An offset and a zone together in ``at`` are
rejected (give one). Unquoted YAML timestamps (``at: 2026-11-01 02:00:00``) are accepted as well.

Time zones and daylight saving (the behaviour every rule shares)
-----------------------------------------------------------------
* Nothing ever reads the system's local zone. ``now`` must be timezone-aware; wall times are read in the
  rule's zone (``at`` with a zone), else the drill's zone (``drill_tz``, default UTC).
* A wall time that does not exist (spring-forward gap, e.g. 02:30 on 2026-03-29 in Europe/Berlin) moves forward
  by the length of the gap: 02:30 becomes 03:30 CEST, the same instant as 02:30 read with the offset in force
  before the change. This is PEP 495 ``fold=0`` semantics (``zoneinfo``), and pendulum's default.
* A wall time that occurs twice (fall-back, e.g. 02:30 on 2026-10-25 in Europe/Berlin) means its EARLIER
  occurrence (02:30 CEST = 00:30 UTC), so the restore point asked for is never later than the user meant.
  (pendulum's own default, ``fold=1``, would take the later one; this module does not rely on it.)
* ``last`` never returns an instant after now: if this week's (or today's) occurrence, after the rules above,
  is still ahead, it takes the previous one. ``start_of`` is the first instant of the local day, Monday or
  first of the month (midnight, or the end of the gap where midnight does not exist).
* ``ago`` and ``random_within`` are elapsed time, not wall-clock arithmetic: ``ago: 1d`` across a DST change
  is 24 hours, not "the same wall time yesterday". Use ``last: daily HH:MM`` for the latter.
* ``at`` may name a moment after now; it is kept (VAO would then use its latest point) and a note says so.
* Resolved instants are cut to whole seconds (towards the past), as the date sent to VAO has no fraction.

Bounds (so hostile or mistyped input is one clear error, never an ``OverflowError``)
------------------------------------------------------------------------------------
* ``at`` must lie in the years ``AT_YEARS`` (1970 to 2199); durations (``ago``, ``random_within``) are at most
  10 years (``vaodrill.spec.durations.MAX_DURATION``); a ``seed`` is a whole number from 0 to ``MAX_SEED`` (2**63-1).
* ``now`` and every instant handed to these functions must lie in the years 1900 to 2300, which keeps all the
  arithmetic above (10 years, zone offsets) far from ``datetime``'s limits.
* Time zone names longer than 100 characters are unknown without further ado.

The date sent to VAO (``to_server_wall_time``)
----------------------------------------------
``restorePointRule.date`` has no offset and is read in the VAO server's zone, so the UTC instant is turned into
the server's wall time ``YYYY-MM-DDTHH:MM:SS``. During the server's repeated hour that string is ambiguous:
a server reading it as the earlier occurrence (like ``zoneinfo`` ``fold=0``, and the simulator) gets what was
meant or up to an hour earlier; a .NET server usually assumes standard time, i.e. the later occurrence, and may
pick a point up to an hour later than meant. The string cannot carry the difference; ``restore_point_date``
adds a note to the result so the report shows it, and ``is_ambiguous_wall_time`` tells callers.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import random
import re
import secrets
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from typing import Annotated, Any, ClassVar, Literal

import pendulum
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from vaodrill.spec.durations import DurationField, spec_duration

__all__ = [
    "AT_YEARS",
    "MAX_SEED",
    "RULE_KEYS",
    "UTC_ZONES",
    "AgoRule",
    "AtRule",
    "BaseRule",
    "LastRule",
    "LatestRule",
    "RandomWithinRule",
    "Resolved",
    "RestorePointRule",
    "StartOfRule",
    "StrictModel",
    "check_timezone",
    "describe",
    "is_ambiguous_wall_time",
    "parse_rule",
    "resolve",
    "restore_point_date",
    "show_value",
    "timezone_warning",
    "to_server_wall_time",
    "validation_problem",
]

RULE_KEYS: tuple[str, ...] = ("latest", "ago", "at", "last", "start_of", "random_within")
AT_YEARS = range(1970, 2200)
"""Years an ``at`` rule may name: no restore point is older, and later is surely a typo."""
MAX_SEED = 2**63 - 1
"""Largest ``random_within`` seed: fits a signed 64-bit integer in any report consumer."""
_INSTANT_YEARS = range(1900, 2301)
_MAX_ZONE_NAME = 100
_UTC = dt.UTC
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES: dict[str, int | None] = {
    **{name: i for i, name in enumerate(_WEEKDAYS)},
    **{name[:3]: i for i, name in enumerate(_WEEKDAYS)},
    "daily": None,
    "day": None,
}


# --------------------------------------------------------------------------------------------- time zones


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


#: Zone names that mean UTC: a drill read in one of them sends the same wall time whatever the server's zone.
UTC_ZONES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"})


def timezone_warning(drill_zone: str, server_zone: str) -> str | None:
    """The warning when the VAO server's zone is left at UTC while the drill reads its rules in another zone.

    A date is sent in the server's wall time: if that server is not on UTC, every date is off by its offset,
    and nothing else would say so. ``run``, ``validate``, the report and ``doctor`` all say this sentence.
    ``VAO_TIMEZONE`` in the environment, even ``UTC``, is a zone chosen, not assumed.
    """
    if server_zone not in UTC_ZONES or drill_zone in UTC_ZONES or os.environ.get("VAO_TIMEZONE"):
        return None
    return (f"VAO server time zone not set: UTC assumed, while the drill reads its rules in {drill_zone}; unless "
            "the VAO server's clock runs on UTC, its restore-point dates are sent in the wrong wall time: set "
            f"VAO_TIMEZONE or --vao-timezone (or the block's server_timezone) to the server's zone, e.g. {drill_zone}")


def check_timezone(name: object) -> str:
    """Return the canonical IANA name of ``name`` or raise ``ValueError`` (with a did-you-mean hint).

    Offsets such as ``+02:00`` and "local" are refused on purpose: a drill's zone must follow DST like its
    people do, and the machine running the drill must not change its meaning.
    """
    if isinstance(name, str) and name.strip() and len(name) <= _MAX_ZONE_NAME:
        try:
            return pendulum.timezone(name.strip()).name
        except (ValueError, KeyError, OSError):
            pass
    hint = ""
    if isinstance(name, str) and len(name) <= _MAX_ZONE_NAME:
        close = difflib.get_close_matches(name.strip(), _zone_names(), n=1, cutoff=0.8)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    raise ValueError(f"unknown time zone {show_value(name)}{hint}")


@lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo:
    return pendulum.timezone(name)  # a zoneinfo.ZoneInfo subclass: PEP 495 fold semantics


def _utc(value: object, what: str = "now") -> dt.datetime:
    """A plain stdlib UTC datetime from any aware datetime (pendulum, Prefect's subclass, stdlib).

    Only stdlib attributes are touched, so Prefect's deprecated pendulum methods are never called.
    """
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{what} must be a timezone-aware datetime, got {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"{what} must be timezone-aware (got a naive datetime; the local zone is never assumed)")
    if value.year not in _INSTANT_YEARS:
        raise ValueError(f"{what} {value.isoformat()} is outside the supported years 1900 to 2300")
    naive = dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    return (naive - offset).replace(tzinfo=_UTC)


def _pendulum_utc(value: dt.datetime) -> pendulum.DateTime:
    return pendulum.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tz="UTC"
    )


def _local_wall(instant_utc: dt.datetime, zone: str) -> dt.datetime:
    return instant_utc.astimezone(_zone(zone)).replace(tzinfo=None)


def _localize(wall: dt.datetime, zone: str) -> tuple[dt.datetime, str | None]:
    """UTC instant of a naive wall time in ``zone``: gaps move forward, repeated times take the earlier one."""
    tz = _zone(zone)
    first = wall.replace(tzinfo=tz, fold=0)
    instant = _utc(first, "wall time")
    back = _local_wall(instant, zone)
    when = f"{wall:%Y-%m-%d %H:%M:%S}"
    if back != wall:
        return instant, f"{when} does not exist in {zone} (clocks skip ahead); used {back:%H:%M:%S}"
    if wall.replace(tzinfo=tz, fold=1).utcoffset() != first.utcoffset():
        return instant, f"{when} occurs twice in {zone}; used the earlier one ({first:%H:%M:%S%z})"
    return instant, None


def is_ambiguous_wall_time(instant: dt.datetime, server_tz: str) -> bool:
    """True when ``instant``'s wall time in ``server_tz`` occurs twice, so the offset-less date is ambiguous."""
    zone = check_timezone(server_tz)
    wall = _local_wall(_utc(instant, "instant"), zone)
    tz = _zone(zone)
    return wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset()


def to_server_wall_time(instant: dt.datetime, server_tz: str) -> str:
    """The contract's ``restorePointRule.date``: ``instant`` as ``YYYY-MM-DDTHH:MM:SS`` in the server's zone.

    No offset (VAO reads it in its own zone), no fraction (cut, never rounded up). See the module docstring
    about the server's repeated hour.
    """
    wall = _local_wall(_utc(instant, "instant"), check_timezone(server_tz))
    return wall.isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------ model support


def show_value(value: object) -> str:
    """A value as a YAML user would recognise it, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 200:  # str() of a huge int is slow, then refused
        return "a very large number"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:56] + "..."


def _did_you_mean(word: str, choices: list[str]) -> str:
    if len(word) > 100:  # no key is that long; spare difflib the work
        return ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@cache
def _keys_of(model: type[BaseModel]) -> tuple[frozenset[str], list[str]]:
    """A model's accepted keys (names and aliases) and the ones to suggest; cached, as pydantic's lookup is slow."""
    fields = model.model_fields
    known = frozenset(fields) | {f.alias for f in fields.values() if f.alias}
    return known, sorted(f.alias or n for n, f in fields.items())


class StrictModel(BaseModel):
    """Frozen, no unknown keys, and an unknown key is reported with a did-you-mean hint.

    pydantic's own ``extra="forbid"`` error cannot suggest the right key; this check runs first so it can.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known, choices = _keys_of(cls)
            unknown = [k for k in data if k not in known]
            if unknown:
                key = unknown[0]
                hint = _did_you_mean(str(key), choices)
                more = f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else ""
                raise PydanticCustomError(
                    "unknown_key", f"unknown key {show_value(key)}{hint}{more}", {"key": str(key)})
        return data


def validation_problem(exc: ValidationError) -> tuple[str, str]:
    """``(location, problem)`` for the first error of ``exc``, as one line; ``(+N more)`` if there are more.

    Location is ``plans[2].restore_point`` style ("" for the top level). Union tags pydantic puts into
    locations (``restore_point.ago.ago``) are dropped. Shared by ``parse_rule`` and ``vaodrill.spec.model``.
    """
    errors = exc.errors(include_url=False)
    # A list whose only item failed also reports "too short": an echo of the item's error, not a second one.
    errors = [
        e
        for e in errors
        if not (e["type"] == "too_short" and any(o["loc"][: len(e["loc"])] == e["loc"] != o["loc"] for o in errors))
    ] or errors
    first = errors[0]
    loc = _location(first["loc"])
    message = _message(first)
    if first["type"] == "missing":
        loc, message = _location(first["loc"][:-1]), f"missing key {str(first['loc'][-1])!r}"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more)"
    return loc, message


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("rule:"):  # "rule:ago" etc. are tags of the RestorePointRule union
            out += f".{part}" if out else part
    return out


def _message(error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"expected {ctx['expected']}, got {show_value(value)}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
        limit = next(iter(ctx.values()))
        return f"must be {bound[kind]} {limit}, got {show_value(value)}"
    if kind in {"int_type", "int_parsing", "int_parsing_size", "int_from_float"}:
        return f"expected a whole number, got {show_value(value)}"
    if kind in {"string_type"}:
        return f"expected a string, got {show_value(value)} (quote it in YAML)"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"expected a mapping, got {show_value(value)}"
    if kind in {"list_type", "tuple_type"}:
        return f"expected a list, got {show_value(value)}"
    if kind == "too_short":
        return "must not be empty"
    msg = error["msg"]
    msg = msg.removeprefix("Value error, ").replace("Input should be", "expected")
    return msg[:1].lower() + msg[1:]


# ------------------------------------------------------------------------------------------------ rules


class BaseRule(StrictModel):
    """Common base of the rule models; ``str(rule)`` is ``describe(rule)``."""

    key: ClassVar[str]

    def describe(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.describe()


class LatestRule(BaseRule):
    """``latest``: the drill's now (sent as an explicit date, so the report names it)."""

    key: ClassVar[str] = "latest"

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {} if isinstance(data, str) and data.strip().lower() == "latest" else data

    @model_serializer
    def _dump(self) -> str:
        return "latest"

    def describe(self) -> str:
        return "latest"


class AgoRule(BaseRule):
    """``{ago: 6h}``: now minus an elapsed duration."""

    key: ClassVar[str] = "ago"
    ago: DurationField

    @model_serializer
    def _dump(self) -> dict[str, str]:
        return {"ago": spec_duration(self.ago)}

    def describe(self) -> str:
        return f"ago {spec_duration(self.ago)}"


_AT_HINT = "use ISO 8601, e.g. 2026-11-01T02:00:00+01:00 or 2026-11-01T02:00 Europe/Berlin"


class AtRule(BaseRule):
    """``{at: ...}``: an instant (with offset) or a wall time (in ``tz``, else in the drill's zone).

    ``at`` holds a stdlib datetime: aware for an instant, naive for a wall time.
    """

    key: ClassVar[str] = "at"
    at: dt.datetime
    tz: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_zone(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("at"), str):
            *stamp, last = data["at"].split()
            if stamp and last[:1].isalpha() and last.upper() != "Z":
                if data.get("tz") is not None:
                    raise PydanticCustomError("at_zone_twice", "give the time zone once: in 'at' or as 'tz'")
                try:
                    zone = check_timezone(last)
                except ValueError as exc:
                    raise PydanticCustomError("at_zone_invalid", f"at: {exc}") from None
                return {**data, "at": " ".join(stamp), "tz": zone}
        return data

    @field_validator("at", mode="before")
    @classmethod
    def _parse_at(cls, value: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, dt.date):
            parsed = dt.datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value.strip())
            except ValueError:
                raise PydanticCustomError("at_invalid", f"invalid instant {show_value(value)} ({_AT_HINT})") from None
        else:
            raise PydanticCustomError("at_invalid", f"invalid instant {show_value(value)} ({_AT_HINT})")
        if parsed.year not in AT_YEARS:
            raise PydanticCustomError(
                "at_range",
                f"{show_value(value)} is outside the supported years {AT_YEARS[0]} to {AT_YEARS[-1]}",
            )
        offset = parsed.utcoffset()
        fields = (parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second)
        if offset is None:
            return dt.datetime(*fields, parsed.microsecond)
        return dt.datetime(*fields, parsed.microsecond, tzinfo=dt.timezone(offset))

    @field_validator("tz", mode="before")
    @classmethod
    def _check_tz(cls, value: Any) -> Any:
        return None if value is None else check_timezone(value)

    @model_validator(mode="after")
    def _offset_or_zone(self) -> AtRule:
        if self.tz is not None and self.at.utcoffset() is not None:
            raise ValueError("'at' has both a UTC offset and a time zone; give one")
        return self

    @property
    def text(self) -> str:
        """The ``at`` value as written back to YAML (ISO, plus the zone after a space if one was given)."""
        stamp = self.at.isoformat()
        return f"{stamp} {self.tz}" if self.tz else stamp

    @model_serializer
    def _dump(self) -> dict[str, str]:
        return {"at": self.text}

    def describe(self) -> str:
        return f"at {self.text}"


_LAST_RE = re.compile(r"\s*([a-z]+)\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", re.IGNORECASE)


def _parse_last(text: str) -> tuple[int | None, dt.time]:
    match = _LAST_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid {show_value(text)} (expected '<weekday> HH:MM', e.g. 'sunday 02:00')")
    day, hour, minute, second = match.groups()
    if day.lower() not in _DAY_NAMES:
        names = ", ".join(_WEEKDAYS)
        raise ValueError(f"unknown day {day!r} (expected one of {names}, or daily)")
    try:
        return _DAY_NAMES[day.lower()], dt.time(int(hour), int(minute), int(second or 0))
    except ValueError:
        raise ValueError(f"invalid time of day in {show_value(text)}") from None


class LastRule(BaseRule):
    """``{last: "sunday 02:00"}``: the most recent such weekday and wall time at or before now.

    ``last`` is stored normalised (``"sunday 02:00"``, ``"daily 02:00"``), so equal rules compare equal.
    """

    key: ClassVar[str] = "last"
    last: str

    @field_validator("last", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise PydanticCustomError(
                "last_invalid", f"expected a string like 'sunday 02:00', got {show_value(value)} (quote it in YAML)"
            )
        weekday, time = _parse_last(value)
        day = "daily" if weekday is None else _WEEKDAYS[weekday]
        clock = time.strftime("%H:%M:%S" if time.second else "%H:%M")
        return f"{day} {clock}"

    @property
    def weekday(self) -> int | None:
        """0 = Monday ... 6 = Sunday; None for daily."""
        return _parse_last(self.last)[0]

    @property
    def time(self) -> dt.time:
        return _parse_last(self.last)[1]

    def describe(self) -> str:
        return f"last {self.last}"


class StartOfRule(BaseRule):
    """``{start_of: day|week|month}``: the first instant of the current local day, ISO week or month."""

    key: ClassVar[str] = "start_of"
    start_of: Literal["day", "week", "month"]

    @field_validator("start_of", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in {"day", "week", "month"}:
            return value.strip().lower()
        raise PydanticCustomError("start_of_invalid", f"expected day, week or month, got {show_value(value)}")

    def describe(self) -> str:
        return f"start of {self.start_of}"


class RandomWithinRule(BaseRule):
    """``{random_within: 7d, seed: 42}``: a random whole second in ``[now - window, now]``.

    Without a seed one is drawn at resolution and returned in ``Resolved.seed``; that seed and the same now
    give the same instant again.
    """

    key: ClassVar[str] = "random_within"
    random_within: DurationField
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> Any:
        if isinstance(value, bool | float) or (isinstance(value, int) and not 0 <= value <= MAX_SEED):
            raise PydanticCustomError(
                "seed_invalid", f"must be a whole number from 0 to 2**63-1, got {show_value(value)}")
        return value

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"random_within": spec_duration(self.random_within)}
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def describe(self) -> str:
        seed = f" seed {self.seed}" if self.seed is not None else ""
        return f"random within {spec_duration(self.random_within)}{seed}"


_RULE_CLASSES: dict[str, type[BaseRule]] = {
    cls.key: cls for cls in (LatestRule, AgoRule, AtRule, LastRule, StartOfRule, RandomWithinRule)
}
_EXPECTED = f"expected one of {', '.join(RULE_KEYS)}"


def _rule_tag(value: Any) -> str | None:
    if isinstance(value, BaseRule):
        return f"rule:{value.key}"
    if isinstance(value, str):
        return "rule:latest"
    if isinstance(value, Mapping):
        for key in RULE_KEYS[1:]:
            if key in value:
                return f"rule:{key}"
    return None


def _check_rule_shape(value: Any) -> Any:
    """One clear message for the shapes the tagged union cannot explain (unknown key, two rules, ...)."""
    if isinstance(value, BaseRule):
        return value
    if isinstance(value, str):
        if value.strip().lower() == "latest":
            return value
        raise PydanticCustomError(
            "rule_invalid",
            f"unknown restore point rule {show_value(value)} (expected 'latest' or a mapping such as {{ago: 6h}})",
        )
    if not isinstance(value, Mapping):
        raise PydanticCustomError(
            "rule_invalid", f"expected 'latest' or a mapping such as {{ago: 6h}}, got {show_value(value)}"
        )
    if "latest" in value:
        raise PydanticCustomError("rule_invalid", "write latest as a plain string: restore_point: latest")
    keys = [k for k in value if k in RULE_KEYS]
    if len(keys) > 1:
        names = " and ".join(repr(k) for k in keys)
        raise PydanticCustomError("rule_invalid", f"one rule per restore point, got {names}")
    if not keys:
        if not value:
            raise PydanticCustomError("rule_invalid", f"empty rule ({_EXPECTED})")
        key = str(next(iter(value)))
        raise PydanticCustomError("rule_invalid", f"unknown rule key {key!r} ({_EXPECTED})")
    return value


RestorePointRule = Annotated[
    Annotated[LatestRule, Tag("rule:latest")]
    | Annotated[AgoRule, Tag("rule:ago")]
    | Annotated[AtRule, Tag("rule:at")]
    | Annotated[LastRule, Tag("rule:last")]
    | Annotated[StartOfRule, Tag("rule:start_of")]
    | Annotated[RandomWithinRule, Tag("rule:random_within")],
    Discriminator(_rule_tag),
    BeforeValidator(_check_rule_shape),
]
"""Pydantic field type for one rule: ``latest`` or a one-key mapping (see the module docstring)."""

_RULE_ADAPTER: TypeAdapter[BaseRule] = TypeAdapter(RestorePointRule)


def parse_rule(value: object) -> BaseRule:
    """Validate one rule from YAML-shaped data (``"latest"``, ``{"ago": "6h"}``); ``ValueError`` on error."""
    if isinstance(value, BaseRule):
        return value
    try:
        return _RULE_ADAPTER.validate_python(value)
    except ValidationError as exc:
        where, problem = validation_problem(exc)
        raise ValueError(f"{where}: {problem}" if where else problem) from None


def describe(rule: BaseRule) -> str:
    """Short human form for reports: ``latest``, ``ago 6h``, ``last sunday 02:00``, ``start of week``..."""
    return rule.describe()


# ------------------------------------------------------------------------------------------- resolution


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a rule resolved to, for the Run call and the report.

    ``instant`` is UTC and whole seconds; ``rule`` is ``describe(rule)``; ``seed`` is the seed a
    ``random_within`` rule used (drawn or given), else None; ``notes`` explain DST adjustments and the like.
    """

    instant: pendulum.DateTime
    rule: str
    seed: int | None = None
    notes: tuple[str, ...] = ()


def _draw_seed() -> int:
    return secrets.randbelow(2**31)


def resolve(
    rule: BaseRule | str | Mapping[str, Any],
    *,
    now: dt.datetime,
    drill_tz: str = "UTC",
    seed: int | None = None,
) -> Resolved:
    """Turn ``rule`` into a UTC instant at the drill's ``now`` (aware; any zone), reading wall times in ``drill_tz``.

    ``seed`` replays a ``random_within`` rule (it wins over the rule's own seed); other rules ignore it.
    """
    rule = parse_rule(rule)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, got {show_value(seed)}")
    zone = check_timezone(drill_tz)
    now_utc = _utc(now)
    notes: list[str] = []
    used_seed: int | None = None

    def local(wall: dt.datetime, in_zone: str = zone) -> dt.datetime:
        instant, note = _localize(wall, in_zone)
        if note:
            notes.append(note)
        return instant

    if isinstance(rule, LatestRule):
        instant = now_utc
    elif isinstance(rule, AgoRule):
        instant = now_utc - rule.ago
    elif isinstance(rule, AtRule):
        instant = rule.at.astimezone(_UTC) if rule.at.tzinfo else local(rule.at, rule.tz or zone)
        if instant > now_utc:
            notes.append(f"{rule.text} is after now; VAO will use its latest restore point")
    elif isinstance(rule, LastRule):
        instant = _last(rule, now_utc, zone, notes)
    elif isinstance(rule, StartOfRule):
        today = _local_wall(now_utc, zone).date()
        if rule.start_of == "week":
            today -= dt.timedelta(days=today.weekday())
        elif rule.start_of == "month":
            today = today.replace(day=1)
        instant = local(dt.datetime.combine(today, dt.time()))
    elif isinstance(rule, RandomWithinRule):
        used_seed = seed if seed is not None else rule.seed if rule.seed is not None else _draw_seed()
        span = int(rule.random_within.total_seconds())
        instant = now_utc - dt.timedelta(seconds=random.Random(used_seed).randint(0, span))
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"not a restore point rule: {rule!r}")

    instant = instant.replace(microsecond=0)
    return Resolved(_pendulum_utc(instant), rule.describe(), used_seed, tuple(notes))


def _last(rule: LastRule, now_utc: dt.datetime, zone: str, notes: list[str]) -> dt.datetime:
    weekday, time = rule.weekday, rule.time
    day = _local_wall(now_utc, zone).date()
    if weekday is not None:
        day -= dt.timedelta(days=(day.weekday() - weekday) % 7)
    instant, note = _localize(dt.datetime.combine(day, time), zone)
    if instant > now_utc:  # today's/this week's is still ahead (possibly only because a gap moved it)
        day -= dt.timedelta(days=1 if weekday is None else 7)
        instant, note = _localize(dt.datetime.combine(day, time), zone)
    if note:
        notes.append(note)
    return instant


def restore_point_date(
    rule: BaseRule | str | Mapping[str, Any],
    *,
    now: dt.datetime,
    drill_tz: str = "UTC",
    server_tz: str,
    seed: int | None = None,
) -> tuple[str, Resolved]:
    """``resolve`` plus the server wall time to send as ``restorePointRule.date``.

    If that wall time is ambiguous on the server (its repeated hour), a note in ``Resolved.notes`` says so.
    """
    resolved = resolve(rule, now=now, drill_tz=drill_tz, seed=seed)
    server = check_timezone(server_tz)
    date = to_server_wall_time(resolved.instant, server)
    if is_ambiguous_wall_time(resolved.instant, server):
        note = (
            f"server wall time {date} occurs twice in {server}; the server may read it as either occurrence "
            f"(meant {resolved.instant.isoformat()})"
        )
        resolved = replace(resolved, notes=(*resolved.notes, note))
    return date, resolved
