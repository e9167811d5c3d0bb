"""Benchmark: journeys from `POST /v1/batch` to a sent email, against bare Temporal workflows.

    .venv/bin/python -m bench.journeys [--journeys 2000] [--delay 1]

The flow (created and published through the API): event trigger "Started Checkout" → delay
`--delay` seconds → email in local mode (no provider credentials: the local outbox).
Self-contained (`bench/common.py`): PostgreSQL (DATABASE_URL or pgserver, a fresh database),
the Temporal dev server, `waymark api` and `waymark worker` as child processes — what production
runs — and the baseline's worker (`bench.bare_journey`, the same worker options).
`--journeys` customers with an email address and email consent are seeded with SQL per phase.

Three phases, one after the other on the same servers:

1. **bare Temporal**: `--journeys` workflows of the journey's shape (one timer of `--delay`, one
   no-op activity) started directly, as many at once as the journey router starts
   (`flows.router.CONCURRENCY`). Rate = workflows / (last close − first start).
2. **Waymark, burst**: one "Started Checkout" track call per customer, in batches of `--batch`
   from `--connections` HTTP connections, as fast as the API takes them. Every journey runs the
   whole path: outbox → router → `JourneyWorkflow` → activities → send path → ledger. Rate =
   journeys / (last journey ended − first event accepted). This is the rate compared with (1).
3. **Waymark, steady**: other customers' events at half the bare rate (the target throughput),
   a batch every 0.1 s. Event-to-send latency is measured here: the event's acceptance
   (`events.received_at`, the API's transaction) → the ledger's `messages.sent_at`. Under a
   burst, latency is only the queue's length; it is printed for (2) too.

Targets: (2) ≥ 0.5 × (1); p99 of (3) < 2 s + the delay. Prints CPU seconds per process per phase
and the load average, since the machine is shared. What the database says (seeding, completed
journeys, per-stage times) is in `bench/journeys_data.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from temporalio.client import Client

from bench.bare_journey import BareJourneyWorkflow
from bench.common import (
    BenchWorkspace,
    Profiler,
    Service,
    cpu_seconds,
    create_bench_workspace,
    fresh_database,
    load_average,
    percentile,
    postgres,
    service_env,
    temporal_dev_server,
    wait_for_pollers,
)
from bench.journeys_data import (
    METRIC,
    completed_journeys,
    journey_times,
    seed_customers,
)
from core import temporal
from core.settings import Settings
from flows.router import CONCURRENCY as ROUTER_CONCURRENCY

RATIO_TARGET = 0.5
LATENCY_MARGIN = 2.0  # seconds over the delay, p99
STEADY_INTERVAL = 0.1  # seconds between two batches in the steady phase
HTML = (
    "<html><body><h1>Hi {{ profile.first_name }}</h1><p>Your cart is waiting: "
    '<a href="https://shop.example.com/cart">back to your cart</a></p></body></html>'
)


@dataclass
class Phase:
    name: str
    journeys: int  # completed
    seconds: float  # first acceptance / start → last completion
    latencies: list[float]  # event accepted → sent (Waymark); started → closed (bare)
    cpu: dict[str, float]
    stages: dict[str, list[float]] = field(default_factory=dict)  # Waymark: where time went

    @property
    def rate(self) -> float:
        return self.journeys / self.seconds

    def p(self, q: int) -> float:
        return percentile(sorted(self.latencies), q)


@dataclass
class Figures:
    bare: Phase
    burst: Phase
    steady: Phase
    delay: float

    @property
    def ratio(self) -> float:
        return self.burst.rate / self.bare.rate

    @property
    def rate_met(self) -> bool:
        return self.ratio >= RATIO_TARGET

    @property
    def latency_met(self) -> bool:
        return self.steady.p(99) < self.delay + LATENCY_MARGIN


# --- set-up through the API --------------------------------------------------------------------


async def create_flow(api: httpx.AsyncClient, ws: BenchWorkspace, delay: int) -> uuid.UUID:
    """Sender address, template, flow: made and published as a shop would, through the API."""
    h = ws.admin_auth

    async def call(method: str, path: str, body: dict, expect: int) -> dict:
        response = await api.request(method, path, json=body, headers=h)
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    await call("PATCH", "/v1/workspace/channel-settings", {"from_email": "shop@example.com"}, 200)
    template = await call(
        "POST",
        "/v1/templates",
        {"name": "cart", "channel": "email", "subject": "Your cart", "html": HTML},
        201,
    )
    definition = {
        "name": "Bench abandoned checkout",
        "trigger": {"type": "event", "metric": METRIC},
        "entry": "wait",
        "steps": [
            {
                "id": "wait",
                "type": "delay",
                "duration": {"amount": delay, "unit": "seconds"},
                "next": "mail",
            },
            {"id": "mail", "type": "send", "channel": "email", "template_id": template["id"]},
        ],
    }
    flow = await call("POST", "/v1/flows", {"definition": definition}, 201)
    await call("POST", f"/v1/flows/{flow['id']}/publish", {"message": "bench"}, 200)
    return uuid.UUID(flow["id"])


def batches(prefix: str, n: int, size: int) -> list[bytes]:
    now = datetime.now(UTC).isoformat()
    calls = [
        {
            "type": "track",
            "event": METRIC,
            "userId": f"{prefix}{i}",
            "messageId": f"{prefix}{i}-{uuid.uuid4().hex[:8]}",
            "timestamp": now,
            "properties": {"value": 129.0, "currency": "EUR", "checkout_url": "/checkout"},
        }
        for i in range(1, n + 1)
    ]
    return [
        json.dumps({"batch": calls[i : i + size]}, separators=(",", ":")).encode()
        for i in range(0, n, size)
    ]


# --- phases ------------------------------------------------------------------------------------


class Meter:
    """CPU seconds of the processes that do the work, over one phase."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}

    def __enter__(self) -> Meter:
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {n: cpu_seconds(pid) - self.start[n] for n, pid in self.pids.items()}


async def bare_phase(
    client: Client, task_queue: str, n: int, delay: float, meter: Meter, deadline: float
) -> Phase:
    run = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(ROUTER_CONCURRENCY)

    async def start(i: int) -> None:
        async with gate:
            await client.start_workflow(
                BareJourneyWorkflow.run, delay, id=f"bare-{run}-{i}", task_queue=task_queue
            )

    query = f'WorkflowType = "BareJourneyWorkflow" AND TaskQueue = "{task_queue}"'
    with meter:
        await asyncio.gather(*(start(i) for i in range(n)))
        await until(
            lambda: _count(client, query + ' AND ExecutionStatus = "Completed"'), n, deadline
        )
    times = [(w.start_time, w.close_time) async for w in client.list_workflows(query)]
    first, last = min(s for s, _ in times), max(c for _, c in times)
    return Phase(
        "bare Temporal, burst",
        len(times),
        (last - first).total_seconds(),
        [(c - s).total_seconds() for s, c in times],
        meter.used,
    )


async def _count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def until(count, n: int, deadline: float) -> None:
    """Until `await count()` reaches `n`; fails with what is missing after `deadline` seconds."""
    end = time.monotonic() + deadline
    while (done := await count()) < n:
        if time.monotonic() > end:
            raise RuntimeError(f"only {done:,} of {n:,} journeys completed in {deadline:.0f}s")
        await asyncio.sleep(0.1)


async def post(api: httpx.AsyncClient, ws: BenchWorkspace, body: bytes) -> None:
    headers = {**ws.tracking_auth, "Content-Type": "application/json"}
    response = await api.post("/v1/batch", content=body, headers=headers)
    if response.status_code != 200 or response.json().get("accepted") is None:
        raise RuntimeError(f"/v1/batch answered {response.status_code}: {response.text}")


async def send_burst(api, ws, bodies: list[bytes], connections: int) -> None:
    queue = list(reversed(bodies))

    async def sender() -> None:
        while queue:
            await post(api, ws, queue.pop())

    await asyncio.gather(*(sender() for _ in range(connections)))


async def send_steady(api, ws, bodies: list[bytes], interval: float, connections: int) -> None:
    """One batch every `interval` seconds, whether or not the previous ones were answered."""
    gate = asyncio.Semaphore(connections)
    start = time.monotonic()

    async def one(body: bytes) -> None:
        async with gate:
            await post(api, ws, body)

    tasks = []
    for i, body in enumerate(bodies):
        await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        tasks.append(asyncio.create_task(one(body)))
    await asyncio.gather(*tasks)


async def waymark_phase(
    name: str,
    url: str,
    flow_id: uuid.UUID,
    prefix: str,
    n: int,
    send,
    meter: Meter,
    deadline: float,
    profile: tuple[int, Path] | None = None,
) -> Phase:
    def count() -> int:
        return completed_journeys(url, flow_id, prefix)

    with meter, Profiler(profile[0], profile[1]) if profile else nullcontext():
        await send
        await until(lambda: asyncio.to_thread(count), n, deadline)
    seconds, latencies, stages = journey_times(url, flow_id, prefix)
    return Phase(name, n, seconds, latencies, meter.used, stages)


# --- the run -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, url: str, pg_pid, server, api: Service, worker, bare):
    n, delay = args.journeys, args.delay
    deadline = 60 + n / 5  # a journey every 200 ms is far below anything acceptable
    settings = Settings(database_url=url, temporal_address=server.address)
    client = await temporal.connect(settings)
    await wait_for_pollers(client, settings.task_queue, service=worker)
    await wait_for_pollers(client, args.bare_queue, service=bare)
    ws = await create_bench_workspace(url)
    pids = {
        "worker": worker.pid,
        "bare worker": bare.pid,
        "API": api.pid,
        "Temporal": server.process.pid,
        "PostgreSQL": pg_pid,
    }
    limits = httpx.Limits(max_connections=args.connections)
    async with httpx.AsyncClient(base_url=api.base_url, limits=limits, timeout=60) as http:
        flow_id = await create_flow(http, ws, delay)
        seed_customers(url, ws.id, "burst-", n)
        seed_customers(url, ws.id, "steady-", n)
        burst_bodies = batches("burst-", n, args.batch)

        bare_result = await bare_phase(client, args.bare_queue, n, delay, Meter(pids), deadline)
        print_phase(bare_result, header=True)
        burst = await waymark_phase(
            "Waymark, burst",
            url,
            flow_id,
            "burst-",
            n,
            send_burst(http, ws, burst_bodies, args.connections),
            Meter(pids),
            deadline,
            (worker.pid, args.profile) if args.profile else None,
        )
        print_phase(burst)
        offered = RATIO_TARGET * bare_result.rate
        steady_bodies = batches("steady-", n, max(1, round(offered * STEADY_INTERVAL)))
        per_batch = n / len(steady_bodies)
        steady = await waymark_phase(
            f"Waymark, steady {offered:,.0f}/s",
            url,
            flow_id,
            "steady-",
            n,
            send_steady(http, ws, steady_bodies, per_batch / offered, args.connections),
            Meter(pids),
            deadline,
        )
        print_phase(steady)
    return Figures(bare_result, burst, steady, delay)


def print_phase(phase: Phase, *, header: bool = False) -> None:
    if header:
        print(f"{'':28}{'journeys':>9}{'seconds':>9}{'per s':>9}{'p50 s':>8}{'p99 s':>8}  CPU s")
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in phase.cpu.items() if v >= 0.05)
    print(
        f"{phase.name:28}{phase.journeys:>9,}{phase.seconds:>9.2f}{phase.rate:>9.1f}"
        f"{phase.p(50):>8.2f}{phase.p(99):>8.2f}  {cpu}",
        flush=True,
    )
    if phase.stages:
        parts = [
            f"{name} {percentile(sorted(v), 50):.2f}/{percentile(sorted(v), 99):.2f}"
            for name, v in phase.stages.items()
        ]
        print(f"{'':4}p50/p99 s: {', '.join(parts)}", flush=True)


def log_problems(services: list[Service]) -> None:
    """How many warnings and errors each process logged (JSON lines), and the commonest."""
    for service in services:
        if not service.log_file.exists():
            continue
        seen: dict[str, int] = {}
        for line in service.log_file.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"level": "error", "event": line} if "Traceback" in line else {}
            if str(entry.get("level", "")).lower() in ("warning", "error", "critical"):
                key = f"{entry['level']}: {str(entry.get('event', ''))[:120]}"
                seen[key] = seen.get(key, 0) + 1
        if seen:
            common = sorted(seen.items(), key=lambda kv: -kv[1])[:3]
            print(f"{service.log_file.name}: " + "; ".join(f"{n}× {k}" for k, n in common))


def slow_journeys(phase: Phase, limit: float) -> str:
    """How many journeys were over `limit` seconds, and in which stage they lost the time."""
    slow = [i for i, latency in enumerate(phase.latencies) if latency >= limit]
    if not slow or not phase.stages:
        return f"{len(slow)} over {limit:.1f} s"
    worst = {name: max(values[i] for i in slow) for name, values in phase.stages.items()}
    stage = max(worst, key=worst.get)
    return f"{len(slow)} over {limit:.1f} s, most time in {stage} (up to {worst[stage]:.1f} s)"


def report(f: Figures) -> None:
    verdict = {True: "met", False: "NOT met"}
    print(
        f"rate Waymark / bare Temporal: {f.ratio:.2f} "
        f"(target ≥ {RATIO_TARGET}: {verdict[f.rate_met]})"
    )
    print(
        f"p99 event-to-send at {f.steady.rate:,.0f} journeys/s: {f.steady.p(99):.2f} s, "
        f"p50 {f.steady.p(50):.2f} s (target < {f.delay + LATENCY_MARGIN:.1f} s: "
        f"{verdict[f.latency_met]}); {slow_journeys(f.steady, f.delay + LATENCY_MARGIN)}"
    )
    print(load_average())


def main(argv: list[str] | None = None) -> Figures:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=2000, help="per phase")
    parser.add_argument("--delay", type=int, default=1, help="the flow's delay, seconds")
    parser.add_argument("--batch", type=int, default=50, help="track calls per burst request")
    parser.add_argument("--connections", type=int, default=4, help="HTTP connections")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the worker in the burst (collapsed stacks here)"
    )
    args = parser.parse_args(argv)
    args.bare_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    print(
        f"{args.journeys:,} journeys per phase: POST /v1/batch → outbox → router → "
        f"{args.delay} s delay → email (local outbox); baseline: a workflow with a {args.delay} s "
        f"timer and a no-op activity. {load_average()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="waymark-bench-") as tmp_dir, ExitStack() as stack:
        tmp = Path(tmp_dir)
        pg = stack.enter_context(postgres(tmp))
        url = stack.enter_context(fresh_database(pg.admin_url))
        server = stack.enter_context(temporal_dev_server(tmp))
        env = service_env(url, server.address)
        services = [
            Service.api(env, tmp / "api.log"),
            Service.worker(env, tmp / "worker.log"),
            Service(
                [sys.executable, "-m", "bench.bare_journey", "--task-queue", args.bare_queue],
                env,
                tmp / "bare.log",
                lambda s: True,
            ),
        ]
        try:
            for service in services:
                stack.enter_context(service)
            figures = asyncio.run(run(args, url, pg.pid, server, *services))
            log_problems(services)
        except BaseException:
            for service in services:
                if tail := service.log_tail():
                    print(f"--- {service.log_file.name} (tail) ---\n{tail}", file=sys.stderr)
            raise
    report(figures)
    return figures


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
