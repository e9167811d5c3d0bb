"""Wake-up times of delay steps, as pure functions (no I/O, no clock): tested on their own and
called by the `resolve_delay` activity with the profile's (or workspace's) timezone.

- `until_time`: the first moment at or after `now` that is `time` o'clock on an allowed weekday
  in `tz`. A wall time that does not exist (spring-forward gap) is taken as the same wall time
  shifted by the gap (`zoneinfo` fold=0 semantics normalized through UTC); an ambiguous one
  (fall-back) is its first occurrence.
- `until_date`: the date in a profile property (ISO date or datetime) plus `offset_days`, at
  `time` in `tz`. A date already passed answers that past moment (the caller does not wait).
  A missing or unparsable property answers None (the step is skipped with a reason).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAY_INDEX = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The zone of `name`, else of `fallback`, else UTC (unknown names are not an error)."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """`day` at `clock` in `tz`, as an aware UTC instant (gaps shifted forward)."""
    local = datetime.combine(day, clock, tzinfo=tz)
    return local.astimezone(UTC)


def next_time_of_day(
    now: datetime, clock: str, weekdays: list[str] | None, tz: ZoneInfo
) -> datetime:
    """The first instant >= `now` at `clock` (HH:MM) on an allowed weekday in `tz`."""
    allowed = {WEEKDAY_INDEX[d] for d in (weekdays or WEEKDAY_INDEX)}
    wanted = parse_hhmm(clock)
    today = now.astimezone(tz).date()
    for offset in range(0, 8):
        day = today + timedelta(days=offset)
        if day.weekday() not in allowed:
            continue
        candidate = _at(day, wanted, tz)
        if candidate >= now:
            return candidate
    raise ValueError("no allowed weekday")  # unreachable: 8 days cover every weekday


def parse_date(value: Any) -> date | None:
    """A date from a property value: ISO date, ISO datetime (its date), or None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def date_property_time(value: Any, offset_days: int, clock: str, tz: ZoneInfo) -> datetime | None:
    """The date in `value` plus `offset_days`, at `clock` in `tz` (None: no usable date)."""
    day = parse_date(value)
    if day is None:
        return None
    return _at(day + timedelta(days=offset_days), parse_hhmm(clock), tz)


def to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
