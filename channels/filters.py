"""Locale-aware template filters (Babel): money, number, date and datetime.

Each filter reads the render's locale, timezone and default currency from the template context
(`locale`, `timezone`, `currency`, set by `channels.render` from the profile, falling back to the
workspace, then to en / UTC / USD). A value that is not a number or a date is an error naming the
filter and the value, so the template fails review instead of sending "None zł".
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context

DEFAULT_LOCALE = "en"
DEFAULT_CURRENCY = "USD"


def parse_locale(value: str | None) -> Locale | None:
    """`pl-PL`, `pl_PL` or `pl` as a Babel locale; None when unknown or empty."""
    if not value:
        return None
    try:
        return Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def pick_locale(*candidates: str | None) -> str:
    """The first candidate Babel knows, as `pl_PL`; `en` when none does."""
    for candidate in candidates:
        if (locale := parse_locale(candidate)) is not None:
            return str(locale)
    return DEFAULT_LOCALE


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _decimal(value: Any, filter_name: str) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{filter_name}: {value!r} is not a number")
    try:
        return Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{filter_name}: {value!r} is not a number") from None


def _when(value: Any, filter_name: str) -> date | datetime:
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
    raise ValueError(f"{filter_name}: {value!r} is not a date (ISO 8601 or a timestamp)")


@pass_context
def money(ctx: Context, amount: Any, currency: str | None = None) -> str:
    """`{{ item.price|money }}` → "$1,234.50" (en-US) or "1234,50 zł" (pl-PL, currency PLN)."""
    code = (currency or ctx.get("currency") or DEFAULT_CURRENCY).upper()
    try:
        return format_currency(_decimal(amount, "money"), code, locale=ctx.get("locale"))
    except (UnknownLocaleError, ValueError) as exc:
        if "is not a number" in str(exc):
            raise
        raise ValueError(f"money: unknown currency {code!r}") from None


@pass_context
def number(ctx: Context, value: Any, decimals: int | None = None) -> str:
    """`{{ 1234.5|number }}` → "1,234.5" (en) or "1 234,5" (pl); `decimals` fixes the digits."""
    amount = _decimal(value, "number")
    pattern = None
    if decimals is not None:
        pattern = "#,##0" + ("." + "0" * int(decimals) if int(decimals) > 0 else "")
    return format_decimal(amount, format=pattern, locale=ctx.get("locale"))


@pass_context
def date_filter(ctx: Context, value: Any, format: str = "medium") -> str:
    """`{{ event.occurred_at|date }}` → "Jan 5, 2026" / "5 sty 2026"; format: short, medium,
    long, full or a CLDR pattern like "d MMMM"."""
    when = _when(value, "date")
    if isinstance(when, datetime):
        if when.tzinfo is not None:
            when = when.astimezone(_zone(ctx.get("timezone")))
        when = when.date()
    return format_date(when, format=format, locale=ctx.get("locale"))


@pass_context
def datetime_filter(ctx: Context, value: Any, format: str = "medium") -> str:
    """`{{ event.occurred_at|datetime }}` in the profile's timezone and locale."""
    when = _when(value, "datetime")
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return format_datetime(
        when, format=format, tzinfo=_zone(ctx.get("timezone")), locale=ctx.get("locale")
    )


FILTERS = {
    "money": money,
    "number": number,
    "date": date_filter,
    "datetime": datetime_filter,
}
