"""Benchmark: the example segments (examples/segments) compiled, against hand-written SQL.

    .venv/bin/python -m bench.segments [--profiles 1000000] [--events 10000000] [--samples 1000]

Self-contained: uses DATABASE_URL when set (a fresh database is created next to it and dropped
after), else an embedded PostgreSQL (pgserver) in a temporary directory. Generates one workspace
with COPY: profiles (phones, locales, locations around Poland, created over two years), SMS and
email consents with their history, and events over two years (views, carts, checkouts, orders
with values, messages received / opened / clicked, SMS replies with keywords), most of them
recent and from a minority of active profiles.

For each example segment it prints: the full evaluation (count of the compiled `members_query`),
the same count by a hand-written query and their ratio (best of three alternating runs each; the
two must agree), the first
materialization (`refresh_segment`), the single-profile evaluation (`evaluate_profile`, median
and p99 over `--samples` profiles), and the incremental update after one event (the outbox
router for a batch of one event, median and p99). Targets: full < 3 s with ratio <= 1.5,
single-profile p99 < 5 ms, incremental < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml
from sqlalchemy import func, select, text

from bench.common import fresh_database, postgres
from bench.import_profiles import SERVER_SETTINGS
from core.db import (
    create_async_engine,
    libpq_url,
    session_factory,
    session_scope,
    sqlalchemy_url,
)
from core.tenancy import create_workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "segments"
DAY = 86_400
SPAN_DAYS = 730

# (metric, weight)
METRICS = [
    ("Viewed Product", 40),
    ("Active on Site", 14),
    ("Added to Cart", 9),
    ("Started Checkout", 4),
    ("Placed Order", 4),
    ("Received SMS", 9),
    ("Clicked SMS", 2),
    ("Received Email", 10),
    ("Opened Email", 5),
    ("Clicked Email", 2),
    ("Replied to SMS", 1),
]
KEYWORDS = ["JOIN", "join", " Join ", "JION", "STOP", "INFO", "YES", "SALE"]
LOCALES = [("pl-PL", 45), ("pl", 5), ("en-US", 20), ("en-GB", 10), ("de-DE", 10), ("", 10)]

# The examples as hand-written SQL: what a DBA would write for the same meaning.
CAN_SMS = (
    "EXISTS (SELECT 1 FROM consents c WHERE c.profile_id = p.id AND c.channel = 'sms' "
    "AND c.state = 'subscribed') AND p.phone IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
    "suppressions s WHERE s.workspace_id = :ws AND s.channel = 'sms' AND s.address = p.phone)"
)


def _did(metric: str, since: str = "", extra: str = "") -> str:
    when = f" AND e.occurred_at > :now - interval '{since}'" if since else ""
    return (
        f"EXISTS (SELECT 1 FROM events e WHERE e.workspace_id = :ws AND e.profile_id = p.id "
        f"AND e.metric = '{metric}'{when}{extra})"
    )


HAND_SQL: dict[str, str] = {
    "All SMS subscribers": CAN_SMS,
    "Highly engaged SMS": f"{CAN_SMS} AND (EXISTS (SELECT 1 FROM consent_changes h WHERE "
    "h.profile_id = p.id AND h.channel = 'sms' AND h.state = 'subscribed' "
    "AND h.occurred_at > :now - interval '30 days') OR " + _did("Clicked SMS", "90 days") + ")",
    "Prefers SMS": f"{CAN_SMS} AND {_did('Clicked SMS', '90 days')} "
    f"AND NOT {_did('Opened Email', '90 days')}",
    "SMS VIP": f"{CAN_SMS} AND (SELECT coalesce(sum(e.value), 0) FROM events e "
    "WHERE e.workspace_id = :ws AND e.profile_id = p.id AND e.metric = 'Placed Order') > 500",
    "High intent": f"{CAN_SMS} AND (SELECT count(*) FROM events e WHERE e.workspace_id = :ws "
    "AND e.profile_id = p.id AND e.metric = 'Viewed Product' "
    "AND e.occurred_at > :now - interval '5 days') >= 2 "
    f"AND {_did('Started Checkout', '5 days')} AND NOT {_did('Placed Order', '5 days')}",
    "Near the Warsaw store": f"{CAN_SMS} AND p.latitude IS NOT NULL AND 2 * 6371.0088 * asin("
    "least(1.0, sqrt(power(sin(radians(52.2297 - p.latitude) / 2), 2) + cos(radians(52.2297)) "
    "* cos(radians(p.latitude)) * power(sin(radians(21.0122 - p.longitude) / 2), 2)))) <= 50",
    "SMS budget shoppers": f"{CAN_SMS} AND {_did('Placed Order')} "
    f"AND NOT {_did('Placed Order', extra=' AND e.value >= 40')}",
    "Sent keyword JOIN": _did(
        "Replied to SMS",
        extra=" AND upper(btrim(e.properties->>'keyword')) IN ('JOIN', 'JION', 'JOINN', "
        "'JOIN NOW')",
    ),
    "Polish-speaking SMS subscribers": f"{CAN_SMS} AND (lower(p.locale) = 'pl' "
    "OR lower(p.locale) LIKE 'pl-%')",
}


def hand_query(name: str) -> str:
    """The hand-written members query of an example (params :ws, :now)."""
    return (
        "SELECT p.id AS profile_id FROM profiles p "
        f"WHERE p.workspace_id = :ws AND ({HAND_SQL[name]})"
    )


def examples() -> list[dict]:
    return [yaml.safe_load(f.read_text()) for f in sorted(EXAMPLES.glob("*.yaml"))]


# --- data ---------------------------------------------------------------------------------


def _weighted(pairs, rnd: random.Random, k: int) -> list:
    values, weights = zip(*pairs, strict=True)
    return rnd.choices(values, weights=weights, k=k)


def _copy(conn: psycopg.Connection, sql: str, lines) -> None:
    with conn.cursor().copy(sql) as copy:
        buf = io.StringIO()
        for i, line in enumerate(lines, 1):
            buf.write(line)
            if i % 50_000 == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def generate(
    url: str, ws: uuid.UUID, n_profiles: int, n_events: int, now: datetime, seed: int = 11
) -> list[uuid.UUID]:
    """Profiles, consents and events of one workspace, by COPY; returns the profile ids."""
    rnd = random.Random(seed)
    ids = [uuid.UUID(int=rnd.getrandbits(128), version=4) for _ in range(n_profiles)]
    locales = _weighted(LOCALES, rnd, n_profiles)
    t0 = now.timestamp()

    def ts(seconds_ago: float) -> str:
        return datetime.fromtimestamp(t0 - seconds_ago, UTC).isoformat()

    def profiles():
        for i, pid in enumerate(ids):
            located = rnd.random() < 0.7
            lat = f"{rnd.uniform(49.0, 54.8):.5f}" if located else "\\N"
            lon = f"{rnd.uniform(14.1, 24.1):.5f}" if located else "\\N"
            loc = locales[i] or "\\N"
            yield (
                f"{pid}\t{ws}\tc{i}@example.com\t+4860{i:07d}\t{loc}\tPL\t{lat}\t{lon}\t{{}}\t"
                f"{ts(rnd.random() * SPAN_DAYS * DAY)}\n"
            )

    def consents():
        for pid in ids:
            for channel, share in (("sms", 0.4), ("email", 0.6)):
                if rnd.random() < share:
                    state = "subscribed" if rnd.random() < 0.85 else "unsubscribed"
                    # Skewed to recent: a few percent subscribed in the last 30 days.
                    at = ts((rnd.random() ** 2) * SPAN_DAYS * DAY)
                    yield f"{pid}\t{channel}\t{ws}\t{state}\tapi\t{at}\n"

    def events():
        # A minority of profiles does most: pick by a power law over a shuffled order.
        metrics = _weighted(METRICS, rnd, n_events)
        for j in range(n_events):
            pid = ids[int(n_profiles * rnd.random() ** 2.2)]
            metric = metrics[j]
            ago = (rnd.random() ** 2.5) * SPAN_DAYS * DAY
            value, props = "\\N", "{}"
            if metric == "Placed Order":
                value = f"{math.exp(rnd.gauss(3.6, 0.8)):.2f}"
            elif metric == "Replied to SMS":
                props = json.dumps({"keyword": rnd.choice(KEYWORDS)})
            yield f"{ws}\t{pid}\t{metric}\tb{j}\t{ts(ago)}\t{value}\t{props}\n"

    with psycopg.connect(libpq_url(url)) as conn:
        _copy(
            conn,
            "COPY profiles (id, workspace_id, email, phone, locale, country, latitude, "
            "longitude, properties, created_at) FROM STDIN",
            profiles(),
        )
        consent_rows = list(consents())
        _copy(
            conn,
            "COPY consents (profile_id, channel, workspace_id, state, source, updated_at) "
            "FROM STDIN",
            consent_rows,
        )
        _copy(
            conn,
            "COPY consent_changes (profile_id, channel, workspace_id, state, source, "
            "occurred_at) FROM STDIN",
            consent_rows,
        )
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' "
            "AND indexname NOT LIKE '%pkey'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        _copy(
            conn,
            "COPY events (workspace_id, profile_id, metric, message_id, occurred_at, "
            "value, properties) FROM STDIN",
            events(),
        )
        for _, definition in indexes:
            conn.execute(definition)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return ids


# --- measurements -------------------------------------------------------------------------


def _ms(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def _after_change(engine, ws, ids, condition, now, rnd, samples) -> list[float]:
    """The router's work for a batch of one event of a metric the segment reads (segments that
    read no metric: `refresh_for_profiles` after a consent/profile change), rolled back."""
    from ingest.outbox import StoredEvent
    from segments import dependencies
    from segments.updates import CONSENTS, PROPERTIES, SegmentEventRouter, refresh_for_profiles

    router = SegmentEventRouter()
    metrics = sorted(dependencies(condition).metrics)
    took = []
    for i in range(min(200, samples)):
        pid = rnd.choice(ids)
        async with session_factory(engine)() as session:
            start = time.perf_counter()
            if metrics:
                event = StoredEvent(-i - 1, ws, pid, metrics[0], now, None, {})
                await router.route(session, [event])
            else:
                await refresh_for_profiles(
                    session, ws, [pid], changed={CONSENTS, PROPERTIES}, now=now
                )
            took.append(time.perf_counter() - start)
            await session.rollback()
    return took


async def _explain(conn, name: str, query, ws: uuid.UUID, now: datetime) -> None:
    """The plans of both queries, for an example where the compiled one is slower."""
    from sqlalchemy.dialects import postgresql

    sql = select(func.count()).select_from(query)
    compiled = sql.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    print(f"--- {name}: compiled SQL\n{compiled}")
    for label, statement, params in (
        ("compiled", text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"), {}),
        (
            "hand",
            text(f"EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ({hand_query(name)}) q"),
            {"ws": ws, "now": now},
        ),
    ):
        plan = (await conn.execute(statement, params)).scalars()
        print(f"--- {name}: {label} plan\n" + "\n".join(plan), flush=True)


async def measure(
    url: str,
    ws: uuid.UUID,
    ids: list[uuid.UUID],
    now: datetime,
    samples: int,
    explain: bool = False,
):
    from segments import condition_adapter, evaluate_profile, members_query
    from segments.membership import refresh_segment

    engine = create_async_engine(sqlalchemy_url(url), pool_size=4)
    dialect = engine.dialect
    rnd = random.Random(5)
    rows = []
    try:
        for example in examples():
            name = example["name"]
            condition = condition_adapter.validate_python(example["definition"])
            async with session_scope(engine) as session:
                seg = uuid.uuid4()
                await session.execute(
                    text(
                        "INSERT INTO segments (id, workspace_id, name, definition) "
                        "VALUES (:id, :ws, :name, CAST(:d AS jsonb))"
                    ),
                    {"id": seg, "ws": ws, "name": name, "d": json.dumps(example["definition"])},
                )
            query = members_query(ws, condition, now=now).subquery()
            async with engine.connect() as conn:
                # Alternate the two, three rounds, best of each: neither runs on colder caches.
                compiled_sql = select(func.count()).select_from(query)
                hand_sql = text(f"SELECT count(*) FROM ({hand_query(name)}) q")
                full = manual = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    compiled = (await conn.execute(compiled_sql)).scalar()
                    full = min(full, time.perf_counter() - start)
                    start = time.perf_counter()
                    hand = (await conn.execute(hand_sql, {"ws": ws, "now": now})).scalar()
                    manual = min(manual, time.perf_counter() - start)
                if explain and full > 1.5 * manual:
                    await _explain(conn, name, query, ws, now)
            async with session_scope(engine) as session:
                start = time.perf_counter()
                await refresh_segment(session, ws, seg, now=now, condition=condition)
                materialize = time.perf_counter() - start
            single = []
            async with session_factory(engine)() as session:
                # Untimed first call: evaluate_profile builds and compiles the statement once per
                # condition (cached); what is measured is the repeated evaluation.
                await evaluate_profile(session, ws, condition, ids[0], now=now)
                for pid in rnd.sample(ids, min(samples, len(ids))):
                    start = time.perf_counter()
                    await evaluate_profile(session, ws, condition, pid, now=now)
                    single.append(time.perf_counter() - start)
            build = []  # building and compiling the query (evaluate_profile does it once, cached)
            for pid in ids[:200]:
                start = time.perf_counter()
                members_query(ws, condition, now=now, profile_ids=[pid]).compile(dialect=dialect)
                build.append(time.perf_counter() - start)
            incremental = await _after_change(engine, ws, ids, condition, now, rnd, samples)
            async with session_scope(engine) as session:  # keep only this one segment
                await session.execute(text("DELETE FROM segments WHERE id = :id"), {"id": seg})
            rows.append(
                (name, compiled, hand, full, manual, materialize, _ms(single), _ms(incremental))
            )
            r = rows[-1]
            agree = "" if compiled == hand else f" (hand {hand:,}!)"
            print(
                f"{name:<32} members {compiled:>9,}{agree}"
                f"  full {full:6.3f} s  hand {manual:6.3f} s  ratio {full / max(manual, 1e-6):4.2f}"
                f"  materialize {materialize:6.3f} s"
                f"  single p50 {r[6][0]:5.2f} p99 {r[6][1]:6.2f} ms"
                f" (python {statistics.median(build) * 1000:4.2f} ms)"
                f"  after-event p50 {r[7][0]:5.2f} p99 {r[7][1]:6.2f} ms",
                flush=True,
            )
    finally:
        await engine.dispose()
    return rows


async def _workspace(url: str) -> uuid.UUID:
    engine = create_async_engine(sqlalchemy_url(url), pool_size=1)
    try:
        async with session_scope(engine) as session:
            workspace, _ = await create_workspace(session, "Bench shop")
        return workspace.id
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument(
        "--explain", action="store_true", help="Print both plans where the compiled SQL is slower"
    )
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres(Path(tmp), server_settings=SERVER_SETTINGS) as pg,
        fresh_database(pg.admin_url) as url,
    ):
        ws = asyncio.run(_workspace(url))
        start = time.perf_counter()
        ids = generate(url, ws, args.profiles, args.events, now)
        print(
            f"generated {args.profiles:,} profiles and {args.events:,} events in "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )
        asyncio.run(measure(url, ws, ids, now, args.samples, args.explain))


if __name__ == "__main__":
    main()
