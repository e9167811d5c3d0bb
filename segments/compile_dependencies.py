"""What a condition reads: which events, properties, lists, segments and consents can change its
result, and whether time alone can. The incremental updater uses this to pick the segments an
event or a profile change may affect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from channels.metrics import REPLIED
from segments.conditions import (
    Behaviour,
    Condition,
    ConsentCondition,
    Engagement,
    Language,
    ListMembership,
    Location,
    PropertyCondition,
    SegmentMembership,
    SmsKeyword,
    engagement_metric,
    walk,
)

_TIME_OPS = {"in_last_days", "in_next_days", "anniversary"}
_LOCATION_COLUMNS = {
    "within": {"latitude", "longitude"},
    "country_in": {"country"},
    "phone_country_in": {"phone"},
}


@dataclass
class Dependencies:
    metrics: set[str] = field(default_factory=set)
    properties: set[str] = field(default_factory=set)  # custom and reserved column names
    lists: set[uuid.UUID] = field(default_factory=set)
    segments: set[uuid.UUID] = field(default_factory=set)
    consent_channels: set[str] = field(default_factory=set)  # consents and suppressions
    time_dependent: bool = False  # the result can change as `now` moves, with no new data


def dependencies(condition: Condition) -> Dependencies:
    deps = Dependencies()
    for _, node in walk(condition):
        if isinstance(node, Behaviour):
            deps.metrics.add(node.metric)
            moving = node.timeframe.kind == "in_last" or node.last is not None
            deps.time_dependent |= moving
        elif isinstance(node, Engagement):
            deps.metrics.add(engagement_metric(node.action, node.channel))
            deps.time_dependent |= node.days is not None
        elif isinstance(node, SmsKeyword):
            deps.metrics.add(REPLIED[node.channel])
            deps.time_dependent |= node.days is not None
        elif isinstance(node, PropertyCondition):
            deps.properties.add(node.property)
            if node.op in _TIME_OPS:
                deps.time_dependent = True
            if node.op == "anniversary":
                deps.properties.add("timezone")
        elif isinstance(node, ListMembership):
            deps.lists.add(node.list_id)
        elif isinstance(node, SegmentMembership):
            deps.segments.add(node.segment_id)
        elif isinstance(node, ConsentCondition):
            deps.consent_channels.add(str(node.channel))
            deps.properties |= {"email"} if node.channel == "email" else set()
            deps.properties |= {"phone"} if node.channel in ("sms", "whatsapp") else set()
            deps.time_dependent |= node.op == "subscribed_within"
        elif isinstance(node, Location):
            deps.properties |= _LOCATION_COLUMNS[node.op]
        elif isinstance(node, Language):
            deps.properties.add("locale")
    return deps
