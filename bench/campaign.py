"""Benchmark: campaign messages end to end — API, scheduled workflow, audience snapshot, batches.

    .venv/bin/python -m bench.campaign [--emails 100000] [--sms 20000] [--no-kill]

Each run creates a workspace, seeds its audience with set-based SQL (profiles with consent, one
list), then goes through the API as a user would: a template, a campaign whose path includes the
list, a message a few seconds ahead, review and schedule. A worker runs in its own process
(`waymark worker`, the production command), so its peak memory (`VmHWM`) is its own; it
sends through the real send path to a fast local HTTP sink (a separate process) that plays
SendGrid's Mail Send and Twilio's Messages API and counts every recipient it is handed.

Runs:
1. email, local mode (no credentials: the local outbox);
2. email through the SendGrid SDK, a tenth of the audience (memory at two sizes);
3. email through the SendGrid SDK, the full audience;
4. SMS through the Twilio SDK;
5. (unless --no-kill) email through SendGrid again, with the worker SIGKILLed mid-send and
   restarted. The sink holds its answers once 40 % of the audience has reached it, so the
   batches in flight at the kill are the common case of a crash: handed to the provider, not yet
   answered (their ledger rows stay `sending`). The benchmark plays SendGrid's Event Webhook
   (signed `processed` events for what the sink accepted) to the API, which is how such rows are
   settled; the restarted worker sends the rest. The sink must count every recipient once.
   (A crash after the claim but before the request leaves is the other side of the documented
   unknown-outcome window: those rows are never resent and end `failed`/`outcome_unknown`.)

Prints, per run: total time (send time → message `sent`), messages/s, peak worker memory; and the
raw loops of the same provider calls in this process (SendGrid 1,000 personalizations per
request, Twilio one request per message) with the ratio. Targets: 100,000 emails in under 60 s;
worker memory independent of audience size.

Uses DATABASE_URL (a fresh database next to it) and TEMPORAL_ADDRESS when set, else an embedded
PostgreSQL (pgserver) and a Temporal dev server in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import sink
from bench.common import (
    Service,
    fresh_database,
    load_average,
    postgres,
    service_env,
    temporal_dev_server,
    wait_for_pollers,
)
from bench.send import raw_sendgrid, raw_twilio
from bench.sink import ACCOUNT_SID
from channels.providers.sendgrid import MESSAGE_ID_ARG
from core.db import libpq_url
from core.logging import configure_logging
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LEAD = timedelta(seconds=5)  # how far ahead the message is scheduled
HTML = (
    "<html><body><h1>Our summer sale is on</h1>"
    '<p><a href="https://shop.example.com/sale">Shop the sale</a></p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)
SMS = "Summer sale at Shop: https://shop.example.com/sale"


# --- the worker: its own process, as in production ----------------------------------------------


def start_worker(settings: Settings, logs: Path) -> Service:
    """`waymark worker` (the production command) in its own process group, not yet polling."""
    env = service_env(
        settings.database_url or "",
        settings.temporal_address,
        TEMPORAL_NAMESPACE=settings.temporal_namespace,
        WAYMARK_SECRET_KEY=settings.secret_key,
        WAYMARK_PUBLIC_URL=settings.public_url,
        WAYMARK_SENDGRID_BASE_URL=settings.sendgrid_base_url,
        WAYMARK_TWILIO_BASE_URL=settings.twilio_base_url or "",
        WAYMARK_TASK_QUEUE=settings.task_queue,
    )
    return Service.worker(env, logs / "worker.log").start()


def peak_rss_mb(service: Service) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{service.pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def sigkill(service: Service) -> None:
    """SIGKILL: no graceful shutdown, activities die mid-flight."""
    os.killpg(service.pid, signal.SIGKILL)
    service.process.wait()


# --- one run -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    recipients: int
    seconds: float
    peak_worker_mb: float
    sent: int
    sink: dict[str, int] | None = None
    unknown: int = 0  # failed, or still `sending`
    killed_with: int | None = None  # recipients at the sink when the worker was killed

    @property
    def rate(self) -> float:
        return self.recipients / self.seconds


def _seed(database_url: str, workspace_id: uuid.UUID, tag: str, n: int, channel: str) -> uuid.UUID:
    """`n` profiles with consent for `channel`, all in one new list; set-based."""
    list_id = uuid.uuid4()
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            """
            INSERT INTO profiles (id, workspace_id, email, phone, first_name, timezone,
                                  properties, created_at, updated_at)
            SELECT gen_random_uuid(), %(ws)s, 'shopper' || i || '@' || %(tag)s,
                   '+4869' || lpad(i::text, 7, '0'), 'Shopper' || i, 'Europe/Warsaw', '{}',
                   now(), now()
            FROM generate_series(1, %(n)s) AS i
            """,
            {"ws": workspace_id, "n": n, "tag": tag},
        )
        conn.execute(
            """
            INSERT INTO consents (profile_id, channel, workspace_id, state, source, updated_at)
            SELECT id, %(channel)s, %(ws)s, 'subscribed', 'api', now()
            FROM profiles WHERE workspace_id = %(ws)s
            """,
            {"ws": workspace_id, "channel": channel},
        )
        conn.execute(
            "INSERT INTO lists (id, workspace_id, name, created_at) "
            "VALUES (%(id)s, %(ws)s, 'Everyone', now())",
            {"id": list_id, "ws": workspace_id},
        )
        conn.execute(
            """
            INSERT INTO list_members (list_id, profile_id, workspace_id, source, joined_at)
            SELECT %(list)s, id, %(ws)s, 'import', now() FROM profiles WHERE workspace_id = %(ws)s
            """,
            {"list": list_id, "ws": workspace_id},
        )
    return list_id


class Bench:
    def __init__(self, settings: Settings, sink_url: str, logs: Path, api: Any) -> None:
        self.settings = settings
        self.sink_url = sink_url
        self.logs = logs
        self.api = api  # an httpx client of the Waymark API

    async def _workspace(self, name: str, channel: str, provider: bool):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from core.db import create_engine, session_scope
        from core.tenancy import create_workspace

        engine = create_engine(self.settings)
        try:
            async with session_scope(engine) as session:
                workspace, admin = await create_workspace(session, name, timezone="UTC")
        finally:
            await engine.dispose()
        headers = {"Authorization": f"Bearer {admin.secret}"}
        # The SendGrid Event Webhook's signing key: the bench plays SendGrid's webhook too.
        webhook_key = ec.generate_private_key(ec.SECP256R1())
        public = webhook_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        channel_settings: dict[str, Any] = {
            "quiet_hours": {"enabled": False},
            "sendgrid_webhook_public_key": base64.b64encode(public).decode(),
        }
        if channel == "email":
            channel_settings |= {"from_email": "shop@example.com", "from_name": "Shop"}
        r = await self.api.patch(
            "/v1/workspace/channel-settings", json=channel_settings, headers=headers
        )
        r.raise_for_status()
        if provider:
            credentials = (
                {"api_key": "SG." + "x" * 40, "from_email": "shop@example.com"}
                if channel == "email"
                else {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": "t" * 32,
                    "from_number": "+48500000000",
                }
            )
            r = await self.api.put(
                f"/v1/channels/{channel}/credentials", json=credentials, headers=headers
            )
            r.raise_for_status()
        return workspace.id, headers, webhook_key

    async def _worker(self) -> Service:
        from core import temporal

        worker = start_worker(self.settings, self.logs)
        client = await temporal.connect(self.settings)
        await wait_for_pollers(client, self.settings.task_queue, service=worker)
        return worker

    async def _message(self, name: str, n: int, channel: str, headers: dict, list_id) -> str:
        """Template, campaign and message through the API, scheduled `LEAD` ahead."""
        content = {"subject": "Summer sale", "html": HTML} if channel == "email" else {"body": SMS}
        r = await self.api.post(
            "/v1/templates", json={"name": "Sale", "channel": channel, **content}, headers=headers
        )
        r.raise_for_status()
        template_id = r.json()["id"]
        r = await self.api.post(
            "/v1/campaigns",
            json={"name": name, "path": {"include_lists": [str(list_id)]}},
            headers=headers,
        )
        r.raise_for_status()
        campaign = r.json()
        self.send_at = (datetime.now(UTC) + LEAD).replace(microsecond=0)
        r = await self.api.post(
            f"/v1/campaigns/{campaign['id']}/paths/{campaign['paths'][0]['id']}/messages",
            json={
                "name": name,
                "channel": channel,
                "template_id": template_id,
                "send_at": self.send_at.isoformat(),
                "smart_sending": False,
            },
            headers=headers,
        )
        r.raise_for_status()
        url = f"/v1/campaigns/{campaign['id']}/messages/{r.json()['id']}"
        r = await self.api.post(f"{url}/schedule", headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"schedule refused: {r.text}")
        return url

    async def _report_processed(self, workspace_id, webhook_key, tag: str, after: int) -> int:
        """Play SendGrid's Event Webhook: a signed `processed` event for every personalization
        the sink accepted since `after` (1,000 events a request); returns the new position."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        got = sink.call(self.sink_url, f"/received?tag={tag}&after={after}")
        for start in range(0, len(got), 1000):
            now = int(time.time())
            events = [
                {
                    "email": email,
                    "event": "processed",
                    "timestamp": now,
                    "sg_event_id": uuid.uuid4().hex,
                    MESSAGE_ID_ARG: message_id,
                }
                for email, message_id in got[start : start + 1000]
            ]
            body = json.dumps(events).encode()
            signature = webhook_key.sign(str(now).encode() + body, ec.ECDSA(hashes.SHA256()))
            r = await self.api.post(
                f"/webhooks/sendgrid/{workspace_id}",
                content=body,
                headers={
                    "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                    "X-Twilio-Email-Event-Webhook-Timestamp": str(now),
                    "Content-Type": "application/json",
                },
            )
            r.raise_for_status()
        return after + len(got)

    async def run(
        self,
        name: str,
        n: int,
        *,
        channel: str = "email",
        provider: bool = True,
        kill: bool = False,
        kill_at: float = 0.4,
    ) -> RunResult:
        """`kill`: SIGKILL the worker once the sink holds its answers, from `kill_at` of the
        audience on (every batch in flight then reaches it and waits; later ones never start)."""
        tag = f"r{uuid.uuid4().hex[:8]}.example.com"
        workspace_id, headers, webhook_key = await self._workspace(name, channel, provider)
        list_id = _seed(self.settings.database_url, workspace_id, tag, n, channel)
        worker = await self._worker()
        if kill:
            sink.call(self.sink_url, f"/stall?tag={tag}&at={int(n * kill_at)}", "POST")
        url = await self._message(name, n, channel, headers, list_id)
        peak, killed, reported = 0.0, None, 0
        sink_tag = tag if channel == "email" else "sms4869"  # the raw loop texts +4860…
        try:
            while True:
                await asyncio.sleep(0.25)
                peak = max(peak, peak_rss_mb(worker))
                if kill and killed is None and sink.counts(self.sink_url, sink_tag)["stalled"]:
                    # The sink holds its answers from 40 % on, so every batch already claimed
                    # reaches it and waits: SIGKILL then, answers flow again, restart.
                    await asyncio.sleep(2)
                    sigkill(worker)
                    sink.call(self.sink_url, "/stall?off", "POST")
                    got = sink.counts(self.sink_url, sink_tag)["recipients"]
                    print(f"  worker SIGKILLed with {got:,} of {n:,} at the sink; restarting")
                    killed = got
                    worker = await self._worker()
                if kill:
                    reported = await self._report_processed(
                        workspace_id, webhook_key, sink_tag, reported
                    )
                status = (await self.api.get(url, headers=headers)).json()["status"]
                if status in ("sent", "cancelled", "cancelled_during_send"):
                    break
                if datetime.now(UTC) - self.send_at > timedelta(minutes=20):
                    raise RuntimeError(f"{name}: not finished after 20 minutes ({status})")
            done = datetime.now(UTC)
            peak = max(peak, peak_rss_mb(worker))
        finally:
            worker.stop()
        if status != "sent":
            raise RuntimeError(f"{name}: message ended {status}")
        ledger = self._ledger(url.rsplit("/", 1)[-1])
        return RunResult(
            name=name,
            recipients=n,
            seconds=(done - self.send_at).total_seconds(),
            peak_worker_mb=peak,
            sent=ledger.get("sent", 0),
            unknown=ledger.get("sending", 0) + ledger.get("failed", 0),
            sink=sink.counts(self.sink_url, sink_tag) if provider else None,
            killed_with=killed,
        )

    def _ledger(self, message_id: str) -> dict[str, int]:
        with psycopg.connect(libpq_url(self.settings.database_url)) as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM messages WHERE campaign_message_id = %s "
                "GROUP BY status",
                (message_id,),
            ).fetchall()
        return dict(rows)

    async def all(self, emails: int, sms: int, kill: bool) -> list[RunResult]:
        runs = [
            await self.run("email, local outbox", emails, provider=False),
            await self.run("email, SendGrid (1/10 audience)", emails // 10),
            await self.run("email, SendGrid", emails),
            await self.run("SMS, Twilio", sms, channel="sms"),
        ]
        if kill:
            runs.append(await self.run("email, SendGrid, worker killed", emails, kill=True))
        return runs


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[Any]:
    """The Waymark API app in this process (with its lifespan), through httpx."""
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport, AsyncClient

    from api import create_app

    app = create_app(settings)
    async with LifespanManager(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://bench", timeout=60) as c:
            yield c


async def _benchmark(settings: Settings, sink_url: str, logs: Path, args) -> list[RunResult]:
    async with api_client(settings) as api:
        return await Bench(settings, sink_url, logs, api).all(args.emails, args.sms, args.kill)


def report(runs: list[RunResult], raw_email: float, raw_sms: float) -> bool:
    print(f"\n{'run':<36} {'recipients':>10} {'seconds':>8} {'msg/s':>8} {'worker MB':>10}")
    for run in runs:
        print(
            f"{run.name:<36} {run.recipients:>10,} {run.seconds:>8.1f} {run.rate:>8,.0f} "
            f"{run.peak_worker_mb:>10.0f}"
        )
    by_name = {run.name: run for run in runs}
    email, small = by_name["email, SendGrid"], by_name["email, SendGrid (1/10 audience)"]
    sms = by_name["SMS, Twilio"]
    print(f"\nraw SendGrid loop, 1,000 personalizations/request  {raw_email:>8,.0f} msg/s")
    print(f"raw Twilio loop, 1 message/request                 {raw_sms:>8,.0f} msg/s")
    print(f"email campaign / raw SendGrid loop                 {email.rate / raw_email:8.2f}x")
    print(f"SMS campaign / raw Twilio loop                     {sms.rate / raw_sms:8.2f}x")
    growth = email.peak_worker_mb / small.peak_worker_mb
    print(
        f"worker memory at {email.recipients:,} vs {small.recipients:,} recipients: "
        f"{email.peak_worker_mb:.0f} MB vs {small.peak_worker_mb:.0f} MB ({growth:.2f}x)"
    )
    ok = True
    for run in runs:
        if run.sink is not None:
            exact = run.sink["recipients"] == run.recipients and run.sink["duplicates"] == 0
            ok &= exact
            print(
                f"{run.name}: sink got {run.sink['recipients']:,} recipients, "
                f"{run.sink['duplicates']} duplicates; ledger sent {run.sent:,}, "
                f"failed or unknown {run.unknown} — {'exactly once' if exact else 'NOT exact'}"
            )
    fast = email.seconds < 60 and by_name["email, local outbox"].seconds < 60
    flat = growth < 1.25
    print(f"target: {email.recipients:,} emails in < 60 s: {'met' if fast else 'NOT met'}")
    print(f"target: worker memory independent of audience size: {'met' if flat else 'NOT met'}")
    print(load_average())
    return ok and fast and flat


async def _raw(base_url: str, emails: int, sms: int) -> tuple[float, float]:
    """Messages/s of the raw SDK loops (`bench.send`'s) over the same sink."""
    email_seconds = await raw_sendgrid(base_url, 0, emails, 1000)
    return emails / email_seconds, sms / await raw_twilio(base_url, 0, sms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=100_000)
    parser.add_argument("--sms", type=int, default=20_000)
    parser.add_argument(
        "--no-kill", dest="kill", action="store_false", help="skip the killed-worker run"
    )
    parser.add_argument("--keep", action="store_true", help="keep the worker's log")
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.keep:
            work = Path(tempfile.mkdtemp(prefix="waymark-bench-campaign-"))
            print(f"logs kept in {work}")
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="waymark-bench-")))
        pg = stack.enter_context(postgres(work))
        url = stack.enter_context(fresh_database(pg.admin_url))
        address = os.environ.get("TEMPORAL_ADDRESS")
        if not address:
            address = stack.enter_context(temporal_dev_server(work)).address
        sink_url = stack.enter_context(sink.running())
        settings = Settings(
            database_url=url,
            temporal_address=address,
            secret_key="bench-secret-key-that-is-long-enough-0123456789",
            public_url="https://wm.example.com",
            sendgrid_base_url=sink_url,
            twilio_base_url=sink_url,
            task_queue=f"bench-campaign-{uuid.uuid4().hex[:6]}",
            log_level="WARNING",
        )
        configure_logging(settings)
        print(f"campaign benchmark: {args.emails:,} emails, {args.sms:,} SMS")
        raw_email, raw_sms = asyncio.run(_raw(sink_url, args.emails, args.sms))
        runs = asyncio.run(_benchmark(settings, sink_url, work, args))
        ok = report(runs, raw_email, raw_sms)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
