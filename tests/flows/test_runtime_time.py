"""Wake-up times of delay steps (pure): time of day on allowed weekdays in a zone, date ± offset."""

from __future__ import annotations

from datetime import UTC, datetime

from flows.runtime import event_passes, exit_matches
from flows.runtime_time import date_property_time, next_time_of_day, zone
from segments.conditions import EventFilter

WARSAW = zone("Europe/Warsaw")


def test_later_today_when_the_time_has_not_passed():
    now = datetime(2026, 3, 4, 6, 0, tzinfo=UTC)  # Wednesday 07:00 in Warsaw
    assert next_time_of_day(now, "09:30", None, WARSAW) == datetime(2026, 3, 4, 8, 30, tzinfo=UTC)


def test_next_allowed_weekday_when_today_is_past_or_not_allowed():
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # Wednesday 13:00 in Warsaw, past 09:30
    assert next_time_of_day(now, "09:30", ["mon", "fri"], WARSAW) == datetime(
        2026, 3, 6, 8, 30, tzinfo=UTC
    )
    assert next_time_of_day(now, "09:30", ["wed"], WARSAW) == datetime(
        2026, 3, 11, 8, 30, tzinfo=UTC
    )


def test_across_a_daylight_saving_change():
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # Saturday; clocks go forward on Sunday
    assert next_time_of_day(now, "09:00", ["mon"], WARSAW) == datetime(
        2026, 3, 30, 7, 0, tzinfo=UTC
    )


def test_unknown_zone_falls_back_to_the_workspace_zone():
    assert zone("Mars/Olympus", "Europe/Warsaw") == WARSAW
    assert zone(None, "nope").key == "UTC"


def test_date_property_plus_offset_at_a_time():
    at = date_property_time("2026-07-10", -3, "10:00", WARSAW)
    assert at == datetime(2026, 7, 7, 8, 0, tzinfo=UTC)
    assert date_property_time("2026-07-10T23:00:00Z", 1, "09:00", zone("UTC")) == datetime(
        2026, 7, 11, 9, 0, tzinfo=UTC
    )
    assert date_property_time(None, 0, "09:00", WARSAW) is None
    assert date_property_time("soon", 0, "09:00", WARSAW) is None


def test_event_filters_on_one_event():
    big = [EventFilter(property="$value", op="gt", value=100)]
    assert event_passes(big, {}, 150)
    assert not event_passes(big, {}, 100)
    assert not event_passes(big, {}, None)
    cat = [EventFilter(property="category", op="in", value=["Shoes", "Hats"])]
    assert event_passes(cat, {"category": "shoes"}, None)
    assert not event_passes(cat, {"category": "Bags"}, None)


def test_page_visited_exit():
    from flows.definition import PageVisitedExit

    thanks = PageVisitedExit(op="contains", value="/thank-you")
    assert exit_matches(thanks, "Viewed Page", {"url": "https://s.io/thank-you?x=1"}, None)
    assert not exit_matches(thanks, "Viewed Page", {"url": "https://s.io/cart"}, None)
