"""Durations and restore-point rules: grammar, resolution at a fixed now, DST, and the server wall time."""

from __future__ import annotations

import datetime as dt
import re
import time
from datetime import timedelta

import pendulum
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from vaodrill.spec.durations import DurationField, parse_duration, spec_duration
from vaodrill.spec.restore_points import Resolved, resolve, restore_point_date
from vaodrill.spec.rules import (
    AgoRule,
    AtRule,
    LastRule,
    LatestRule,
    RandomWithinRule,
    RestorePointRule,
    StartOfRule,
    describe,
    parse_rule,
)
from vaodrill.spec.zones import check_timezone, is_ambiguous_wall_time, to_server_wall_time

SEED_RANGE = "must be a whole number from 0 to 2**63-1"
TEN_YEARS = "must be at most 3650d, about 10 years"
YEARS = "is outside the supported years 1970 to 2199"
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
# Wednesday 2026-11-04 11:15:30.123456 in Berlin (CET, UTC+1).
NOW = pendulum.datetime(2026, 11, 4, 10, 15, 30, 123456, tz="UTC")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(year, month, day, hour, minute, second, tz="UTC")


def at(rule: object, now: dt.datetime = NOW, tz: str = "UTC", **kw: object) -> pendulum.DateTime:
    return resolve(rule, now=now, drill_tz=tz, **kw).instant  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6h", 21600),
        ("90m", 5400),
        ("2d", 172800),
        ("45s", 45),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1d2h3m4s", 93784),
        ("1.5h", 5400),
        ("2 hours", 7200),
        ("10 min", 600),
        ("6H", 21600),
        ("PT6H", 21600),
        ("P2D", 172800),
        ("P1DT2H", 93600),
        ("P1W", 604800),
        ("PT1.5H", 5400),
        ("pt90m", 5400),
        ("PT0.5S", 0.5),
        ("3600", 3600),
        (3600, 3600),
        (0.25, 0.25),
        (timedelta(minutes=5), 300),
    ],
)
def test_durations_parse(text: object, seconds: float) -> None:
    duration = parse_duration(text)  # type: ignore[arg-type]
    assert isinstance(duration, pendulum.Duration)
    assert duration.total_seconds() == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("abc", "use e.g. 6h, 90m, 2d or PT6H"),
        ("", "use e.g. 6h, 90m, 2d or PT6H"),
        ("0", "must be greater than zero"),
        ("0s", "must be greater than zero"),
        ("PT0S", "must be greater than zero"),
        (0, "must be greater than zero"),
        ("-5", "must be greater than zero"),
        ("-1h", "must be greater than zero"),
        (timedelta(0), "must be greater than zero"),
        (-3.0, "must be greater than zero"),
        ("P1M", "years and months are not fixed lengths"),
        ("P1Y", "years and months are not fixed lengths"),
        ("PT", "use e.g."),
        ("P1DT", "use e.g."),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("1x", "unknown unit 'x'"),
        ("1h30", "use e.g."),
        (True, "use e.g."),
        (float("nan"), "use e.g."),
        (None, "expected a string or a number"),
    ],
)
def test_durations_reject(text: object, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)) as info:
        parse_duration(text)  # type: ignore[arg-type]
    assert str(info.value).startswith("invalid duration ")
    assert "\n" not in str(info.value)


def test_duration_error_text_is_exact() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("abc")
    assert str(info.value) == "invalid duration 'abc' (use e.g. 6h, 90m, 2d or PT6H)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(21600, "6h"), (5400, "1h30m"), (90, "1m30s"), (93784, "1d2h3m4s"), (604800, "7d"), (1.5, "1.5s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert spec_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text).total_seconds() == seconds


class _Timed(BaseModel):
    window: DurationField
    limit: DurationField | None = None


def test_duration_field_serialises_to_readable_text() -> None:
    model = _Timed.model_validate({"window": "PT90M"})
    assert model.window == pendulum.duration(minutes=90)
    assert model.model_dump() == {"window": "1h30m", "limit": None}
    assert _Timed.model_validate_json(model.model_dump_json()) == model
    with pytest.raises(ValidationError, match="invalid duration 'soon'"):
        _Timed.model_validate({"window": "soon"})


# --------------------------------------------------------------------------------------------- zones


def test_check_timezone() -> None:
    assert check_timezone("Europe/Berlin") == "Europe/Berlin"
    assert check_timezone(" UTC ") == "UTC"
    with pytest.raises(ValueError, match=r"^unknown time zone 'Europe/Berln' \(did you mean 'Europe/Berlin'\?\)$"):
        check_timezone("Europe/Berln")
    for bad in ("local", "+02:00", "", None, 2):
        with pytest.raises(ValueError, match="unknown time zone"):
            check_timezone(bad)


# ------------------------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("raw", "cls", "text"),
    [
        ("latest", LatestRule, "latest"),
        (" Latest ", LatestRule, "latest"),
        ({"ago": "6h"}, AgoRule, "ago 6h"),
        ({"ago": "PT90M"}, AgoRule, "ago 1h30m"),
        ({"at": "2026-11-01T02:00:00+01:00"}, AtRule, "at 2026-11-01T02:00:00+01:00"),
        ({"at": "2026-11-01T01:00:00Z"}, AtRule, "at 2026-11-01T01:00:00+00:00"),
        ({"at": "2026-11-01T02:00 Europe/Berlin"}, AtRule, "at 2026-11-01T02:00:00 Europe/Berlin"),
        ({"at": "2026-11-01T02:00", "tz": "Europe/Berlin"}, AtRule, "at 2026-11-01T02:00:00 Europe/Berlin"),
        ({"at": "2026-11-01 02:00 UTC"}, AtRule, "at 2026-11-01T02:00:00 UTC"),
        ({"at": "2026-11-01T02:00"}, AtRule, "at 2026-11-01T02:00:00"),
        ({"last": "sunday 02:00"}, LastRule, "last sunday 02:00"),
        ({"last": "SUN 2:00"}, LastRule, "last sunday 02:00"),
        ({"last": "Fri 23:59:30"}, LastRule, "last friday 23:59:30"),
        ({"last": "daily 02:00"}, LastRule, "last daily 02:00"),
        ({"last": "day 02:00"}, LastRule, "last daily 02:00"),
        ({"start_of": "week"}, StartOfRule, "start of week"),
        ({"start_of": "Month"}, StartOfRule, "start of month"),
        ({"random_within": "7d"}, RandomWithinRule, "random within 7d"),
        ({"random_within": "7d", "seed": 42}, RandomWithinRule, "random within 7d seed 42"),
    ],
)
def test_rule_shapes(raw: object, cls: type, text: str) -> None:
    rule = parse_rule(raw)
    assert type(rule) is cls
    assert describe(rule) == text == str(rule)
    assert parse_rule(rule.model_dump()) == rule  # dumps are valid input again
    assert parse_rule(yaml.safe_load(yaml.safe_dump(rule.model_dump()))) == rule


def test_at_zone_spellings_are_the_same_rule() -> None:
    assert parse_rule({"at": "2026-11-01T02:00 Europe/Berlin"}) == parse_rule(
        {"at": "2026-11-01T02:00:00", "tz": "Europe/Berlin"}
    )


def test_unquoted_yaml_timestamps_are_accepted() -> None:
    aware = parse_rule(yaml.safe_load("{at: 2026-11-01T02:00:00+01:00}"))
    naive = parse_rule(yaml.safe_load("{at: 2026-11-01 02:00:00}"))
    day = parse_rule(yaml.safe_load("{at: 2026-11-01}"))
    assert at(aware) == utc(2026, 11, 1, 1)
    assert at(naive, tz=BERLIN) == utc(2026, 11, 1, 1)
    assert at(day, tz=BERLIN) == utc(2026, 10, 31, 23)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("foo", "unknown restore point rule 'foo' (expected 'latest' or a mapping such as {ago: 6h})"),
        (
            {"agoo": "6h"},
            "unknown rule key 'agoo' (expected one of latest, ago, at, last, start_of, random_within)",
        ),
        ({}, "empty rule (expected one of latest, ago, at, last, start_of, random_within)"),
        ({"ago": "6h", "at": "2026-11-01T02:00"}, "one rule per restore point, got 'ago' and 'at'"),
        ({"latest": True}, "write latest as a plain string: restore_point: latest"),
        (None, "expected 'latest' or a mapping such as {ago: 6h}, got null"),
        ([1], "expected 'latest' or a mapping such as {ago: 6h}, got a list"),
        ({"ago": "x"}, "ago: invalid duration 'x' (use e.g. 6h, 90m, 2d or PT6H)"),
        ({"ago": "6h", "seed": 1}, "unknown key 'seed'"),
        ({"random_within": "7d", "sed": 1}, "unknown key 'sed' (did you mean 'seed'?)"),
        ({"random_within": "7d", "seed": -1}, f"seed: {SEED_RANGE}, got -1"),
        ({"random_within": "7d", "seed": True}, f"seed: {SEED_RANGE}, got true"),
        ({"random_within": "7d", "seed": 2**63}, f"seed: {SEED_RANGE}, got 9223372036854775808"),
        ({"random_within": "7d", "seed": 10**5000}, f"seed: {SEED_RANGE}, got a very large number"),
        ({"random_within": "100000000w"}, f"random_within: invalid duration '100000000w' ({TEN_YEARS})"),
        ({"ago": "999999999999999999999w"}, f"ago: invalid duration '999999999999999999999w' ({TEN_YEARS})"),
        ({"at": "0001-01-01T00:00:00+14:00"}, f"at: '0001-01-01T00:00:00+14:00' {YEARS}"),
        ({"at": "9999-12-31T23:59:59-14:00"}, f"at: '9999-12-31T23:59:59-14:00' {YEARS}"),
        ({"at": "2200-01-01T00:00 Europe/Berlin"}, f"at: '2200-01-01T00:00' {YEARS}"),
        ({"at": dt.date(1969, 12, 31)}, f"at: 1969-12-31 {YEARS}"),
        ({"random_within": "0s"}, "random_within: invalid duration '0s' (must be greater than zero)"),
        (
            {"at": "tomorrow"},
            "at: invalid instant 'tomorrow' (use ISO 8601, e.g. 2026-11-01T02:00:00+01:00 "
            "or 2026-11-01T02:00 Europe/Berlin)",
        ),
        ({"at": "2026-11-01T02:00+01:00 Europe/Berlin"}, "'at' has both a UTC offset and a time zone; give one"),
        (
            {"at": "2026-11-01T02:00+01:00", "tz": "Europe/Berlin"},
            "'at' has both a UTC offset and a time zone; give one",
        ),
        ({"at": "2026-11-01T02:00 Europe/Berlin", "tz": "UTC"}, "give the time zone once: in 'at' or as 'tz'"),
        (
            {"at": "2026-11-01T02:00 Europe/Berln"},
            "at: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)",
        ),
        ({"at": "2026-11-01T02:00", "tz": "Mars/Base"}, "tz: unknown time zone 'Mars/Base'"),
        (
            {"last": "sundy 02:00"},
            "last: unknown day 'sundy' (expected one of monday, tuesday, wednesday, thursday, friday, "
            "saturday, sunday, or daily)",
        ),
        ({"last": "sunday"}, "last: invalid 'sunday' (expected '<weekday> HH:MM', e.g. 'sunday 02:00')"),
        ({"last": "sunday 24:00"}, "last: invalid time of day in 'sunday 24:00'"),
        ({"last": 120}, "last: expected a string like 'sunday 02:00', got 120 (quote it in YAML)"),
        ({"start_of": "year"}, "start_of: expected day, week or month, got 'year'"),
    ],
)
def test_rule_errors(raw: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rule(raw)
    assert str(info.value) == message


def test_rule_is_usable_as_a_pydantic_field() -> None:
    class Holder(BaseModel):
        rule: RestorePointRule = LatestRule()

    assert Holder().rule == LatestRule()
    assert Holder.model_validate({"rule": {"ago": "2h"}}).rule == AgoRule.model_validate({"ago": "2h"})
    assert Holder(rule=StartOfRule(start_of="day")).model_dump() == {"rule": {"start_of": "day"}}
    with pytest.raises(ValidationError, match="unknown rule key 'agoo'"):
        Holder.model_validate({"rule": {"agoo": "2h"}})
    schema = Holder.model_json_schema()  # Prefect parameter schemas need this to work
    assert "rule" in schema["properties"]


def test_rules_are_frozen() -> None:
    rule = parse_rule({"ago": "6h"})
    with pytest.raises(ValidationError):
        rule.ago = pendulum.duration(hours=1)  # type: ignore[attr-defined]  # the point: assigning is refused


# ----------------------------------------------------------------------------- resolution, fixed now


def test_latest_is_now_cut_to_the_second() -> None:
    resolved = resolve("latest", now=NOW)
    assert resolved == Resolved(utc(2026, 11, 4, 10, 15, 30), "latest", None, ())
    assert resolved.instant.timezone_name == "UTC"


def test_now_in_another_zone_is_the_same_moment() -> None:
    assert at("latest", now=NOW.in_timezone(NEW_YORK)) == utc(2026, 11, 4, 10, 15, 30)
    stdlib_now = dt.datetime(2026, 11, 4, 11, 15, 30, tzinfo=dt.timezone(timedelta(hours=1)))
    assert at({"ago": "1h"}, now=stdlib_now) == utc(2026, 11, 4, 9, 15, 30)


def test_ago() -> None:
    assert at({"ago": "6h"}) == utc(2026, 11, 4, 4, 15, 30)
    assert at({"ago": "P1DT2H"}) == utc(2026, 11, 3, 8, 15, 30)


def test_ago_is_elapsed_time_across_dst() -> None:
    # 2026-10-25 Berlin falls back: 1d ago from Monday 13:00 CET is Sunday 12:00 UTC = 13:00 CET, 24 h earlier.
    now = utc(2026, 10, 26, 12)
    assert at({"ago": "1d"}, now=now, tz=BERLIN) == utc(2026, 10, 25, 12)
    # ... whereas Saturday 13:00 CEST is 25 h earlier; `last: daily` follows the wall clock.
    assert at({"ago": "2d"}, now=now, tz=BERLIN) == utc(2026, 10, 24, 12)
    assert at({"last": "daily 13:00"}, now=utc(2026, 10, 24, 12), tz=BERLIN) == utc(2026, 10, 24, 11)


def test_at() -> None:
    assert at({"at": "2026-11-01T02:00:00+01:00"}) == utc(2026, 11, 1, 1)
    assert at({"at": "2026-11-01T02:00 Europe/Berlin"}) == utc(2026, 11, 1, 1)
    assert at({"at": "2026-10-31T02:00", "tz": NEW_YORK}) == utc(2026, 10, 31, 6)
    # A naive wall time is read in the drill's zone.
    assert at({"at": "2026-11-01T02:00"}) == utc(2026, 11, 1, 2)
    assert at({"at": "2026-11-01T02:00"}, tz=BERLIN) == utc(2026, 11, 1, 1)
    assert at({"at": "2026-11-02T02:00"}, tz=NEW_YORK) == utc(2026, 11, 2, 7)
    # The rule's own zone beats the drill's.
    assert at({"at": "2026-11-01T02:00 UTC"}, tz=BERLIN) == utc(2026, 11, 1, 2)


def test_at_in_the_future_is_kept_with_a_note() -> None:
    resolved = resolve({"at": "2026-12-24T18:00:00+00:00"}, now=NOW)
    assert resolved.instant == utc(2026, 12, 24, 18)
    assert resolved.notes == ("2026-12-24T18:00:00+00:00 is after now; VAO will use its latest restore point",)


def test_last_weekday() -> None:
    # NOW is Wednesday 11:15 CET.
    assert at({"last": "sunday 02:00"}, tz=BERLIN) == utc(2026, 11, 1, 1)
    assert at({"last": "mon 00:00"}, tz=BERLIN) == utc(2026, 11, 1, 23)
    assert at({"last": "wednesday 11:15"}, tz=BERLIN) == utc(2026, 11, 4, 10, 15)  # earlier today
    assert at({"last": "wednesday 11:16"}, tz=BERLIN) == utc(2026, 10, 28, 10, 16)  # still ahead: last week
    assert at({"last": "thu 09:00"}, tz=BERLIN) == utc(2026, 10, 29, 8)
    # Same rule, other zone: Sunday 02:00 in New York (EST since 2026-11-01 02:00 EDT).
    assert at({"last": "sunday 02:00"}, tz=NEW_YORK) == utc(2026, 11, 1, 7)


@pytest.mark.parametrize(
    ("day", "expected_date"),
    [
        ("monday", (2026, 11, 2)),
        ("tuesday", (2026, 11, 3)),
        ("wednesday", (2026, 11, 4)),
        ("thursday", (2026, 10, 29)),
        ("friday", (2026, 10, 30)),
        ("saturday", (2026, 10, 31)),
        ("sunday", (2026, 11, 1)),
    ],
)
def test_last_every_weekday(day: str, expected_date: tuple[int, int, int]) -> None:
    assert at({"last": f"{day} 06:00"}) == utc(*expected_date, 6)
    assert at({"last": f"{day[:3].upper()} 06:00"}) == utc(*expected_date, 6)


def test_last_at_exactly_now_is_now() -> None:
    now = utc(2026, 11, 1, 1)  # Sunday 02:00 CET
    assert at({"last": "sunday 02:00"}, now=now, tz=BERLIN) == now
    # One second earlier it is the Sunday before, whose 02:00 (fall-back day) is the earlier, CEST one.
    assert at({"last": "sunday 02:00"}, now=now.subtract(seconds=1), tz=BERLIN) == utc(2026, 10, 25, 0)


def test_last_daily() -> None:
    assert at({"last": "daily 11:00"}, tz=BERLIN) == utc(2026, 11, 4, 10)
    assert at({"last": "daily 12:00"}, tz=BERLIN) == utc(2026, 11, 3, 11)


def test_start_of() -> None:
    assert at({"start_of": "day"}, tz=BERLIN) == utc(2026, 11, 3, 23)
    assert at({"start_of": "week"}, tz=BERLIN) == utc(2026, 11, 1, 23)  # Monday 2026-11-02 00:00 CET
    assert at({"start_of": "month"}, tz=BERLIN) == utc(2026, 10, 31, 23)
    assert at({"start_of": "day"}) == utc(2026, 11, 4)
    assert at({"start_of": "day"}, tz=NEW_YORK) == utc(2026, 11, 4, 5)
    # Local date differs from the UTC date: 2026-11-04 00:30 CET is still 11-03 in UTC.
    late = utc(2026, 11, 3, 23, 30)
    assert at({"start_of": "day"}, now=late, tz=BERLIN) == utc(2026, 11, 3, 23)
    assert at({"start_of": "day"}, now=late) == utc(2026, 11, 3)
    # Sunday is the end of the ISO week, the 1st is the start of the month.
    assert at({"start_of": "week"}, now=utc(2026, 11, 8, 22), tz=BERLIN) == utc(2026, 11, 1, 23)
    assert at({"start_of": "month"}, now=utc(2026, 12, 1, 0, 30), tz=BERLIN) == utc(2026, 11, 30, 23)


def test_random_within_with_a_seed_is_reproducible() -> None:
    rule = {"random_within": "7d", "seed": 42}
    first = resolve(rule, now=NOW)
    assert first.seed == 42
    assert first == resolve(rule, now=NOW)
    assert NOW.subtract(days=7) <= first.instant <= NOW
    # Pinned: catches an accidental change of algorithm, which would break replays of old reports.
    assert first.instant == utc(2026, 11, 3, 1, 49, 51)


def test_random_within_draws_and_returns_a_seed_that_replays() -> None:
    drawn = resolve({"random_within": "7d"}, now=NOW)
    assert isinstance(drawn.seed, int)
    assert drawn.rule == "random within 7d"
    assert resolve({"random_within": "7d"}, now=NOW, seed=drawn.seed) == drawn
    assert resolve({"random_within": "7d", "seed": drawn.seed}, now=NOW).instant == drawn.instant


def test_random_within_seed_argument_wins_and_stays_in_the_window() -> None:
    assert resolve({"random_within": "7d", "seed": 1}, now=NOW, seed=2).seed == 2
    instants = {at({"random_within": "1h"}, seed=s) for s in range(200)}
    assert len(instants) > 150  # spread over the hour, not one value
    assert all(NOW.subtract(hours=1) <= i <= NOW for i in instants)
    assert all(i.microsecond == 0 for i in instants)


def test_seed_is_ignored_by_other_rules() -> None:
    assert resolve({"ago": "1h"}, now=NOW, seed=5).seed is None


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        resolve("latest", now=dt.datetime(2026, 11, 4, 10))
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime"):
        resolve("latest", now="2026-11-04T10:00:00Z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown time zone 'Berlin'"):
        resolve("latest", now=NOW, drill_tz="Berlin")


def test_system_local_zone_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [{"last": "sunday 02:00"}, {"start_of": "day"}, {"at": "2026-11-01T02:00"}, "latest"]
    expected = [at(r, tz=BERLIN) for r in rules] + [to_server_wall_time(NOW, NEW_YORK)]
    for zone in ("Pacific/Chatham", "America/St_Johns"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        try:
            assert [at(r, tz=BERLIN) for r in rules] + [to_server_wall_time(NOW, NEW_YORK)] == expected
        finally:
            monkeypatch.undo()
            time.tzset()


# ------------------------------------------------------------------------------------ daylight saving

# Europe/Berlin 2026: 03-29 02:00 CET -> 03:00 CEST (gap), 10-25 03:00 CEST -> 02:00 CET (02:xx twice).
# America/New_York 2026: 03-08 02:00 EST -> 03:00 EDT (gap), 11-01 02:00 EDT -> 01:00 EST (01:xx twice).


def test_berlin_gap_moves_forward() -> None:
    resolved = resolve({"last": "sunday 02:30"}, now=utc(2026, 3, 29, 1, 45), drill_tz=BERLIN)
    assert resolved.instant == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert resolved.notes == ("2026-03-29 02:30:00 does not exist in Europe/Berlin (clocks skip ahead); used 03:30:00",)
    assert at({"at": "2026-03-29T02:30 Europe/Berlin"}) == utc(2026, 3, 29, 1, 30)
    assert at({"at": "2026-03-29T02:00", "tz": BERLIN}) == utc(2026, 3, 29, 1)  # = 03:00 CEST


def test_berlin_gap_never_after_now() -> None:
    # 01:15 UTC is 03:15 CEST: the shifted 03:30 is still ahead, so it is last week's 02:30.
    now = utc(2026, 3, 29, 1, 15)
    assert at({"last": "sunday 02:30"}, now=now, tz=BERLIN) == utc(2026, 3, 22, 1, 30)
    assert at({"last": "daily 02:30"}, now=now, tz=BERLIN) == utc(2026, 3, 28, 1, 30)


def test_berlin_repeated_time_takes_the_earlier() -> None:
    resolved = resolve({"at": "2026-10-25T02:30 Europe/Berlin"}, now=NOW)
    assert resolved.instant == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, not 02:30 CET (01:30 UTC)
    assert resolved.notes == (
        "2026-10-25 02:30:00 occurs twice in Europe/Berlin; used the earlier one (02:30:00+0200)",
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 10, 25, 0, 15), utc(2026, 10, 18, 0, 30)),  # 02:15 CEST: 02:30 not reached yet
        (utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 0, 30)),  # 02:45 CEST
        (utc(2026, 10, 25, 1, 45), utc(2026, 10, 25, 0, 30)),  # 02:45 CET, second pass: still the earlier
    ],
)
def test_berlin_repeated_time_in_last(now: pendulum.DateTime, expected: pendulum.DateTime) -> None:
    assert at({"last": "sunday 02:30"}, now=now, tz=BERLIN) == expected
    assert at({"last": "sunday 02:30"}, now=now, tz=BERLIN) <= now


def test_new_york_gap_and_repeat() -> None:
    gap = resolve({"last": "sunday 02:30"}, now=utc(2026, 3, 8, 12), drill_tz=NEW_YORK)
    assert gap.instant == utc(2026, 3, 8, 7, 30)  # 03:30 EDT
    assert "does not exist in America/New_York" in gap.notes[0]
    assert at({"at": "2026-11-01T01:30 America/New_York"}) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    second_pass = utc(2026, 11, 1, 6, 45)  # 01:45 EST
    assert at({"last": "sunday 01:30"}, now=second_pass, tz=NEW_YORK) == utc(2026, 11, 1, 5, 30)
    assert at({"last": "daily 01:30"}, now=utc(2026, 11, 1, 5, 15), tz=NEW_YORK) == utc(2026, 10, 31, 5, 30)


def test_start_of_day_on_dst_days() -> None:
    assert at({"start_of": "day"}, now=utc(2026, 10, 25, 12), tz=BERLIN) == utc(2026, 10, 24, 22)  # CEST
    assert at({"start_of": "day"}, now=utc(2026, 3, 29, 12), tz=BERLIN) == utc(2026, 3, 28, 23)  # CET
    # Chile skips midnight: 2026-09-06 starts at 01:00 -03.
    resolved = resolve({"start_of": "day"}, now=utc(2026, 9, 6, 12), drill_tz="America/Santiago")
    assert resolved.instant == utc(2026, 9, 6, 4)
    assert "does not exist" in resolved.notes[0]


# ---------------------------------------------------------------------------------- server wall time

WALL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def test_server_wall_time_format() -> None:
    assert to_server_wall_time(NOW, "UTC") == "2026-11-04T10:15:30"  # fraction cut, not rounded
    assert to_server_wall_time(utc(2026, 11, 4, 10, 15, 59).add(microseconds=999999), "UTC") == "2026-11-04T10:15:59"
    assert to_server_wall_time(NOW, BERLIN) == "2026-11-04T11:15:30"
    assert to_server_wall_time(NOW, NEW_YORK) == "2026-11-04T05:15:30"
    assert WALL.match(to_server_wall_time(NOW.in_timezone("Asia/Kolkata"), "Asia/Kathmandu"))
    with pytest.raises(ValueError, match="instant must be timezone-aware"):
        to_server_wall_time(dt.datetime(2026, 11, 4), BERLIN)
    with pytest.raises(ValueError, match="unknown time zone"):
        to_server_wall_time(NOW, "Europe/Berln")


@pytest.mark.parametrize(
    ("instant", "zone", "wall", "ambiguous"),
    [
        (utc(2026, 10, 25, 0, 30), BERLIN, "2026-10-25T02:30:00", True),  # first 02:30 (CEST)
        (utc(2026, 10, 25, 1, 30), BERLIN, "2026-10-25T02:30:00", True),  # second 02:30 (CET)
        (utc(2026, 10, 25, 2, 30), BERLIN, "2026-10-25T03:30:00", False),
        (utc(2026, 10, 24, 23, 59, 59), BERLIN, "2026-10-25T01:59:59", False),
        (utc(2026, 3, 29, 0, 59, 59), BERLIN, "2026-03-29T01:59:59", False),
        (utc(2026, 3, 29, 1), BERLIN, "2026-03-29T03:00:00", False),  # 02:xx never appears
        (utc(2026, 11, 1, 5, 30), NEW_YORK, "2026-11-01T01:30:00", True),
        (utc(2026, 11, 1, 6, 30), NEW_YORK, "2026-11-01T01:30:00", True),
        (utc(2026, 3, 8, 7), NEW_YORK, "2026-03-08T03:00:00", False),
    ],
)
def test_server_wall_time_across_dst(instant: pendulum.DateTime, zone: str, wall: str, ambiguous: bool) -> None:
    assert to_server_wall_time(instant, zone) == wall
    assert is_ambiguous_wall_time(instant, zone) is ambiguous


def test_restore_point_date_notes_an_ambiguous_server_time() -> None:
    date, resolved = restore_point_date({"ago": "1h"}, now=utc(2026, 10, 25, 1, 30), server_tz=BERLIN)
    assert date == "2026-10-25T02:30:00"
    assert resolved.instant == utc(2026, 10, 25, 0, 30)
    assert resolved.notes == (
        "server wall time 2026-10-25T02:30:00 occurs twice in Europe/Berlin; the server may read it as either "
        "occurrence (meant 2026-10-25T00:30:00+00:00)",
    )
    date, resolved = restore_point_date({"ago": "1h"}, now=utc(2026, 10, 25, 3), server_tz=BERLIN)
    assert (date, resolved.notes) == ("2026-10-25T03:00:00", ())


def test_drill_zone_and_server_zone_are_independent() -> None:
    date, resolved = restore_point_date({"last": "sunday 02:00"}, now=NOW, drill_tz=BERLIN, server_tz=NEW_YORK)
    assert resolved.instant == utc(2026, 11, 1, 1)
    assert date == "2026-10-31T21:00:00"  # Saturday 21:00 EDT
    assert resolved.rule == "last sunday 02:00"


def test_restore_point_date_with_seed_replays() -> None:
    first = restore_point_date({"random_within": "2d"}, now=NOW, server_tz=BERLIN)
    again = restore_point_date({"random_within": "2d"}, now=NOW, server_tz=BERLIN, seed=first[1].seed)
    assert again == first
