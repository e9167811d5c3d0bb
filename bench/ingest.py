"""Benchmark: Segment `POST /v1/batch` through a real `waymark api` server, against a raw `COPY`.

    .venv/bin/python -m bench.ingest [--events 100000] [--concurrency 4] [--api-workers 1]

Self-contained: uses DATABASE_URL when set (a fresh database is created next to it, and dropped
after), else an embedded PostgreSQL (pgserver) in a temporary directory; migrates it, creates a
workspace, starts `waymark api` as a subprocess on a free loopback port (TEMPORAL_ADDRESS points
at an unused port: the API connects to Temporal lazily and tracking never uses it), and sends
the events as batches of 500 track calls from a few concurrent HTTP connections. The request
bodies are serialized before the clock starts, so the client costs the server's two cores as
little as it can.

Then, in this process, a raw psycopg `COPY` of the same rows (other message ids, the profiles
the API created) into the same `events` table: the floor the API is measured against.

Checks on the way: the API stored exactly `--events` rows (and as many outbox rows), and a
replay of the first ten batches stores nothing new (deduplication by message id).
Every process the benchmark starts is stopped at the end, on error too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench.common import (
    Profiler,
    Service,
    cpu_seconds,
    create_bench_workspace,
    fresh_database,
    percentile,
    postgres,
    service_env,
)
from core.db import libpq_url
from ingest.segment import MAX_BATCH_BYTES

BATCH = 500
TARGET = 5_000  # events/s through HTTP on a 2-core machine, deduplication on

PRODUCTS = [
    ("SKU-1001", "Merino Crew Sweater", "Knitwear", 89.0),
    ("SKU-1002", "Linen Shirt", "Shirts", 59.5),
    ("SKU-1003", "Chelsea Boots", "Shoes", 149.0),
    ("SKU-1004", "Canvas Tote", "Bags", 24.99),
    ("SKU-1005", "Wool Overcoat", "Coats", 299.0),
    ("SKU-1006", "Leather Belt", "Accessories", 39.0),
]
EVENTS = [("Viewed Product", 6), ("Added to Cart", 3), ("Started Checkout", 1), ("Placed Order", 1)]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
]


@dataclass
class Visitor:
    anonymous_id: str
    user_id: str | None  # known visitors send both ids, as analytics.js does after identify


def visitors(count: int, rnd: random.Random) -> list[Visitor]:
    return [
        Visitor(
            str(uuid.UUID(int=rnd.getrandbits(128))), f"cust-{i}" if rnd.random() < 0.7 else None
        )
        for i in range(count)
    ]


def track_call(rnd: random.Random, who: Visitor, message_id: str, at: datetime) -> dict:
    event = rnd.choices([e for e, _ in EVENTS], [w for _, w in EVENTS])[0]
    sku, name, category, price = rnd.choice(PRODUCTS)
    quantity = rnd.randint(1, 3)
    properties: dict = {
        "product_id": sku,
        "name": name,
        "category": category,
        "price": price,
        "quantity": quantity,
        "currency": "EUR",
        "url": f"https://shop.example.com/p/{sku.lower()}",
    }
    if event == "Placed Order":
        properties |= {"order_id": f"ord-{message_id[-10:]}", "revenue": round(price * quantity, 2)}
    call = {
        "type": "track",
        "event": event,
        "anonymousId": who.anonymous_id,
        "messageId": message_id,
        "timestamp": at.isoformat(),
        "properties": properties,
        "context": {
            "ip": f"83.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}",
            "userAgent": rnd.choice(AGENTS),
            "locale": "en-GB",
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "page": {"path": f"/p/{sku.lower()}", "url": properties["url"]},
        },
    }
    if who.user_id:
        call["userId"] = who.user_id
    return call


def make_batches(events: int, people: int, seed: int = 11) -> list[list[dict]]:
    rnd = random.Random(seed)
    crowd = visitors(people, rnd)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    calls = [
        track_call(rnd, rnd.choice(crowd), f"bench-{i:09d}", start + timedelta(seconds=i))
        for i in range(events)
    ]
    return [calls[i : i + BATCH] for i in range(0, len(calls), BATCH)]


# --- measurements ------------------------------------------------------------------------------


@dataclass
class HttpRun:
    seconds: float
    latencies: list[float]
    accepted: int


async def post_batches(base_url: str, auth: str, bodies: list[bytes], concurrency: int) -> HttpRun:
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    accepted = 0

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post("/v1/batch", content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"/v1/batch answered {response.status_code}: {response.text}")
            accepted += response.json()["accepted"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        await client.get("/healthz")  # open a connection before the clock starts
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        return HttpRun(time.perf_counter() - started, latencies, accepted)


def stored_counts(url: str, workspace_id: uuid.UUID) -> tuple[int, int]:
    with psycopg.connect(libpq_url(url)) as conn:
        events, outbox = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE workspace_id = %s),"
            " (SELECT count(*) FROM event_outbox WHERE workspace_id = %s)",
            (workspace_id, workspace_id),
        ).fetchone()
    return events, outbox


def copy_rows(url: str, workspace_id: uuid.UUID, batches: list[list[dict]]) -> tuple[float, int]:
    """`COPY` the same calls (message ids prefixed `copy-`) into `events`, one transaction."""
    with psycopg.connect(libpq_url(url)) as conn:
        profiles = dict(
            conn.execute(
                "SELECT external_id, id FROM profiles WHERE workspace_id = %s "
                "AND external_id IS NOT NULL",
                (workspace_id,),
            ).fetchall()
        )
        profiles |= dict(
            conn.execute(
                "SELECT anonymous_id, profile_id FROM profile_aliases WHERE workspace_id = %s",
                (workspace_id,),
            ).fetchall()
        )
        rows = []
        for batch in batches:
            for call in batch:
                properties = call["properties"]
                rows.append(
                    (
                        workspace_id,
                        profiles[call.get("userId") or call["anonymousId"]],
                        call["event"],
                        "copy-" + call["messageId"],
                        call["timestamp"],
                        properties.get("revenue"),
                        properties.get("currency"),
                        json.dumps(properties, separators=(",", ":")),
                        json.dumps(call["context"], separators=(",", ":")),
                    )
                )
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY events (workspace_id, profile_id, metric, message_id, occurred_at, value,"
            " currency, properties, context) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started, len(rows)


def run(url: str, args: argparse.Namespace, tmp: Path, pg_pid: int | None) -> None:
    workspace = asyncio.run(create_bench_workspace(url))
    workspace_id, auth = workspace.id, workspace.tracking_auth["Authorization"]

    batches = make_batches(args.events, args.profiles)
    bodies = [json.dumps({"batch": b}, separators=(",", ":")).encode() for b in batches]
    largest = max(len(b) for b in bodies)
    if largest > MAX_BATCH_BYTES:
        raise SystemExit(f"a batch is {largest} bytes, over the API's {MAX_BATCH_BYTES}")
    print(
        f"{args.events:,} track calls in {len(bodies)} batches of {BATCH} "
        f"({sum(map(len, bodies)) / len(bodies) / 1024:.0f} KB each), {args.profiles:,} visitors"
    )

    with Service.api(service_env(url), tmp / "api.log", workers=args.api_workers) as server:
        api_cpu, pg_cpu = cpu_seconds(server.process.pid), cpu_seconds(pg_pid or -1)
        with Profiler(server.process.pid, args.profile):
            http = asyncio.run(post_batches(server.base_url, auth, bodies, args.concurrency))
        api_cpu = cpu_seconds(server.process.pid) - api_cpu
        pg_cpu = cpu_seconds(pg_pid or -1) - pg_cpu
        if http.accepted != args.events:
            raise SystemExit(f"the API accepted {http.accepted:,} of {args.events:,} calls")
        events, outbox = stored_counts(url, workspace_id)
        replay = asyncio.run(post_batches(server.base_url, auth, bodies[:10], args.concurrency))
        after_replay, _ = stored_counts(url, workspace_id)
    copy_seconds, copied = copy_rows(url, workspace_id, batches)

    http_rate = args.events / http.seconds
    copy_rate = copied / copy_seconds
    ms = sorted(x * 1000 for x in http.latencies)
    print()
    print(f"{'':34}{'events':>10}{'seconds':>10}{'events/s':>12}")
    print(f"{'HTTP /v1/batch':34}{args.events:>10,}{http.seconds:>10.2f}{http_rate:>12,.0f}")
    print(f"{'raw COPY into events':34}{copied:>10,}{copy_seconds:>10.2f}{copy_rate:>12,.0f}")
    print(f"{'COPY / HTTP ratio':34}{copy_rate / http_rate:>32.1f}x")
    print(
        f"batch latency (ms): p50 {percentile(ms, 50):.0f}, p99 {percentile(ms, 99):.0f}, "
        f"max {ms[-1]:.0f}  [api workers {args.api_workers}, concurrency {args.concurrency}]"
    )
    cpu = f"API processes {api_cpu:.1f} s ({api_cpu / http.seconds:.0%} of one core)"
    if pg_pid:
        cpu += f", PostgreSQL {pg_cpu:.1f} s ({pg_cpu / http.seconds:.0%})"
    print(f"CPU during the HTTP run: {cpu}, of {os.cpu_count()} cores")
    print(f"stored: {events:,} events, {outbox:,} outbox rows (expected {args.events:,} each)")
    print(
        f"replay of {len(replay.latencies)} batches ({replay.accepted:,} calls): "
        f"{after_replay - events:,} new events"
    )
    verdict = "meets" if http_rate >= TARGET else "misses"
    print(f"HTTP {verdict} the target of {TARGET:,} events/s")
    if events != args.events or outbox != args.events or after_replay != events:
        raise SystemExit("FAILED: stored counts differ from what was sent (see above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP connections")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--profiles", type=int, default=10_000, help="distinct visitors")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the API during the HTTP run (collapsed stacks here)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="waymark-bench-") as tmp_dir, ExitStack() as stack:
        tmp = Path(tmp_dir)
        pg = stack.enter_context(postgres(tmp))
        url = stack.enter_context(fresh_database(pg.admin_url))
        try:
            run(url, args, tmp, pg.pid)
        except BaseException:
            log = tmp / "api.log"
            if log.exists() and log.stat().st_size:
                print(f"--- api log (tail) ---\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise


if __name__ == "__main__":
    main()
