"""Compiling a condition to one SQL query (SQLAlchemy Core) over profiles, events and memberships.

`members_query` is the only compiler: whole-workspace evaluation, incremental evaluation of some
profiles and single-profile evaluation (`evaluate_profile`) all run its query, restricted by
`profile_ids` (pushed down into every event subquery so it stays an index probe), so a flow split
and a segment can never disagree. With `profile_ids` some leaves take a per-profile shape
(correlated EXISTS / limited counts instead of joined aggregates; see `compile_behaviour`) with
the same meaning. Every value is a bound parameter; `now`, `since` and the profile ids are named
ones, so `evaluate_profile` caches the statement per condition and only rebinds them. Inside an
`all`, a `can_receive` / `subscribed_within` consent leaf's "subscribed" test is not repeated
by its siblings on the same channel.

Meaning of the leaves compiled here (the same in `segments.reference`):
- list / segment membership: a row in list_members / segment_members (the segment's current,
  materialized members — never its definition, so segments do not recurse).
- consent `can_receive` on a channel: the consent row is `subscribed`, the profile has the
  channel's address (email: email; sms and whatsapp: phone; push: none needed) and that address
  (lower-cased email, E.164 phone) is not in suppressions for the channel. `cannot_receive` is
  its negation. `subscribed_within N`: subscribed now, and a consent change to `subscribed` on
  the channel happened in the last N days.
- location `within`: haversine distance (earth radius 6371.0088 km) <= km; profiles without
  coordinates never match. `country_in`: profile country. `phone_country_in`: the phone starts
  with the calling code of one of the regions (+1 is shared by the US, Canada and the Caribbean).
- language: the locale equals a language or starts with it plus "-" ("pl" matches "pl-PL").
- random sample: bucket = int(first 8 hex digits of md5(salt || profile id text)) % 100 is in
  [offset, offset + percent).
- Every leaf is TRUE or FALSE, never NULL, so `not` is the exact complement.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import (
    BigInteger,
    DateTime,
    Select,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, BIT, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from models import Consent, ConsentChange, ListMember, Profile, Suppression, Workspace
from segments import compile_behaviour as behaviour
from segments.compile_property import JsonValue, column_compare, shift
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
    dump_condition,
)
from segments.validate import RESERVED_TYPES, ConditionError, ConditionInvalid, static_errors

P = Profile.__table__
LM = ListMember.__table__
CONSENTS = Consent.__table__
CHANGES = ConsentChange.__table__
SUPPRESSIONS = Suppression.__table__
WS = Workspace.__table__
SEGMENT_MEMBERS = table(
    "segment_members",
    column("segment_id", UUID(as_uuid=True)),
    column("profile_id", UUID(as_uuid=True)),
    column("workspace_id", UUID(as_uuid=True)),
)
EARTH_KM = 6371.0088


NOW_PARAM, SINCE_PARAM, IDS_PARAM = "segment_now", "segment_since", "segment_profile_ids"
TS = DateTime(timezone=True)


class Context:
    """What one compilation needs: parameters, and the aggregates to join to profiles.

    `now`, `since` and the profile ids are named bind parameters (`NOW_PARAM`, ...) carrying the
    values given, so a compiled statement can be re-executed with other values."""

    def __init__(self, workspace_id, now, since, profile_ids) -> None:
        self.workspace_id = workspace_id
        self.now = bindparam(NOW_PARAM, now, type_=TS)
        self.since_value = since
        self.since = bindparam(SINCE_PARAM, since, type_=TS)
        self.profile_ids = None if profile_ids is None else list(profile_ids)
        self._ids = bindparam(IDS_PARAM, self.profile_ids, type_=ARRAY(UUID(as_uuid=True)))
        self.joins: list = []
        self.path = ""
        self.in_or = False  # inside an `any`: EXISTS leaves compile to joined id sets
        self.narrowed = False  # a conjunct of an `all` (not under an `any`) with siblings
        self.subscribed: frozenset[str] = frozenset()  # channels known subscribed (AND siblings)

    def ids_param(self) -> ColumnElement:
        return any_(self._ids)

    def join_ids(self, ids: Select) -> ColumnElement:
        """TRUE for the profiles among `ids` (a SELECT of profile_id), LEFT JOINed to profiles."""
        sub = ids.group_by(ids.selected_columns[0]).subquery(f"ids{len(self.joins)}")
        self.joins.append(sub)
        return sub.c.profile_id.is_not(None)

    def ago(self, delta: timedelta) -> ColumnElement:
        return shift(self.now, -delta)

    def require_since(self) -> ColumnElement:
        if self.since_value is None:
            raise ConditionInvalid(
                [ConditionError(self.path, "'since_flow_start' needs the flow's start time")]
            )
        return self.since

    def timezone(self) -> ColumnElement:
        workspace_tz = select(WS.c.timezone).where(WS.c.id == self.workspace_id)
        return func.coalesce(P.c.timezone, workspace_tz.scalar_subquery(), "UTC")


def members_query(
    workspace_id: uuid.UUID,
    condition: Condition,
    *,
    now: datetime,
    since: datetime | None = None,
    profile_ids: Sequence[uuid.UUID] | None = None,
) -> Select:
    """SELECT profile_id of the workspace's profiles matching `condition` (each once).

    `now`/`since` must be timezone-aware. Raises ConditionInvalid for a definition that cannot
    compile (run `validate_condition` first to get every error at once)."""
    if errors := static_errors(condition, in_flow=True):
        raise ConditionInvalid(errors)
    ctx = Context(workspace_id, now, since, profile_ids)
    where = _node(condition, ctx, "")
    source = P
    for sub in ctx.joins:
        source = source.outerjoin(sub, sub.c.profile_id == P.c.id)
    query = select(P.c.id.label("profile_id")).select_from(source)
    query = query.where(P.c.workspace_id == workspace_id)
    if profile_ids is not None:
        query = query.where(P.c.id == ctx.ids_param())
    return query.where(where)


_PROFILE_QUERIES: OrderedDict[tuple, Select] = OrderedDict()
PROFILE_QUERIES_MAX = 512


async def evaluate_profile(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    condition: Condition,
    profile_id: uuid.UUID,
    *,
    now: datetime,
    since: datetime | None = None,
) -> bool:
    """Whether one profile matches: `members_query` restricted to it.

    The statement is built once per (workspace, condition, whether `since` is given) and kept
    in an LRU; later calls only bind `now`, `since` and the profile id (SQLAlchemy's compiled
    cache then skips compiling too)."""
    key = (workspace_id, json.dumps(dump_condition(condition), sort_keys=True), since is None)
    query = _PROFILE_QUERIES.get(key)
    if query is None:
        query = members_query(
            workspace_id, condition, now=now, since=since, profile_ids=[profile_id]
        )
        _PROFILE_QUERIES[key] = query
        if len(_PROFILE_QUERIES) > PROFILE_QUERIES_MAX:
            _PROFILE_QUERIES.popitem(last=False)
    else:
        _PROFILE_QUERIES.move_to_end(key)
    params = {NOW_PARAM: now, IDS_PARAM: [profile_id]}
    if since is not None:
        params[SINCE_PARAM] = since
    return (await session.execute(query, params)).first() is not None


def _node(node: Condition, ctx: Context, path: str) -> ColumnElement:
    if isinstance(node, AllOf):
        # A consent leaf checked in this `all` holds for its siblings: they need not repeat its
        # "consent row is subscribed" test (the whole `all` is false when it does not hold).
        providers: dict[str, int] = {}
        for i, c in enumerate(node.all):
            if isinstance(c, ConsentCondition) and c.op in SUBSCRIBED_OPS:
                providers.setdefault(str(c.channel), i)
        outer, narrowed, parts = ctx.subscribed, ctx.narrowed, []
        ctx.narrowed = narrowed or (len(node.all) > 1 and not ctx.in_or)
        for i, c in enumerate(node.all):
            ctx.subscribed = outer | {ch for ch, j in providers.items() if j != i}
            parts.append(_node(c, ctx, _at(path, f"all[{i}]")))
        ctx.subscribed, ctx.narrowed = outer, narrowed
        return and_(*parts)
    if isinstance(node, AnyOf):
        outer, narrowed = ctx.in_or, ctx.narrowed
        ctx.in_or, ctx.narrowed = True, False
        parts = [_node(c, ctx, _at(path, f"any[{i}]")) for i, c in enumerate(node.any)]
        ctx.in_or, ctx.narrowed = outer, narrowed
        return or_(*parts)
    if isinstance(node, NotOf):
        return not_(_node(node.not_, ctx, _at(path, "not")))
    ctx.path = _at(path, "timeframe")
    return LEAVES[type(node)](node, ctx)


def _at(path: str, step: str) -> str:
    return f"{path}.{step}" if path else step


def _never_null(expr: ColumnElement) -> ColumnElement:
    return func.coalesce(expr, false())


def _property(node: PropertyCondition, ctx: Context) -> ColumnElement:
    op, tz = str(node.op), ctx.timezone() if node.op == "anniversary" else None
    if node.property in RESERVED_TYPES:
        kind = str(RESERVED_TYPES[node.property])
        expr = column_compare(P.c[node.property], kind, op, node.value, ctx.now, tz, node.days)
    else:
        expr = JsonValue(P.c.properties, node.property).compare(
            op, node.value, ctx.now, tz, node.days
        )
    return _never_null(expr)


def _list(node: ListMembership, ctx: Context) -> ColumnElement:
    member = exists(
        select(literal(1)).where(
            LM.c.list_id == node.list_id,
            LM.c.profile_id == P.c.id,
            LM.c.workspace_id == ctx.workspace_id,
        )
    )
    return member if node.op == "in" else not_(member)


def _segment(node: SegmentMembership, ctx: Context) -> ColumnElement:
    sm = SEGMENT_MEMBERS
    member = exists(
        select(literal(1)).where(
            sm.c.segment_id == node.segment_id,
            sm.c.profile_id == P.c.id,
            sm.c.workspace_id == ctx.workspace_id,
        )
    )
    return member if node.op == "in" else not_(member)


def _address(channel: str) -> ColumnElement | None:
    return {"email": func.lower(P.c.email), "sms": P.c.phone, "whatsapp": P.c.phone}.get(channel)


SUBSCRIBED_OPS = ("can_receive", "subscribed_within")


def _consent(node: ConsentCondition, ctx: Context) -> ColumnElement:
    channel = literal(str(node.channel), String)
    if str(node.channel) in ctx.subscribed:
        subscribed = true()  # a sibling in an enclosing `all` checks it
    else:
        subscribed = exists(
            select(literal(1)).where(
                CONSENTS.c.profile_id == P.c.id,
                CONSENTS.c.channel == channel,
                CONSENTS.c.state == "subscribed",
            )
        )
    if node.op == "subscribed_within":
        filters = [
            CHANGES.c.channel == channel,
            CHANGES.c.state == "subscribed",
            CHANGES.c.occurred_at > ctx.ago(timedelta(days=node.days)),
        ]
        if ctx.in_or and ctx.profile_ids is None:  # see compile_behaviour.did
            recently = ctx.join_ids(
                select(CHANGES.c.profile_id).where(
                    CHANGES.c.workspace_id == ctx.workspace_id, *filters
                )
            )
        else:
            recently = exists(select(literal(1)).where(CHANGES.c.profile_id == P.c.id, *filters))
        return and_(subscribed, recently)
    address = _address(str(node.channel))
    can = subscribed
    if address is not None:
        suppressed = exists(
            select(literal(1)).where(
                SUPPRESSIONS.c.workspace_id == ctx.workspace_id,
                SUPPRESSIONS.c.channel == channel,
                SUPPRESSIONS.c.address == address,
            )
        )
        can = and_(subscribed, address.is_not(None), not_(suppressed))
    return can if node.op == "can_receive" else not_(can)


def _location(node: Location, ctx: Context) -> ColumnElement:
    if node.op == "country_in":
        return _never_null(
            func.upper(P.c.country).in_([literal(c, String) for c in node.countries])
        )
    if node.op == "phone_country_in":
        codes = sorted({f"+{phonenumbers.country_code_for_region(c)}" for c in node.countries})
        return _never_null(or_(*[func.starts_with(P.c.phone, literal(c, String)) for c in codes]))
    lat1, lat2 = func.radians(P.c.latitude), func.radians(literal(node.latitude))
    dlat = func.radians(literal(node.latitude) - P.c.latitude)
    dlon = func.radians(literal(node.longitude) - P.c.longitude)
    a = func.power(func.sin(dlat / 2), 2) + func.cos(lat1) * func.cos(lat2) * func.power(
        func.sin(dlon / 2), 2
    )
    distance = 2 * EARTH_KM * func.asin(func.least(1.0, func.sqrt(a)))
    return _never_null(distance <= literal(node.km))


def _language(node: Language, ctx: Context) -> ColumnElement:
    locale = func.lower(P.c.locale)
    tests = []
    for language in node.languages:
        lang = literal(language.replace("_", "-").lower(), String)
        tests += [locale == lang, func.starts_with(locale, lang + "-")]
    return _never_null(or_(*tests))


def _random(node: RandomSample, ctx: Context) -> ColumnElement:
    if node.percent == 0:
        return false()
    if node.percent == 100:
        return true()
    digest = func.md5(literal(node.salt, String) + cast(P.c.id, Text))
    bucket = cast(cast(literal("x", String) + func.substr(digest, 1, 8), BIT(32)), BigInteger) % 100
    return and_(bucket >= node.offset, bucket < node.offset + node.percent)


LEAVES = {
    Behaviour: behaviour.behaviour,
    Engagement: behaviour.engagement,
    SmsKeyword: behaviour.sms_keyword,
    PropertyCondition: _property,
    ListMembership: _list,
    SegmentMembership: _segment,
    ConsentCondition: _consent,
    Location: _location,
    Language: _language,
    RandomSample: _random,
}
