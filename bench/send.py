"""Benchmark: the full send path (gate, render, ledger, provider SDK) against raw SDK loops.

    .venv/bin/python -m bench.send [--recipients 10000] [--rounds 1] [--runs 3]

10,000 email and 10,000 SMS recipients go through `channels.send.send_many` (the campaign
activity's code, batches of 1,000) with real SendGrid / Twilio credentials pointed at a fast
local HTTP sink (a separate process answering 202 + X-Message-Id, and a Twilio message JSON).
Email runs three ways: the same copy for everyone (only the tracking links differ: recipients
share requests through substitutions), one batch at a time and as a campaign sends it
(`PARALLEL_BATCHES` batches in flight, the next starting as soon as one ends, as
`workflows.campaign_message` does: at most that many requests in flight, fewer than the raw
loop's 8); and with the first name in subject and body (the names go
as substitutions and per-personalization subjects, so these share requests too), one batch at a
time. SMS go one batch at a time: each batch sends 8 requests at once, as the raw loop does
(a campaign's 4 batches in flight would have 32). The number of requests each full path made is
printed.
The same process runs raw loops of the same SDK calls, at the providers' concurrency:
SendGrid one request per recipient (the SDK's default client: a connection per request),
SendGrid 1,000 personalizations per request, Twilio one request per message (one
AsyncTwilioHttpClient, as the provider) with the messages as the full path sends them (the
link a signed click URL, a status callback with a message id: the SDK URL-encodes every
character, so lengths matter), made before the clock starts; and, for reference with earlier
runs, with short messages (a plain link, a short callback). The ways run after an uncounted warm-up
round, each in turn; `--rounds N` makes them take turns N times, each on 1/N of the recipients,
so that a load that changes meanwhile weighs on all of them alike (the default, 1, sends each
way's 10,000 as one campaign would: 10 batches, 4 in flight). All of that is one run;
`--runs N` (3) makes N runs one after another, each way's full paths sending new campaign
messages each time. Start-up objects are frozen out of the garbage collector's sight first, as
the worker does (`core.runtime`).
Prints messages/s for each and the ratios, each run's and their median (a run's ratios are of
ways run moments apart; the median drops a run the machine's load swayed), the load average,
and whether issue #5's targets are met by the medians (SMS full path >= 0.5x its raw loop;
email batching, as a campaign sends the same copy, >= 10x the per-recipient raw loop).

Uses DATABASE_URL when set (a fresh database is created next to it), else an embedded
PostgreSQL (pgserver) in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench import sink
from bench.common import fresh_database, postgres
from bench.sink import ACCOUNT_SID
from core.db import create_async_engine, libpq_url, session_scope, sqlalchemy_url
from core.runtime import freeze_startup_objects
from core.settings import Settings
from core.tenancy import create_workspace
from workflows.campaign_message import PARALLEL_BATCHES

HTML = (
    "<html><body><h1>Hi {{ profile.first_name }}</h1><p>Our summer sale is on.</p>"
    '<a href="https://shop.example.com/sale">Shop the sale</a> '
    '<a href="https://shop.example.com/new">New in</a></body></html>'
)
# The same copy for everyone: only the tracking URLs (clicks, pixel, unsubscribe) differ per
# recipient, so recipients share SendGrid requests (per-personalization substitutions).
HTML_SAME = HTML.replace("Hi {{ profile.first_name }}", "Hi there")
SMS = "Hi {{ profile.first_name }}, summer sale: https://shop.example.com/sale"
UTM = {"utm_source": "wm"}  # the workspace's default UTM parameters
CONCURRENCY = 8  # the providers' (channels.providers.common.CONCURRENCY)
WARM = 1000  # recipients of the warm-up round (not counted)


# --- data -------------------------------------------------------------------------------


def _seed(url: str, workspace_id: uuid.UUID, n: int) -> None:
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(
            """
            INSERT INTO profiles (id, workspace_id, email, phone, first_name, timezone,
                                  properties, created_at, updated_at)
            SELECT gen_random_uuid(), %(ws)s, 'shopper' || i || '@example.com',
                   '+4860' || lpad(i::text, 7, '0'), 'Shopper' || i, 'Europe/Warsaw', '{}',
                   now(), now()
            FROM generate_series(1, %(n)s) AS i
            """,
            {"ws": workspace_id, "n": n},
        )
        conn.execute(
            """
            INSERT INTO consents (profile_id, channel, workspace_id, state, source, updated_at)
            SELECT p.id, c.channel, %(ws)s, 'subscribed', 'api', now()
            FROM profiles p CROSS JOIN (VALUES ('email'), ('sms')) AS c(channel)
            WHERE p.workspace_id = %(ws)s
            """,
            {"ws": workspace_id},
        )


async def _setup(engine, settings: Settings, n: int):
    from channels import credentials
    from channels.settings import ChannelSettings, QuietHours, save_channel_settings
    from models import Channel
    from models.templates import Template

    async with session_scope(engine) as session:
        workspace, _ = await create_workspace(session, "Bench shop", timezone="Europe/Warsaw")
        box = credentials.SecretBox.from_settings(settings)
        await credentials.save(
            session,
            box,
            workspace.id,
            Channel.email,
            credentials.SendGridCredentials(
                api_key="SG." + "x" * 40, from_email="shop@example.com", from_name="Shop"
            ),
        )
        await credentials.save(
            session,
            box,
            workspace.id,
            Channel.sms,
            credentials.TwilioCredentials(
                account_sid=ACCOUNT_SID, auth_token="t" * 32, from_number="+48500000000"
            ),
        )
        # Quiet hours off: the benchmark must not depend on the hour it runs at.
        cs = ChannelSettings(quiet_hours=QuietHours(enabled=False), utm=UTM)
        await save_channel_settings(session, workspace.id, cs)
        email = Template(
            workspace_id=workspace.id,
            name="sale-email",
            channel=Channel.email,
            subject="Summer sale, {{ profile.first_name }}",
            html=HTML,
        )
        same = Template(
            workspace_id=workspace.id,
            name="sale-email-same",
            channel=Channel.email,
            subject="Summer sale",
            html=HTML_SAME,
        )
        sms = Template(workspace_id=workspace.id, name="sale-sms", channel=Channel.sms, body=SMS)
        session.add_all([email, same, sms])
    _seed(settings.database_url, workspace.id, n)
    async with session_scope(engine) as session:
        from sqlalchemy import text

        ids = list(
            (
                await session.execute(
                    text("SELECT id FROM profiles WHERE workspace_id = :ws ORDER BY id"),
                    {"ws": workspace.id},
                )
            ).scalars()
        )
    return workspace.id, email.id, same.id, sms.id, ids


# --- the runs ---------------------------------------------------------------------------


def _settle(url: str) -> None:
    """The database as a way finds it: what the ways before it wrote vacuumed, analyzed and
    checkpointed, so that no autovacuum or checkpoint they left due runs in its time."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def _requests(base_url: str) -> dict[str, int]:
    return sink.call(base_url, "/requests")


async def full_path(
    engine, settings, workspace_id, template_id, channel, ids, campaign_message_id, in_flight=1
) -> tuple[float, dict[str, int]]:
    """Seconds to send to `ids` through `send_many` (batches of 1,000, as the campaign
    activity; `in_flight` of them at once, the next starting as soon as one ends, as the
    campaign workflow), and the requests the sink saw meanwhile."""
    from activities.channels import SendMessagesInput
    from channels.send import send_many

    window = asyncio.Semaphore(in_flight)

    async def batch(start: int):
        async with window:
            return await send_many(
                engine,
                settings,
                SendMessagesInput(
                    workspace_id=workspace_id,
                    channel=channel,
                    template_id=template_id,
                    profile_ids=ids[start : start + 1000],
                    idempotency_prefix=f"campaign-message:{campaign_message_id}",
                    campaign_message_id=campaign_message_id,
                    smart_sending=False,
                ),
            )

    before = _requests(settings.sendgrid_base_url)
    started = time.perf_counter()
    sent = 0
    for result in await asyncio.gather(*map(batch, range(0, len(ids), 1000))):
        sent += result.sent
        if result.failed or result.skipped:
            raise RuntimeError(f"unexpected: {result}")
    elapsed = time.perf_counter() - started
    assert sent == len(ids), sent
    after = _requests(settings.sendgrid_base_url)
    return elapsed, {k: after[k] - before[k] for k in after}


def _mail(recipients: list[int]):
    from sendgrid.helpers.mail import Content, CustomArg, From, Mail, Personalization, To

    mail = Mail()
    mail.from_email = From("shop@example.com", "Shop")
    mail.subject = "Summer sale"
    mail.add_content(Content("text/html", HTML))
    for i in recipients:
        personalization = Personalization()
        personalization.add_to(To(f"shopper{i}@example.com"))
        personalization.add_custom_arg(CustomArg("waymark_message_id", str(uuid.uuid4())))
        mail.add_personalization(personalization)
    return mail.get()


async def raw_sendgrid(base_url: str, first: int, n: int, per_request: int) -> float:
    """Seconds for the raw SDK loop over recipients `first`..`first + n`."""
    import sendgrid

    client = sendgrid.SendGridAPIClient("SG." + "x" * 40, host=base_url)
    gate = asyncio.Semaphore(CONCURRENCY)
    end = first + n

    async def one(start: int) -> None:
        body = _mail(list(range(start, min(start + per_request, end))))
        async with gate:
            await asyncio.to_thread(lambda: client.client.mail.send.post(request_body=body))

    started = time.perf_counter()
    await asyncio.gather(*(one(s) for s in range(first, end, per_request)))
    return time.perf_counter() - started


def _sms_as_sent(
    settings: Settings, workspace_id: uuid.UUID, ids: list[uuid.UUID], first: int, n: int
) -> list[tuple[str, str]]:
    """(body, status callback) of recipients `first`..`first + n` as the full path sends them:
    the body with its link as a signed click URL (UTM added), the callback with a message id."""
    from channels.links import LinkKind, add_utm, signer
    from models import Channel

    sign = signer(settings, workspace_id)
    link = add_utm("https://shop.example.com/sale", UTM)
    callback = f"{settings.public_url}/webhooks/twilio/{workspace_id}/status?wm="
    messages = []
    for i in range(first, first + n):
        message_id = uuid.uuid4()
        tracked = sign.url(LinkKind.click, Channel.sms, ids[i], message_id, link)
        messages.append((f"Hi Shopper{i + 1}, summer sale: {tracked}", f"{callback}{message_id}"))
    return messages


async def raw_twilio(base_url: str, first: int, n: int, messages=None) -> float:
    """Seconds for the raw SDK loop over recipients `first`..`first + n`: `messages` (body,
    status callback) as the full path sends them, or short ones (a plain link)."""
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    if messages is None:
        messages = [
            (
                f"Hi Shopper{i}, summer sale: https://shop.example.com/sale",
                f"https://wm.example.com/webhooks/twilio/x/status?wm={i}",
            )
            for i in range(first, first + n)
        ]
    gate = asyncio.Semaphore(CONCURRENCY)
    started = time.perf_counter()
    async with AsyncTwilioHttpClient(timeout=30) as http:
        client = Client(ACCOUNT_SID, "t" * 32, http_client=http)
        client.api.base_url = base_url
        create = client.api.v2010.accounts(ACCOUNT_SID).messages.create_async

        async def one(i: int) -> None:
            body, callback = messages[i - first]
            async with gate:
                await create(
                    to=f"+4860{i:07d}", from_="+48500000000", body=body, status_callback=callback
                )

        await asyncio.gather(*(one(i) for i in range(first, first + n)))
    return time.perf_counter() - started


RAW_EMAIL = "raw SendGrid, 1 recipient/request"
RAW_BATCHED = "raw SendGrid, 1,000 personalizations/request"
FULL_SAME = "full path email, same copy (send_many)"
FULL_CAMPAIGN = f"full path email, same copy, {PARALLEL_BATCHES} batches at once"
FULL_NAMED = "full path email, names in copy (send_many)"
RAW_SMS = "raw Twilio, 1 message/request, as sent"
RAW_SHORT = "raw Twilio, short messages (reference)"
FULL_SMS = "full path SMS (send_many)"


async def run(database_url: str, n: int, rounds: int, runs: int) -> None:
    from models import Channel

    load = os.getloadavg()
    ways = (RAW_EMAIL, RAW_BATCHED, FULL_SAME, FULL_CAMPAIGN, FULL_NAMED)
    ways += (RAW_SMS, RAW_SHORT, FULL_SMS)
    rates: list[dict[str, float]] = []  # msg/s of each way, per run
    made: dict[str, dict[str, int]] = {}
    with sink.running() as base:
        settings = Settings(
            database_url=database_url,
            secret_key="bench-secret-key-that-is-long-enough-0123456789",
            public_url="https://wm.example.com",
            sendgrid_base_url=base,
            twilio_base_url=base,
        )
        engine = create_async_engine(sqlalchemy_url(database_url), pool_size=10)
        workspace_id, email_id, same_id, sms_id, ids = await _setup(engine, settings, n + WARM)
        freeze_startup_objects()  # as the worker does once started (`worker.run_worker`)
        templates = {
            FULL_SAME: (same_id, Channel.email),
            FULL_CAMPAIGN: (same_id, Channel.email),
            FULL_NAMED: (email_id, Channel.email),
            FULL_SMS: (sms_id, Channel.sms),
        }
        # A warm-up of every way (imports, compiled templates, pools) on recipients not counted,
        # then runs, each of rounds: each way runs on a slice of the recipients, in turn with
        # the others, so the machine's load (shared, it varies) weighs on every way alike. A
        # run's full paths are new campaign messages (the same keys would be replays).
        step = -(-n // rounds)
        slices = [(f, min(step, n - f)) for f in range(0, n, step)]

        async def full(name: str, first: int, count: int, campaign: uuid.UUID):
            template_id, channel = templates[name]
            await asyncio.to_thread(_settle, database_url)
            return await full_path(
                engine,
                settings,
                workspace_id,
                template_id,
                channel,
                ids[first : first + count],
                campaign,
                PARALLEL_BATCHES if name == FULL_CAMPAIGN else 1,
            )

        for run_no in range(runs):
            seconds = dict.fromkeys(ways, 0.0)
            campaigns = {name: uuid.uuid4() for name in templates}
            for first, count in ([(n, WARM)] if run_no == 0 else []) + slices:
                spent = {
                    RAW_EMAIL: await raw_sendgrid(base, first, count, 1),
                    RAW_BATCHED: await raw_sendgrid(base, first, count, 1000),
                }
                asked = {}  # the requests each full path made
                for name in (FULL_SAME, FULL_CAMPAIGN, FULL_NAMED):
                    spent[name], asked[name] = await full(name, first, count, campaigns[name])
                as_sent = _sms_as_sent(settings, workspace_id, ids, first, count)
                spent[RAW_SMS] = await raw_twilio(base, first, count, as_sent)
                spent[RAW_SHORT] = await raw_twilio(base, first, count)
                spent[FULL_SMS], asked[FULL_SMS] = await full(
                    FULL_SMS, first, count, campaigns[FULL_SMS]
                )
                if first == n:  # the warm-up: not counted
                    continue
                for name, value in spent.items():
                    seconds[name] += value
                for name, requests in asked.items():
                    made[name] = {k: made.get(name, {}).get(k, 0) + v for k, v in requests.items()}
            rates.append({name: n / spent for name, spent in seconds.items()})
        await engine.dispose()
    for name, requests in made.items():
        print(
            f"  {name}: {requests['mail'] // runs} Mail Send, {requests['sms'] // runs} Twilio"
            " requests per run"
        )
    _report(rates)
    print(f"load average (1 min) before / after: {load[0]:.2f} / {os.getloadavg()[0]:.2f}")


RATIOS = [
    ("email: raw batched / raw per-recipient loop", RAW_BATCHED, RAW_EMAIL),
    ("email: full path same copy / raw per-recipient", FULL_SAME, RAW_EMAIL),
    ("email: same copy, as a campaign / raw per-recipient", FULL_CAMPAIGN, RAW_EMAIL),
    ("email: full path same copy / raw batched loop", FULL_SAME, RAW_BATCHED),
    ("email: full path names in copy / raw per-recipient", FULL_NAMED, RAW_EMAIL),
    ("sms:   full path / raw loop, as sent", FULL_SMS, RAW_SMS),
    ("sms:   full path / raw loop, short messages", FULL_SMS, RAW_SHORT),
]
TARGETS = [  # (what, the ratio of RATIOS it is judged on, at least)
    ("SMS full path >= 0.5x the raw Twilio loop (as sent)", RATIOS[5][0], 0.5),
    (
        "email batching (same copy, as a campaign) >= 10x the raw per-recipient loop",
        RATIOS[2][0],
        10,
    ),
]


def _report(rates: list[dict[str, float]]) -> None:
    """Each way's msg/s and each ratio, per run and their median (the figure a target is
    judged on: each run's ratio is of ways run moments apart, the median drops a run the
    machine's load swayed)."""
    runs = len(rates)
    head = "" if runs == 1 else "  (median; each run)"
    print(f"{'':<52} {'msg/s':>8}{head}")
    for name in rates[0]:
        values = [r[name] for r in rates]
        each = "" if runs == 1 else "  (" + ", ".join(f"{v:,.0f}" for v in values) + ")"
        print(f"{name:<52} {statistics.median(values):>8,.0f}{each}")
    ratios = {}
    for label, top, bottom in RATIOS:
        values = [r[top] / r[bottom] for r in rates]
        ratios[label] = statistics.median(values)
        each = "" if runs == 1 else "  (" + ", ".join(f"{v:.2f}" for v in values) + ")"
        print(f"{label:<52} {ratios[label]:>7.2f}x{each}")
    for name, label, target in TARGETS:
        verdict = "MET" if ratios[label] >= target else "NOT MET"
        print(f"target {name}: {ratios[label]:.2f}x -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="the ways take turns, each on 1/rounds of them (1: each way sends to all of them,"
        " as one campaign of 10,000: 10 batches, 4 in flight)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs of every way, one after another (the figures are their medians)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="waymark-bench-send-") as tmp, ExitStack() as stack:
        pg = stack.enter_context(postgres(Path(tmp)))
        url = stack.enter_context(fresh_database(pg.admin_url))
        asyncio.run(run(url, args.recipients, args.rounds, args.runs))


if __name__ == "__main__":
    main()
