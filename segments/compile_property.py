"""SQL for comparing values: custom JSON properties (profiles and events) and reserved columns.

Meaning (the same in `segments.reference`):
- Strings compare case-insensitively (`lower()` on both sides) for eq / in / contains /
  starts_with; a JSON value of another type never matches a string test.
- Numbers compare as JSON numbers (`jsonb_typeof = 'number'`, then jsonb's numeric order), so a
  row holding a string where a number is expected simply does not match — nothing is cast.
- Dates and datetimes: a value is an instant; a date (`2026-05-03`) is midnight UTC, a datetime
  without an offset is UTC. `before X`: v < X; `after X`: v > X; `in_last_days N`:
  now - N days < v <= now; `in_next_days N`: now <= v < now + N days. Only strings shaped like
  ISO dates (what ingest accepts) are read; anything else does not match.
- `anniversary`: the month and day written in the value (MM-DD of `YYYY-MM-DD...`) equal today's
  month and day in the profile's timezone (else the workspace's, else UTC). 29 February matches
  only in leap years.
- `is_set`: the key is present and not JSON null (reserved columns: NOT NULL).
- `list_contains`: a JSON array holding the value (exact, case-sensitive JSON equality).
Every leaf compiled here can be NULL in SQL; callers wrap it with `coalesce(..., false)`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, Text, and_, case, cast, false, func, literal, or_
from sqlalchemy.dialects.postgresql import INTERVAL, JSONB, TIMESTAMP
from sqlalchemy.sql.elements import ColumnElement

from segments.conditions import parse_instant

ISO_DATE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
HAS_OFFSET = r"(Z|[+-]\d{2}:?\d{2})$"
HAS_TIME_AND_OFFSET = r"[T ]\d{2}:\d{2}.*(Z|[+-]\d{2}:?\d{2})$"


def _lit(value: Any) -> ColumnElement:
    return literal(value, String) if isinstance(value, str) else literal(value)


class JsonValue:
    """`column -> key` of a JSONB column, with type-guarded comparisons."""

    def __init__(self, column: ColumnElement, key: str) -> None:
        self.json = column.op("->", return_type=JSONB)(literal(key, String))
        self.text = column.op("->>", return_type=Text)(literal(key, String))
        self.kind = func.jsonb_typeof(self.json)

    def _is(self, kind: str) -> ColumnElement:
        return self.kind == literal(kind, String)

    def compare(
        self,
        op: str,
        value: Any,
        now: datetime | ColumnElement,
        tz: ColumnElement | None = None,
        days: int | None = None,
    ) -> ColumnElement:
        if op == "is_set":
            return func.coalesce(self.kind, "null") != "null"
        if op == "is_not_set":
            return func.coalesce(self.kind, "null") == "null"
        if op in ("eq", "in"):
            values = value if isinstance(value, list) else [value]
            if isinstance(values[0], str):
                lowered = func.lower(self.text)
                return and_(
                    self._is("string"), or_(*[lowered == func.lower(_lit(v)) for v in values])
                )
            kind = "boolean" if isinstance(values[0], bool) else "number"
            return and_(self._is(kind), or_(*[self.json == literal(v, JSONB) for v in values]))
        if op == "contains":
            return and_(
                self._is("string"), func.strpos(func.lower(self.text), func.lower(_lit(value))) > 0
            )
        if op == "starts_with":
            return and_(
                self._is("string"), func.starts_with(func.lower(self.text), func.lower(_lit(value)))
            )
        if op in ("gt", "gte", "lt", "lte"):
            return and_(self._is("number"), _ordered(self.json, op, literal(value, JSONB)))
        if op == "list_contains":
            return and_(self._is("array"), self.json.op("@>")(literal([value], JSONB)))
        if op == "anniversary":
            written = case(
                (
                    and_(self._is("string"), self.text.op("~")(literal(ISO_DATE, String))),
                    func.substr(self.text, 6, 5),
                ),
            )
            return written == _today_mm_dd(now, tz)
        return date_compare(self.instant(), op, value, now, days)

    def instant(self) -> ColumnElement:
        """The value as timestamptz, or NULL when it is not an ISO date/datetime string."""
        iso = and_(
            self._is("string"),
            self.text.op("~")(literal(ISO_DATE, String)),
            func.pg_input_is_valid(self.text, "timestamp"),
        )
        return case(
            (
                and_(iso, self.text.op("~")(literal(HAS_TIME_AND_OFFSET, String))),
                cast(self.text, DateTime(timezone=True)),
            ),
            (iso, func.timezone("UTC", cast(self.text, TIMESTAMP(timezone=False)))),
        )


def _ordered(left: ColumnElement, op: str, right: Any) -> ColumnElement:
    return {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
        "eq": left == right,
    }[op]


def _now(now: datetime | ColumnElement) -> ColumnElement:
    return literal(now, DateTime(timezone=True)) if isinstance(now, datetime) else now


def shift(now: datetime | ColumnElement, delta: timedelta) -> ColumnElement:
    """`now + delta` in SQL, exact: the interval is whole seconds (no calendar days, so no DST
    shift), the same instant as Python's `now + delta`."""
    seconds = delta.total_seconds()
    text_ = f"{int(seconds)} seconds" if seconds == int(seconds) else f"{seconds!r} seconds"
    return _now(now) + cast(literal(text_, String), INTERVAL)


def _today_mm_dd(now: datetime | ColumnElement, tz: ColumnElement | None) -> ColumnElement:
    local = func.timezone(tz if tz is not None else "UTC", _now(now))
    return func.to_char(local, "MM-DD")


def date_compare(instant: ColumnElement, op: str, value: Any, now, days=None):
    if op == "before":
        return instant < literal(parse_instant(value), DateTime(timezone=True))
    if op == "after":
        return instant > literal(parse_instant(value), DateTime(timezone=True))
    now_lit = _now(now)
    if op == "in_last_days":
        return and_(instant > shift(now, timedelta(days=-days)), instant <= now_lit)
    if op == "in_next_days":
        return and_(instant >= now_lit, instant < shift(now, timedelta(days=days)))
    raise ValueError(f"not a date operator: {op}")


def column_compare(
    column: ColumnElement,
    kind: str,
    op: str,
    value: Any,
    now: datetime | ColumnElement,
    tz: ColumnElement | None = None,
    days: int | None = None,
) -> ColumnElement:
    """A reserved profile column (`kind`: string, number or datetime)."""
    if op == "is_set":
        return column.is_not(None)
    if op == "is_not_set":
        return column.is_(None)
    values = value if isinstance(value, list) else [value]
    if kind == "string":
        lowered = func.lower(column)
        if op in ("eq", "in"):
            return or_(*[lowered == func.lower(_lit(v)) for v in values])
        if op == "contains":
            return func.strpos(lowered, func.lower(_lit(value))) > 0
        if op == "starts_with":
            return func.starts_with(lowered, func.lower(_lit(value)))
    if kind == "number":
        if op in ("eq", "in"):
            return or_(*[column == literal(v) for v in values])
        return _ordered(column, op, literal(value))
    if kind == "datetime":
        if op == "anniversary":
            return func.to_char(func.timezone(tz, column), "MM-DD") == _today_mm_dd(now, tz)
        return date_compare(column, op, value, now, days)
    return false()
