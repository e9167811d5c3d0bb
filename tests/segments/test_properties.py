"""For random condition trees over random small data, set evaluation (members_query),
single-profile evaluation (evaluate_profile) and the plain-Python reference agree."""

from __future__ import annotations

import uuid
from datetime import timedelta

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import session_scope
from segments import evaluate_profile, members_query, parse_condition
from segments.reference import World, members
from tests.segments.data import NOW, event, insert_world

LISTS = [uuid.UUID(int=1), uuid.UUID(int=2)]
SEGMENT = uuid.UUID(int=3)
METRICS = ["Placed Order", "Viewed Product", "Opened Email", "Replied to SMS"]
TIMES = [
    NOW - timedelta(hours=2),
    NOW - timedelta(days=2),
    NOW - timedelta(days=10),
    NOW - timedelta(days=40),
    NOW - timedelta(days=400),
    NOW + timedelta(days=1),
]
SINCE = NOW - timedelta(days=3)
POINTS = [None, (52.23, 21.01), (50.06, 19.94), (52.52, 13.40), (40.71, -74.0)]
TIMEZONES = [None, "Europe/Warsaw", "America/New_York", "Pacific/Kiritimati"]
DATES = [
    "1990-11-19",
    "1990-11-20",
    "1990-11-21",
    "2026-11-15",
    "2026-11-25",
    "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00",
    "2026-11-17T23:00:00+02:00",
    "not a date",
    "2026-02-30",
]

json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2.5, 10, 100]),
    st.sampled_from(["gold", "Gold", "silver", "go", "", "10"]),
    st.sampled_from(DATES),
    st.lists(st.sampled_from(["a", "b", "vip"]), max_size=2),
)
prop_keys = st.sampled_from(["plan", "age", "vip", "birthday", "tags"])


@st.composite
def worlds(draw) -> World:
    world = World(workspace_timezone=draw(st.sampled_from(["UTC", "Asia/Tokyo"])))
    n = draw(st.integers(1, 15))
    pids = [uuid.uuid4() for _ in range(n)]
    for i, pid in enumerate(pids):
        point = draw(st.sampled_from(POINTS))
        world.profiles[pid] = {
            "email": draw(st.sampled_from([None, f"P{i}@Shop.test"])),
            "phone": draw(st.sampled_from([None, f"+4860000{i:04d}", f"+1202555{i:04d}"])),
            "timezone": draw(st.sampled_from(TIMEZONES)),
            "locale": draw(st.sampled_from([None, "pl", "pl-PL", "en-GB", "plx"])),
            "country": draw(st.sampled_from([None, "PL", "US"])),
            "first_name": draw(st.sampled_from([None, "Ala", "alan", "Bob"])),
            "latitude": point and point[0],
            "longitude": point and point[1],
            "properties": draw(st.dictionaries(prop_keys, json_value, max_size=4)),
            "created_at": draw(st.sampled_from(TIMES[1:5])),
        }
        for lid in LISTS:
            if draw(st.booleans()):
                world.list_members.add((lid, pid))
        if draw(st.booleans()):
            world.segment_members.add((SEGMENT, pid))
        for channel in ("email", "sms"):
            state = draw(st.sampled_from([None, "subscribed", "unsubscribed"]))
            if state:
                world.consents[(pid, channel)] = state
                at = draw(st.sampled_from(TIMES[:5]))
                world.consent_changes.append((pid, channel, state, at))
        profile = world.profiles[pid]
        if profile["email"] and draw(st.booleans()):
            world.suppressions.add(("email", profile["email"].lower()))
        if profile["phone"] and draw(st.booleans()):
            world.suppressions.add(("sms", profile["phone"]))
    for _ in range(draw(st.integers(0, 60))):
        props = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "product_id": st.sampled_from(["A", "a", "B"]),
                    "size": st.sampled_from([1, 2, 3, "2"]),
                    "keyword": st.sampled_from(["JOIN", " join", "STOP", "JION"]),
                },
            )
        )
        world.events.append(
            event(
                draw(st.sampled_from(pids)),
                draw(st.sampled_from(METRICS)),
                draw(st.sampled_from(TIMES)),
                draw(st.sampled_from([None, 0, 5, 50, 150.5])),
                **props,
            )
        )
    return world


timeframes = st.sampled_from(
    [
        None,
        {"kind": "in_last", "amount": 5, "unit": "days"},
        {"kind": "in_last", "amount": 3, "unit": "hours"},
        {"kind": "between", "start": "2026-11-01", "end": "2026-11-19T00:00:00Z"},
        {"kind": "before", "at": "2026-11-18"},
        {"kind": "after", "at": "2026-11-10T00:00:00Z"},
        {"kind": "since_flow_start"},
    ]
)
where = st.sampled_from(
    [
        [],
        [{"property": "$value", "op": "gt", "value": 10}],
        [{"property": "product_id", "op": "eq", "value": "a"}],
        [{"property": "size", "op": "in", "value": [1, 2]}],
        [{"property": "product_id", "op": "is_not_set"}],
        [{"property": "$value", "op": "is_set"}, {"property": "size", "op": "lte", "value": 2}],
    ]
)
measures = st.one_of(
    st.builds(
        lambda op, n: {"count": {"op": op, "value": n}},
        st.sampled_from(["at_least", "at_most", "equals", "greater_than", "less_than"]),
        st.integers(0, 3),
    ),
    st.just({"count": {"op": "zero"}}),
    st.just({}),
    st.builds(
        lambda op, x: {"sum": {"op": op, "value": x}},
        st.sampled_from(["gt", "gte", "lt", "lte", "eq"]),
        st.sampled_from([0, 50, 155.5]),
    ),
)


def _behaviour(metric, filters, measure, tf, last):
    node = {"type": "behaviour", "metric": metric, "where": filters}
    if last:
        return {**node, "last": last}
    return {**node, **measure, **({"timeframe": tf} if tf else {})}


property_leaves = st.one_of(
    st.builds(
        lambda k, op, v: {"type": "property", "property": k, "op": op, "value": v},
        prop_keys,
        st.just("eq"),
        st.sampled_from(["gold", 10, True, 2.5]),
    ),
    st.builds(
        lambda k, op, v: {"type": "property", "property": k, "op": op, "value": v},
        prop_keys,
        st.just("in"),
        st.sampled_from([["gold", "silver"], [1, 2.5]]),
    ),
    st.builds(
        lambda k, op, v: {"type": "property", "property": k, "op": op, "value": v},
        prop_keys,
        st.sampled_from(["contains", "starts_with"]),
        st.sampled_from(["GO", "1"]),
    ),
    st.builds(
        lambda k, op, v: {"type": "property", "property": k, "op": op, "value": v},
        prop_keys,
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        st.sampled_from([2, 10.0]),
    ),
    st.builds(
        lambda k, op, v: {"type": "property", "property": k, "op": op, "value": v},
        prop_keys,
        st.sampled_from(["before", "after"]),
        st.sampled_from(["2026-11-18", "2026-11-20T11:00:00+01:00"]),
    ),
    st.builds(
        lambda k, op, d: {"type": "property", "property": k, "op": op, "days": d},
        prop_keys,
        st.sampled_from(["in_last_days", "in_next_days"]),
        st.sampled_from([1, 7]),
    ),
    st.builds(
        lambda k, op: {"type": "property", "property": k, "op": op},
        st.sampled_from(["birthday", "plan", "created_at", "email", "latitude"]),
        st.sampled_from(["is_set", "is_not_set"]),
    ),
    st.builds(
        lambda k: {"type": "property", "property": k, "op": "anniversary"},
        st.sampled_from(["birthday", "plan", "created_at"]),
    ),
    st.builds(
        lambda k, v: {"type": "property", "property": "tags", "op": "list_contains", "value": v},
        prop_keys,
        st.sampled_from(["vip", "a"]),
    ),
    st.builds(
        lambda op, v: {"type": "property", "property": "first_name", "op": op, "value": v},
        st.sampled_from(["eq", "contains", "starts_with"]),
        st.sampled_from(["ala", "AL"]),
    ),
    st.builds(
        lambda op, v: {"type": "property", "property": "created_at", "op": op, "value": v},
        st.sampled_from(["before", "after"]),
        st.sampled_from(["2026-11-15"]),
    ),
    st.builds(
        lambda op, v: {"type": "property", "property": "latitude", "op": op, "value": v},
        st.sampled_from(["gt", "lte", "eq"]),
        st.sampled_from([50.06, 51]),
    ),
)
leaves = st.one_of(
    st.builds(
        _behaviour,
        st.sampled_from(METRICS),
        where,
        measures,
        timeframes,
        st.sampled_from(
            [None, None, {"op": "more_than", "days": 5}, {"op": "less_than", "days": 5}]
        ),
    ),
    property_leaves,
    st.builds(
        lambda lid, op: {"type": "list_membership", "list_id": str(lid), "op": op},
        st.sampled_from(LISTS),
        st.sampled_from(["in", "not_in"]),
    ),
    st.builds(
        lambda op: {"type": "segment_membership", "segment_id": str(SEGMENT), "op": op},
        st.sampled_from(["in", "not_in"]),
    ),
    st.builds(
        lambda ch, op: {"type": "consent", "channel": ch, "op": op},
        st.sampled_from(["email", "sms", "push"]),
        st.sampled_from(["can_receive", "cannot_receive"]),
    ),
    st.builds(
        lambda ch, d: {"type": "consent", "channel": ch, "op": "subscribed_within", "days": d},
        st.sampled_from(["email", "sms"]),
        st.sampled_from([1, 5]),
    ),
    st.builds(
        lambda d: {"type": "engagement", "action": "opened", "channel": "email", "days": d},
        st.sampled_from([None, 5]),
    ),
    st.builds(
        lambda km: {
            "type": "location",
            "op": "within",
            "latitude": 52.0,
            "longitude": 20.0,
            "km": km,
        },
        st.sampled_from([200, 600]),
    ),
    st.builds(
        lambda c: {"type": "location", "op": "country_in", "countries": c},
        st.sampled_from([["pl"], ["US", "DE"]]),
    ),
    st.builds(
        lambda c: {"type": "location", "op": "phone_country_in", "countries": c},
        st.sampled_from([["PL"], ["CA"]]),
    ),
    st.builds(
        lambda k, d: {"type": "sms_keyword", "keywords": k, "days": d},
        st.sampled_from([["JOIN"], ["join", "JION"]]),
        st.sampled_from([None, 5]),
    ),
    st.builds(
        lambda langs: {"type": "language", "languages": langs},
        st.sampled_from([["pl"], ["en_GB", "de"], ["PL-pl"]]),
    ),
    st.builds(
        lambda p, o, s: {"type": "random_sample", "percent": p, "offset": o, "salt": s},
        st.sampled_from([0, 30, 50, 100]),
        st.sampled_from([0, 0]),
        st.sampled_from(["", "x"]),
    ),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(kids, min_size=1, max_size=3).map(lambda c: {"any": c}),
        kids.map(lambda c: {"not": c}),
    ),
    max_leaves=5,
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    # No shrinking, so a failure costs seconds, not minutes; derandomized, so it reproduces.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(world=worlds(), conditions=st.lists(trees, min_size=1, max_size=3))
async def test_sql_single_profile_and_reference_agree(engine, world, conditions):
    ws = await insert_world(engine, world)
    async with session_scope(engine) as session:
        for data in conditions:
            condition = parse_condition(data)
            expected = members(world, condition, now=NOW, since=SINCE)
            query = members_query(ws, condition, now=NOW, since=SINCE)
            got = set((await session.execute(query)).scalars())
            assert got == expected, (data, _diff(world, got, expected))
            single = {p for p in world.profiles if await _one(session, ws, condition, p)}
            assert single == expected, data


async def _one(session: AsyncSession, ws, condition, pid) -> bool:
    return await evaluate_profile(session, ws, condition, pid, now=NOW, since=SINCE)


def _diff(world, got, expected):
    return [
        (world.profiles[p], [e for e in world.events if e["profile_id"] == p])
        for p in got ^ expected
    ]
