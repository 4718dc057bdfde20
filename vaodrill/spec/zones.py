"""Time zones: names checked the same everywhere, wall times read with one rule, the date VAO is sent.

The rules (gaps move forward, a repeated hour means its earlier occurrence, the local zone is never read) are
described in :mod:`vaodrill.spec.restore_points`.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from functools import lru_cache

import pendulum

from vaodrill.spec.strict import did_you_mean, show_value

__all__ = [
    "UTC_ZONES",
    "as_utc",
    "check_timezone",
    "is_ambiguous_wall_time",
    "local_wall",
    "localize",
    "pendulum_utc",
    "timezone_warning",
    "to_server_wall_time",
    "zone_info",
]

_INSTANT_YEARS = range(1900, 2301)
_MAX_ZONE_NAME = 100
_UTC = dt.UTC


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
    return (
        f"VAO server time zone not set: UTC assumed, while the drill reads its rules in {drill_zone}; unless "
        "the VAO server's clock runs on UTC, its restore-point dates are sent in the wrong wall time: set "
        f"VAO_TIMEZONE or --vao-timezone (or the block's server_timezone) to the server's zone, e.g. {drill_zone}"
    )


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
    hint = did_you_mean(name.strip(), _zone_names(), cutoff=0.8) if isinstance(name, str) else ""
    raise ValueError(f"unknown time zone {show_value(name)}{hint}")


@lru_cache(maxsize=64)
def zone_info(name: str) -> dt.tzinfo:
    return pendulum.timezone(name)  # a zoneinfo.ZoneInfo subclass: PEP 495 fold semantics


def as_utc(value: object, what: str = "now") -> dt.datetime:
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


def pendulum_utc(value: dt.datetime) -> pendulum.DateTime:
    return pendulum.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tz="UTC"
    )


def local_wall(instant_utc: dt.datetime, zone: str) -> dt.datetime:
    return instant_utc.astimezone(zone_info(zone)).replace(tzinfo=None)


def localize(wall: dt.datetime, zone: str) -> tuple[dt.datetime, str | None]:
    """UTC instant of a naive wall time in ``zone``: gaps move forward, repeated times take the earlier one."""
    tz = zone_info(zone)
    first = wall.replace(tzinfo=tz, fold=0)
    instant = as_utc(first, "wall time")
    back = local_wall(instant, zone)
    when = f"{wall:%Y-%m-%d %H:%M:%S}"
    if back != wall:
        return instant, f"{when} does not exist in {zone} (clocks skip ahead); used {back:%H:%M:%S}"
    if wall.replace(tzinfo=tz, fold=1).utcoffset() != first.utcoffset():
        return instant, f"{when} occurs twice in {zone}; used the earlier one ({first:%H:%M:%S%z})"
    return instant, None


def is_ambiguous_wall_time(instant: dt.datetime, server_tz: str) -> bool:
    """True when ``instant``'s wall time in ``server_tz`` occurs twice, so the offset-less date is ambiguous."""
    zone = check_timezone(server_tz)
    wall = local_wall(as_utc(instant, "instant"), zone)
    tz = zone_info(zone)
    return wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset()


def to_server_wall_time(instant: dt.datetime, server_tz: str) -> str:
    """The contract's ``restorePointRule.date``: ``instant`` as ``YYYY-MM-DDTHH:MM:SS`` in the server's zone.

    No offset (VAO reads it in its own zone), no fraction (cut, never rounded up). See the module docstring
    about the server's repeated hour.
    """
    wall = local_wall(as_utc(instant, "instant"), check_timezone(server_tz))
    return wall.isoformat(timespec="seconds")
