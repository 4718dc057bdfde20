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
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pendulum

from vaodrill.spec.rules import (
    MAX_SEED,
    AgoRule,
    AtRule,
    BaseRule,
    LastRule,
    LatestRule,
    RandomWithinRule,
    StartOfRule,
    parse_rule,
)
from vaodrill.spec.strict import show_value
from vaodrill.spec.zones import (
    as_utc,
    check_timezone,
    is_ambiguous_wall_time,
    local_wall,
    localize,
    pendulum_utc,
    to_server_wall_time,
)

__all__ = ["Resolved", "resolve", "restore_point_date"]

_UTC = dt.UTC


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
    now_utc = as_utc(now)
    notes: list[str] = []
    used_seed: int | None = None

    def local(wall: dt.datetime, in_zone: str = zone) -> dt.datetime:
        instant, note = localize(wall, in_zone)
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
        today = local_wall(now_utc, zone).date()
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
    return Resolved(pendulum_utc(instant), rule.describe(), used_seed, tuple(notes))


def _last(rule: LastRule, now_utc: dt.datetime, zone: str, notes: list[str]) -> dt.datetime:
    weekday, time = rule.weekday, rule.time
    day = local_wall(now_utc, zone).date()
    if weekday is not None:
        day -= dt.timedelta(days=(day.weekday() - weekday) % 7)
    instant, note = localize(dt.datetime.combine(day, time), zone)
    if instant > now_utc:  # today's/this week's is still ahead (possibly only because a gap moved it)
        day -= dt.timedelta(days=1 if weekday is None else 7)
        instant, note = localize(dt.datetime.combine(day, time), zone)
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
