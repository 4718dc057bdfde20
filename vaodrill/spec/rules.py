"""The restore-point rules as data: each YAML form parsed, bounded and described (see
:mod:`vaodrill.spec.restore_points` for the grammar and how a rule becomes an instant)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from vaodrill.spec.durations import DurationField, spec_duration
from vaodrill.spec.strict import StrictModel, show_value, validation_problem
from vaodrill.spec.zones import check_timezone

__all__ = [
    "AT_YEARS",
    "MAX_SEED",
    "RULE_KEYS",
    "AgoRule",
    "AtRule",
    "BaseRule",
    "LastRule",
    "LatestRule",
    "RandomWithinRule",
    "RestorePointRule",
    "StartOfRule",
    "describe",
    "parse_rule",
]

RULE_KEYS: tuple[str, ...] = ("latest", "ago", "at", "last", "start_of", "random_within")
AT_YEARS = range(1970, 2200)
"""Years an ``at`` rule may name: no restore point is older, and later is surely a typo."""
MAX_SEED = 2**63 - 1
"""Largest ``random_within`` seed: fits a signed 64-bit integer in any report consumer."""
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES: dict[str, int | None] = {
    **{name: i for i, name in enumerate(_WEEKDAYS)},
    **{name[:3]: i for i, name in enumerate(_WEEKDAYS)},
    "daily": None,
    "day": None,
}


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
                "seed_invalid", f"must be a whole number from 0 to 2**63-1, got {show_value(value)}"
            )
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
