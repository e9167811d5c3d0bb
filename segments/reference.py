"""The meaning of every condition, in plain Python over in-memory data (tests only).

Each function is a direct transcription of the definitions in the docstrings of
`segments.compile`, `segments.compile_behaviour` and `segments.compile_property`; the property
tests check that the SQL compiler agrees with it on random data.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from channels.metrics import REPLIED
from segments.conditions import (
    AllOf,
    AnyOf,
    Behaviour,
    Condition,
    ConsentCondition,
    Engagement,
    Language,
    ListMembership,
    Location,
    NotOf,
    PropertyCondition,
    RandomSample,
    SegmentMembership,
    SmsKeyword,
    engagement_metric,
    parse_instant,
)
from segments.validate import RESERVED_TYPES

ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)


@dataclass
class World:
    """Profiles are dicts of reserved columns plus `properties`; events are dicts with
    profile_id, metric, occurred_at, value (Decimal or None), properties."""

    profiles: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    list_members: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)
    segment_members: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)
    consents: dict[tuple[uuid.UUID, str], str] = field(default_factory=dict)  # -> state
    consent_changes: list[tuple[uuid.UUID, str, str, datetime]] = field(default_factory=list)
    suppressions: set[tuple[str, str]] = field(default_factory=set)  # (channel, address)
    workspace_timezone: str = "UTC"


def members(world: World, condition: Condition, *, now: datetime, since=None) -> set[uuid.UUID]:
    return {p for p in world.profiles if matches(world, condition, p, now=now, since=since)}


def matches(world: World, node: Condition, pid: uuid.UUID, *, now: datetime, since=None) -> bool:
    if isinstance(node, AllOf):
        return all(matches(world, c, pid, now=now, since=since) for c in node.all)
    if isinstance(node, AnyOf):
        return any(matches(world, c, pid, now=now, since=since) for c in node.any)
    if isinstance(node, NotOf):
        return not matches(world, node.not_, pid, now=now, since=since)
    return LEAVES[type(node)](world, node, world.profiles[pid], pid, now, since)


def bucket(profile_id: uuid.UUID, salt: str = "") -> int:
    """The random-sample bucket: first 8 hex digits of md5(salt + id) as an integer, mod 100."""
    return int(hashlib.md5(f"{salt}{profile_id}".encode()).hexdigest()[:8], 16) % 100


# --- events ------------------------------------------------------------------------------


def _in_timeframe(tf, at: datetime, now: datetime, since) -> bool:
    if tf.kind == "in_last":
        return at > now - timedelta(**{tf.unit: tf.amount})
    if tf.kind == "between":
        return tf.start <= at < tf.end
    if tf.kind == "before":
        return at < tf.at
    if tf.kind == "after":
        return at > tf.at
    if tf.kind == "since_flow_start":
        return at >= since
    return True


def _event_passes(f, event: dict[str, Any]) -> bool:
    if f.property == "$value":
        v = event["value"]
        if f.op == "is_set":
            return v is not None
        if f.op == "is_not_set":
            return v is None
        values = f.value if isinstance(f.value, list) else [f.value]
        numbers = [Decimal(str(x)) for x in values]
        return v is not None and _compare(str(f.op), v, numbers)
    return _json_test(event["properties"], f.property, str(f.op), f.value, None, None, None)


def _compare(op: str, v, operands: list) -> bool:
    first = operands[0]
    return {
        "eq": lambda: v in operands,
        "in": lambda: v in operands,
        "gt": lambda: v > first,
        "gte": lambda: v >= first,
        "lt": lambda: v < first,
        "lte": lambda: v <= first,
    }[op]()


def _events(world, pid, metric, keep) -> list[dict[str, Any]]:
    return [e for e in world.events if e["profile_id"] == pid and e["metric"] == metric and keep(e)]


def _behaviour(world, node: Behaviour, profile, pid, now, since) -> bool:
    def keep(e):
        return _in_timeframe(node.timeframe, e["occurred_at"], now, since) and all(
            _event_passes(f, e) for f in node.where
        )

    events = _events(world, pid, node.metric, keep)
    if node.last is not None:
        if not events:
            return False
        ago = now - max(e["occurred_at"] for e in events)
        cutoff = timedelta(days=node.last.days)
        return ago >= cutoff if node.last.op == "more_than" else ago < cutoff
    if node.sum is not None:
        total = sum((e["value"] for e in events if e["value"] is not None), Decimal(0))
        return _compare(node.sum.op, total, [Decimal(str(node.sum.value))])
    n, want = len(events), node.count.value
    return {
        "zero": lambda: n == 0,
        "at_least": lambda: n >= want,
        "at_most": lambda: n <= want,
        "equals": lambda: n == want,
        "greater_than": lambda: n > want,
        "less_than": lambda: n < want,
    }[node.count.op]()


def _engagement(world, node: Engagement, profile, pid, now, since) -> bool:
    metric = engagement_metric(node.action, node.channel)
    recent = (
        (lambda e: True)
        if node.days is None
        else (lambda e: e["occurred_at"] > now - timedelta(days=node.days))
    )
    return bool(_events(world, pid, metric, recent))


def _sms_keyword(world, node: SmsKeyword, profile, pid, now, since) -> bool:
    wanted = {k.strip(" ").upper() for k in node.keywords}

    def keep(e):
        keyword = e["properties"].get("keyword")
        recent = node.days is None or e["occurred_at"] > now - timedelta(days=node.days)
        return isinstance(keyword, str) and keyword.strip(" ").upper() in wanted and recent

    return bool(_events(world, pid, REPLIED[node.channel], keep))


# --- properties --------------------------------------------------------------------------


def _is_number(v) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


def _instant(v) -> datetime | None:
    if isinstance(v, datetime):
        return v
    if isinstance(v, str) and ISO_DATE.match(v):
        return parse_instant(v)
    return None


def _today(profile, world, now) -> str:
    tz = profile.get("timezone") or world.workspace_timezone or "UTC"
    return now.astimezone(ZoneInfo(tz)).strftime("%m-%d")


def _date_test(op, v, value, days, now) -> bool:
    at = _instant(v)
    if at is None:
        return False
    if op == "before":
        return at < parse_instant(value)
    if op == "after":
        return at > parse_instant(value)
    if op == "in_last_days":
        return now - timedelta(days=days) < at <= now
    return now <= at < now + timedelta(days=days)  # in_next_days


def _json_test(props: dict, key: str, op: str, value, days, now, today) -> bool:
    v = props.get(key)
    if op == "is_set":
        return v is not None
    if op == "is_not_set":
        return v is None
    values = value if isinstance(value, list) else [value]
    if op in ("eq", "in"):
        if isinstance(values[0], str):
            return isinstance(v, str) and v.lower() in [x.lower() for x in values]
        if isinstance(values[0], bool):
            return isinstance(v, bool) and v in values
        return _is_number(v) and any(v == x for x in values)
    if op == "contains":
        return isinstance(v, str) and value.lower() in v.lower()
    if op == "starts_with":
        return isinstance(v, str) and v.lower().startswith(value.lower())
    if op in ("gt", "gte", "lt", "lte"):
        return _is_number(v) and _compare(op, v, [value])
    if op == "list_contains":
        return isinstance(v, list) and any(
            type(x) is type(value)
            and x == value
            or _is_number(x)
            and _is_number(value)
            and x == value
            for x in v
        )
    if op == "anniversary":
        return isinstance(v, str) and bool(ISO_DATE.match(v)) and v[5:10] == today
    return _date_test(op, v, value, days, now)


def _column_test(profile, name, op, value, days, now, today) -> bool:
    v, kind = profile.get(name), RESERVED_TYPES[name]
    if op == "is_set":
        return v is not None
    if op == "is_not_set":
        return v is None
    if v is None:
        return False
    values = value if isinstance(value, list) else [value]
    if kind == "string":
        if op in ("eq", "in"):
            return v.lower() in [x.lower() for x in values]
        if op == "contains":
            return value.lower() in v.lower()
        return v.lower().startswith(value.lower())
    if kind == "number":
        return _compare(op, v, values)
    if op == "anniversary":
        return v.astimezone(ZoneInfo(today[1])).strftime("%m-%d") == today[0]
    return _date_test(op, v, value, days, now)


def _property(world, node: PropertyCondition, profile, pid, now, since) -> bool:
    today = _today(profile, world, now)
    args = (str(node.op), node.value, node.days, now, today)
    if node.property in RESERVED_TYPES:
        tz = profile.get("timezone") or world.workspace_timezone or "UTC"
        return _column_test(profile, node.property, *args[:-1], (today, tz))
    return _json_test(profile.get("properties", {}), node.property, *args)


# --- memberships, consent, location, language, sampling ----------------------------------


def _list(world, node: ListMembership, profile, pid, now, since) -> bool:
    return ((node.list_id, pid) in world.list_members) == (node.op == "in")


def _segment(world, node: SegmentMembership, profile, pid, now, since) -> bool:
    return ((node.segment_id, pid) in world.segment_members) == (node.op == "in")


def _consent(world, node: ConsentCondition, profile, pid, now, since) -> bool:
    channel = str(node.channel)
    subscribed = world.consents.get((pid, channel)) == "subscribed"
    if node.op == "subscribed_within":
        return subscribed and any(
            p == pid and c == channel and s == "subscribed" and at > now - timedelta(days=node.days)
            for p, c, s, at in world.consent_changes
        )
    can = subscribed
    if channel in ("email", "sms", "whatsapp"):
        address = profile.get("email" if channel == "email" else "phone")
        if channel == "email" and address is not None:
            address = address.lower()
        can = subscribed and address is not None and (channel, address) not in world.suppressions
    return can if node.op == "can_receive" else not can


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat, dlon = math.radians(lat2 - lat1), math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def _location(world, node: Location, profile, pid, now, since) -> bool:
    if node.op == "country_in":
        return (profile.get("country") or "").upper() in node.countries
    if node.op == "phone_country_in":
        phone = profile.get("phone") or ""
        codes = {f"+{phonenumbers.country_code_for_region(c)}" for c in node.countries}
        return any(phone.startswith(c) for c in codes)
    lat, lon = profile.get("latitude"), profile.get("longitude")
    if lat is None or lon is None:
        return False
    return haversine_km(node.latitude, node.longitude, lat, lon) <= node.km


def _language(world, node: Language, profile, pid, now, since) -> bool:
    locale = (profile.get("locale") or "").lower()
    if not locale:
        return False
    for language in node.languages:
        lang = language.replace("_", "-").lower()
        if locale == lang or locale.startswith(lang + "-"):
            return True
    return False


def _random(world, node: RandomSample, profile, pid, now, since) -> bool:
    return node.offset <= bucket(pid, node.salt) < node.offset + node.percent


LEAVES = {
    Behaviour: _behaviour,
    Engagement: _engagement,
    SmsKeyword: _sms_keyword,
    PropertyCondition: _property,
    ListMembership: _list,
    SegmentMembership: _segment,
    ConsentCondition: _consent,
    Location: _location,
    Language: _language,
    RandomSample: _random,
}
