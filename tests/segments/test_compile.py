"""Every condition type compiled to SQL and run on seeded data in PostgreSQL, both as a set
(members_query) and profile by profile (evaluate_profile)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.dialects import postgresql

from core.db import session_scope
from segments import ConditionInvalid, evaluate_profile, members_query, parse_condition
from segments.reference import World, bucket, members
from tests.segments.data import NOW, event, insert_world

DAY = timedelta(days=1)


class Shop:
    """Named profiles in a World; `matching` runs a condition both ways and returns names."""

    def __init__(self, workspace_timezone: str = "UTC") -> None:
        self.world = World(workspace_timezone=workspace_timezone)
        self.ids: dict[str, uuid.UUID] = {}
        self.ws: uuid.UUID | None = None

    def profile(self, name: str, **fields) -> uuid.UUID:
        pid = self.ids[name] = uuid.uuid4()
        self.world.profiles[pid] = {"properties": {}, "created_at": NOW - 30 * DAY, **fields}
        return pid

    def did(self, name: str, metric: str, ago: timedelta, value=None, **properties) -> None:
        self.world.events.append(event(self.ids[name], metric, NOW - ago, value, **properties))

    async def matching(self, engine, condition: dict, *, since=None) -> set[str]:
        if self.ws is None:
            self.ws = await insert_world(engine, self.world)
        parsed = parse_condition(condition)
        names = {pid: name for name, pid in self.ids.items()}
        async with session_scope(engine) as session:
            query = members_query(self.ws, parsed, now=NOW, since=since)
            found = {names[p] for p in (await session.execute(query)).scalars()}
            one_by_one = {
                name
                for name, pid in self.ids.items()
                if await evaluate_profile(session, self.ws, parsed, pid, now=NOW, since=since)
            }
        assert one_by_one == found
        assert {names[p] for p in members(self.world, parsed, now=NOW, since=since)} == found
        return found


async def test_viewed_twice_and_started_checkout_but_no_order_in_last_5_days(engine):
    shop = Shop()
    for name in ("browser", "buyer", "once", "old_views", "no_checkout"):
        shop.profile(name)
    for name in ("browser", "buyer", "old_views", "no_checkout"):
        shop.did(name, "Viewed Product", DAY)
        shop.did(name, "Viewed Product", 2 * DAY)
    shop.did("once", "Viewed Product", DAY)
    shop.did("old_views", "Viewed Product", 9 * DAY)  # only one view inside the 5 days
    shop.world.events = [
        e
        for e in shop.world.events
        if not (e["profile_id"] == shop.ids["old_views"] and e["occurred_at"] == NOW - 2 * DAY)
    ]
    for name in ("browser", "buyer", "once", "old_views"):
        shop.did(name, "Started Checkout", 3 * DAY)
    shop.did("buyer", "Placed Order", 2 * DAY)
    shop.did("browser", "Placed Order", 30 * DAY)  # before the window: still abandoned
    last5 = {"kind": "in_last", "amount": 5, "unit": "days"}
    condition = {
        "all": [
            {
                "type": "behaviour",
                "metric": "Viewed Product",
                "count": {"op": "at_least", "value": 2},
                "timeframe": last5,
            },
            {"type": "behaviour", "metric": "Started Checkout", "timeframe": last5},
            {
                "type": "behaviour",
                "metric": "Placed Order",
                "count": {"op": "zero"},
                "timeframe": last5,
            },
        ]
    }
    assert await shop.matching(engine, condition) == {"browser"}


async def test_first_time_buyer_placed_order_equals_one_over_all_time(engine):
    shop = Shop()
    for name, orders in (("never", 0), ("first", 1), ("loyal", 3)):
        shop.profile(name)
        for i in range(orders):
            shop.did(name, "Placed Order", (100 + i) * DAY, value=10)
    condition = {
        "type": "behaviour",
        "metric": "Placed Order",
        "count": {"op": "equals", "value": 1},
    }
    assert await shop.matching(engine, condition) == {"first"}
    zero = {"type": "behaviour", "metric": "Placed Order", "count": {"op": "zero"}}
    assert await shop.matching(engine, zero) == {"never"}


async def test_sum_of_value_and_event_property_filters(engine):
    shop = Shop()
    for name in ("big", "small", "many_small", "none"):
        shop.profile(name)
    shop.did("big", "Placed Order", DAY, value=250, product_id="X")
    shop.did("small", "Placed Order", DAY, value=40, product_id="Y")
    for _ in range(3):
        shop.did("many_small", "Placed Order", DAY, value=40, product_id="x")
    over_100 = {"type": "behaviour", "metric": "Placed Order", "sum": {"op": "gt", "value": 100}}
    assert await shop.matching(engine, over_100) == {"big", "many_small"}
    under_50 = {"type": "behaviour", "metric": "Placed Order", "sum": {"op": "lt", "value": 50}}
    assert await shop.matching(engine, under_50) == {"small", "none"}  # no orders: sum 0
    big_x = {
        "type": "behaviour",
        "metric": "Placed Order",
        "where": [
            {"property": "$value", "op": "gt", "value": 100},
            {"property": "product_id", "op": "eq", "value": "x"},  # case-insensitive
        ],
    }
    assert await shop.matching(engine, big_x) == {"big"}


async def test_last_did_more_than_n_days_ago(engine):
    shop = Shop()
    for name in ("lapsed", "recent", "never"):
        shop.profile(name)
    shop.did("lapsed", "Placed Order", 90 * DAY)
    shop.did("recent", "Placed Order", 90 * DAY)
    shop.did("recent", "Placed Order", 10 * DAY)
    more = {"type": "behaviour", "metric": "Placed Order", "last": {"op": "more_than", "days": 60}}
    assert await shop.matching(engine, more) == {"lapsed"}
    less = {"type": "behaviour", "metric": "Placed Order", "last": {"op": "less_than", "days": 60}}
    assert await shop.matching(engine, less) == {"recent"}


async def test_since_starting_this_flow(engine):
    shop = Shop()
    for name in ("clicked_after", "clicked_before"):
        shop.profile(name)
    shop.did("clicked_after", "Clicked Email", timedelta(hours=1))
    shop.did("clicked_before", "Clicked Email", 3 * DAY)
    condition = {
        "type": "behaviour",
        "metric": "Clicked Email",
        "timeframe": {"kind": "since_flow_start"},
    }
    found = await shop.matching(engine, condition, since=NOW - DAY)
    assert found == {"clicked_after"}
    with pytest.raises(ConditionInvalid) as err:
        members_query(shop.ws, parse_condition(condition), now=NOW)
    assert err.value.errors[0].path == "timeframe"


async def test_consent_and_suppression(engine):
    shop = Shop()
    world = shop.world
    ok = shop.profile("ok", email="OK@Shop.test", phone="+48600000001")
    bounced = shop.profile("bounced", email="Bounced@Shop.test")
    unsub = shop.profile("unsubscribed", email="u@shop.test")
    no_email = shop.profile("no_email")
    shop.profile("never_asked", email="n@shop.test")
    for pid in (ok, bounced, no_email):
        world.consents[(pid, "email")] = "subscribed"
    world.consents[(unsub, "email")] = "unsubscribed"
    world.consents[(ok, "sms")] = "subscribed"
    world.consent_changes += [
        (ok, "email", "subscribed", NOW - 2 * DAY),
        (bounced, "email", "subscribed", NOW - 20 * DAY),
    ]
    world.suppressions.add(("email", "bounced@shop.test"))  # stored lower-cased
    world.suppressions.add(("email", "+48600000001"))  # another channel's address: no effect
    can = {"type": "consent", "channel": "email", "op": "can_receive"}
    assert await shop.matching(engine, can) == {"ok"}
    cannot = {"type": "consent", "channel": "email", "op": "cannot_receive"}
    assert await shop.matching(engine, cannot) == {
        "bounced",
        "unsubscribed",
        "no_email",
        "never_asked",
    }
    assert await shop.matching(engine, {**can, "channel": "sms"}) == {"ok"}
    recent = {"type": "consent", "channel": "email", "op": "subscribed_within", "days": 7}
    assert await shop.matching(engine, recent) == {"ok"}


async def test_engagement_from_message_events(engine):
    shop = Shop()
    for name in ("opener", "old_opener", "receiver"):
        shop.profile(name)
    shop.did("opener", "Opened Email", 2 * DAY)
    shop.did("old_opener", "Opened Email", 40 * DAY)
    shop.did("receiver", "Received SMS", DAY)
    opened = {"type": "engagement", "action": "opened", "channel": "email", "days": 30}
    assert await shop.matching(engine, opened) == {"opener"}
    received = {"type": "engagement", "action": "received", "channel": "sms", "days": 30}
    assert await shop.matching(engine, received) == {"receiver"}


async def test_within_50_km_of_a_point_and_country(engine):
    shop = Shop()
    shop.profile("warsaw", latitude=52.2297, longitude=21.0122, country="PL")
    shop.profile("piaseczno", latitude=52.0811, longitude=21.0238, country="PL")  # ~17 km
    shop.profile("lodz", latitude=51.7592, longitude=19.4560, country="PL")  # ~120 km
    shop.profile("nowhere", country="DE")
    near = {"type": "location", "op": "within", "latitude": 52.2297, "longitude": 21.0122, "km": 50}
    assert await shop.matching(engine, near) == {"warsaw", "piaseczno"}
    poland = {"type": "location", "op": "country_in", "countries": ["pl"]}
    assert await shop.matching(engine, poland) == {"warsaw", "piaseczno", "lodz"}


async def test_phone_country_code(engine):
    shop = Shop()
    shop.profile("pl", phone="+48600100200")
    shop.profile("us", phone="+12025550100")
    shop.profile("de", phone="+4915112345678")
    shop.profile("none")
    condition = {"type": "location", "op": "phone_country_in", "countries": ["PL", "US"]}
    assert await shop.matching(engine, condition) == {"pl", "us"}


async def test_sms_keyword_join_with_alternative_spellings(engine):
    shop = Shop()
    for name in ("join", "jion_lower", "stop", "email_join"):
        shop.profile(name)
    shop.did("join", "Replied to SMS", DAY, keyword="JOIN", body="JOIN")
    shop.did("jion_lower", "Replied to SMS", DAY, keyword=" jion", body="jion pls")
    shop.did("stop", "Replied to SMS", DAY, keyword="STOP", body="stop")
    shop.did("email_join", "Replied to WhatsApp", DAY, keyword="JOIN")
    condition = {"type": "sms_keyword", "keywords": ["JOIN", "jion", "JOINN"]}
    assert await shop.matching(engine, condition) == {"join", "jion_lower"}


async def test_anniversary_today_in_the_profiles_timezone(engine):
    # NOW is 2026-11-20 12:00 UTC: already 11-21 in Kiritimati (UTC+14), 11-20 in New York.
    shop = Shop(workspace_timezone="Pacific/Kiritimati")
    birthday = {"birthday": "1990-11-21"}
    shop.profile("kiritimati", timezone="Pacific/Kiritimati", properties=birthday)
    shop.profile("new_york", timezone="America/New_York", properties=birthday)
    shop.profile("workspace_tz", properties=birthday)  # falls back to the workspace timezone
    shop.profile("today_ny", timezone="America/New_York", properties={"birthday": "1985-11-20"})
    shop.profile("wrong_type", properties={"birthday": 19901121})
    condition = {"type": "property", "property": "birthday", "op": "anniversary"}
    assert await shop.matching(engine, condition) == {"kiritimati", "workspace_tz", "today_ny"}


async def test_property_comparisons_by_type(engine):
    shop = Shop()
    shop.profile(
        "gold",
        first_name="Ala",
        properties={"plan": "Gold", "orders": 12, "vip": True, "last_seen": "2026-11-18"},
    )
    shop.profile(
        "silver",
        properties={
            "plan": "silver",
            "orders": "12",
            "vip": False,
            "last_seen": "2026-10-01T10:00:00+02:00",
        },
    )
    shop.profile("null_plan", properties={"plan": None, "orders": 3.5})
    shop.profile("empty")

    async def names(condition):
        return await shop.matching(engine, {"type": "property", **condition})

    assert await names({"property": "plan", "op": "eq", "value": "GOLD"}) == {"gold"}
    assert await names({"property": "plan", "op": "starts_with", "value": "SIL"}) == {"silver"}
    assert await names({"property": "plan", "op": "in", "value": ["gold", "x"]}) == {"gold"}
    # "12" (a string) is never compared as a number — and never raises.
    assert await names({"property": "orders", "op": "gt", "value": 3}) == {"gold", "null_plan"}
    assert await names({"property": "vip", "op": "eq", "value": True}) == {"gold"}
    assert await names({"property": "plan", "op": "is_set"}) == {"gold", "silver"}
    assert await names({"property": "plan", "op": "is_not_set"}) == {"null_plan", "empty"}
    assert await names({"property": "last_seen", "op": "in_last_days", "days": 7}) == {"gold"}
    assert await names({"property": "last_seen", "op": "before", "value": "2026-11-01"}) == {
        "silver"
    }
    assert await names({"property": "first_name", "op": "contains", "value": "LA"}) == {"gold"}
    assert await names({"property": "created_at", "op": "is_set"}) == set(shop.ids)


async def test_list_and_segment_membership_and_groups(engine):
    shop = Shop()
    newsletter, vip_segment = uuid.uuid4(), uuid.uuid4()
    a, b = shop.profile("a"), shop.profile("b")
    shop.profile("c")
    shop.world.list_members.add((newsletter, a))
    shop.world.segment_members |= {(vip_segment, a), (vip_segment, b)}
    in_list = {"type": "list_membership", "list_id": str(newsletter)}
    in_segment = {"type": "segment_membership", "segment_id": str(vip_segment)}
    assert await shop.matching(engine, in_list) == {"a"}
    assert await shop.matching(engine, {**in_list, "op": "not_in"}) == {"b", "c"}
    assert await shop.matching(engine, {"all": [in_segment, {"not": in_list}]}) == {"b"}
    assert await shop.matching(engine, {"any": [in_list, {"not": in_segment}]}) == {"a", "c"}


async def test_language_and_random_sample(engine):
    shop = Shop()
    shop.profile("pl", locale="pl-PL")
    shop.profile("en", locale="en-GB")
    shop.profile("none")
    for i in range(30):
        shop.profile(f"p{i}")
    polish = {"type": "language", "languages": ["pl", "de"]}
    assert await shop.matching(engine, polish) == {"pl"}
    sample = {"type": "random_sample", "percent": 30, "offset": 10, "salt": "test-a"}
    expected = {n for n, pid in shop.ids.items() if 10 <= bucket(pid, "test-a") < 40}
    assert await shop.matching(engine, sample) == expected
    assert 0 < len(expected) < len(shop.ids)


async def test_names_and_values_are_bound_parameters():
    evil = "x'); DROP TABLE profiles; --"
    condition = parse_condition(
        {
            "all": [
                {"type": "property", "property": evil, "op": "eq", "value": evil},
                {
                    "type": "behaviour",
                    "metric": evil,
                    "where": [{"property": evil, "op": "contains", "value": evil}],
                },
            ]
        }
    )
    sql = str(members_query(uuid.uuid4(), condition, now=NOW).compile(dialect=postgresql.dialect()))
    assert "DROP" not in sql
