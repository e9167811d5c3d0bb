"""SQL for conditions over events: behaviour, engagement and SMS keywords.

Meaning (the same in `segments.reference`):
- The events counted are the profile's events of `metric` in the timeframe that pass every
  `where` filter. Timeframes are relative to `now` (UTC): `in_last N unit`: occurred_at >
  now - N; `between`: start <= occurred_at < end; `before`: occurred_at < at; `after`:
  occurred_at > at; `since_flow_start`: occurred_at >= since; `all_time`: every event.
- `count` compares how many there are (`zero`, `at_least N`, `at_most N`, `equals N`,
  `greater_than N`, `less_than N`); `sum` compares the sum of their `value` (NULL values add
  nothing; no events sum to 0); `last more_than N`: did it at least once, and not in the last
  N days (every occurrence has occurred_at <= now - N days); `last less_than N`: did it with
  occurred_at > now - N days.
- Engagement: did the channel's received / opened / clicked metric (channels.metrics) in the
  last N days (ever when no days are given).
- SMS keyword: sent a reply whose `keyword` property, trimmed and upper-cased, is one of the
  keywords (trimmed, upper-cased), in the last N days when given.

SQL shapes (index-friendly): "did / did not" compile to correlated EXISTS / NOT EXISTS on
(workspace_id, profile_id, metric, occurred_at) — PostgreSQL runs them as hash semi/anti joins
over (workspace_id, metric, occurred_at) for a whole workspace and as index probes for one
profile; under an `any` of a set query (where EXISTS cannot become a join) they are a GROUP BY
profile_id LEFT JOINed to profiles. Counts up to CORRELATED_MAX compile to EXISTS over the
profile's events with OFFSET n-1 LIMIT 1 (stops at the n-th event) when evaluating given
profiles, or when sibling conditions of an `all` narrow the profiles first; other counts and
sums compile to one `GROUP BY profile_id` over the metric's events, LEFT JOINed to profiles.
The profile restriction is pushed into every subquery. Times relative to `now` are
`now ± interval` on the bound `now`, so a compiled statement can be reused with another `now`.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, String, and_, exists, func, literal, not_, select, true
from sqlalchemy.sql.elements import ColumnElement

from channels.metrics import REPLIED
from models import Event, Profile
from segments.compile_property import JsonValue, _ordered
from segments.conditions import (
    Behaviour,
    CountOp,
    Engagement,
    EventFilter,
    SmsKeyword,
    Timeframe,
    engagement_metric,
)

E = Event.__table__
P = Profile.__table__
UNITS = {"minutes": "minutes", "hours": "hours", "days": "days"}


CORRELATED_MAX = 10  # counts up to this compile to a correlated, limited scan per profile


def _ts(value) -> ColumnElement:
    return literal(value, DateTime(timezone=True))


def timeframe_filters(tf: Timeframe, ctx) -> list[ColumnElement]:
    at = E.c.occurred_at
    if tf.kind == "in_last":
        return [at > ctx.ago(timedelta(**{UNITS[tf.unit]: tf.amount}))]
    if tf.kind == "between":
        return [at >= _ts(tf.start), at < _ts(tf.end)]
    if tf.kind == "before":
        return [at < _ts(tf.at)]
    if tf.kind == "after":
        return [at > _ts(tf.at)]
    if tf.kind == "since_flow_start":
        return [at >= ctx.require_since()]
    return []


def event_filter(f: EventFilter, ctx) -> ColumnElement:
    if f.property != "$value":
        return JsonValue(E.c.properties, f.property).compare(str(f.op), f.value, ctx.now)
    column, op = E.c.value, str(f.op)
    if op == "is_set":
        return column.is_not(None)
    if op == "is_not_set":
        return column.is_(None)
    values = f.value if isinstance(f.value, list) else [f.value]
    numbers = [literal(Decimal(str(v)), Numeric) for v in values]
    if op in ("eq", "in"):
        return column.in_(numbers)
    return _ordered(column, op, numbers[0])


def _events(ctx, metric: str, extra: list[ColumnElement]) -> list[ColumnElement]:
    """Filters on events of one metric in this workspace (and the profile restriction)."""
    out = [E.c.workspace_id == ctx.workspace_id, E.c.metric == literal(metric, String), *extra]
    if ctx.profile_ids is not None:
        out.append(E.c.profile_id == ctx.ids_param())
    return out


def did(ctx, metric: str, extra: list[ColumnElement]) -> ColumnElement:
    """EXISTS an event of `metric` for the outer profile passing `extra`.

    Under an `any` of a set query, PostgreSQL cannot turn EXISTS into a semi join and would
    probe per profile: there the distinct profile ids are computed once and LEFT JOINed (a hash
    join at any size, unlike `IN (...)`, which degrades to a rescan per profile when its hash
    would not fit in work_mem)."""
    if ctx.in_or and ctx.profile_ids is None:
        return ctx.join_ids(select(E.c.profile_id).where(*_events(ctx, metric, extra)))
    return exists(select(literal(1)).where(E.c.profile_id == P.c.id, *_events(ctx, metric, extra)))


def _at_least(ctx, metric: str, extra: list[ColumnElement], n: int) -> ColumnElement:
    """At least n (>= 1) events, correlated: stops at the n-th event of the profile."""
    rows = select(literal(1)).where(E.c.profile_id == P.c.id, *_events(ctx, metric, extra))
    return exists(rows.offset(n - 1).limit(1))


def _correlated(ctx, n: int) -> bool:
    """Count up to n per profile rather than aggregate every profile's events: for one profile,
    or when sibling conditions of an `all` narrow the profiles first."""
    return n <= CORRELATED_MAX and (ctx.profile_ids is not None or ctx.narrowed)


def _aggregate(ctx, metric: str, extra: list[ColumnElement], measure) -> ColumnElement:
    """A per-profile aggregate LEFT JOINed to profiles; 0 for profiles without events."""
    sub = (
        select(E.c.profile_id, measure.label("v"))
        .where(*_events(ctx, metric, extra))
        .group_by(E.c.profile_id)
        .subquery(f"agg{len(ctx.joins)}")
    )
    ctx.joins.append(sub)
    return func.coalesce(sub.c.v, 0)


def behaviour(node: Behaviour, ctx) -> ColumnElement:
    extra = [*timeframe_filters(node.timeframe, ctx), *(event_filter(f, ctx) for f in node.where)]
    if node.last is not None:
        cutoff = ctx.ago(timedelta(days=node.last.days))
        recent = did(ctx, node.metric, [*extra, E.c.occurred_at > cutoff])
        if node.last.op == "less_than":
            return recent
        return and_(did(ctx, node.metric, [*extra, E.c.occurred_at <= cutoff]), not_(recent))
    if node.sum is not None:
        total = _aggregate(ctx, node.metric, extra, func.coalesce(func.sum(E.c.value), 0))
        return _ordered(total, node.sum.op, literal(Decimal(str(node.sum.value)), Numeric))
    op, n = node.count.op, node.count.value
    # Normalise to "count >= low" / "count <= high" / "count == n" and use EXISTS where it can.
    if op == CountOp.greater_than:
        op, n = CountOp.at_least, n + 1
    if op == CountOp.less_than:
        if n == 0:
            return literal(False)
        op, n = CountOp.at_most, n - 1
    if op == CountOp.zero or (op in (CountOp.equals, CountOp.at_most) and n == 0):
        return not_(did(ctx, node.metric, extra))
    if op == CountOp.at_least and n <= 1:
        return did(ctx, node.metric, extra) if n == 1 else true()
    if _correlated(ctx, n + 1):
        if op == CountOp.at_least:
            return _at_least(ctx, node.metric, extra, n)
        if op == CountOp.at_most:
            return not_(_at_least(ctx, node.metric, extra, n + 1))
        return and_(
            _at_least(ctx, node.metric, extra, n), not_(_at_least(ctx, node.metric, extra, n + 1))
        )
    count = _aggregate(ctx, node.metric, extra, func.count())
    compare = {
        CountOp.at_least: count >= n,
        CountOp.at_most: count <= n,
        CountOp.equals: count == n,
    }
    return compare[op]


def engagement(node: Engagement, ctx) -> ColumnElement:
    metric = engagement_metric(node.action, node.channel)
    extra = [] if node.days is None else [E.c.occurred_at > ctx.ago(timedelta(days=node.days))]
    return did(ctx, metric, extra)


def sms_keyword(node: SmsKeyword, ctx) -> ColumnElement:
    keyword = func.upper(func.btrim(JsonValue(E.c.properties, "keyword").text))
    wanted = [func.upper(func.btrim(literal(k, String))) for k in node.keywords]
    extra = [keyword.in_(wanted)]
    if node.days is not None:
        extra.append(E.c.occurred_at > ctx.ago(timedelta(days=node.days)))
    return did(ctx, REPLIED[node.channel], extra)
