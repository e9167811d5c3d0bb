"""What the database says about the journey benchmark's customers and their journeys.

`seed_customers` makes the customers (set-based SQL); `completed_journeys` counts the finished
journeys of one phase; `journey_times` reads, per journey, when its event was accepted, when
the router started it, when it entered and left the delay (as the workflow recorded the steps),
when the ledger marked the email sent and when the journey ended.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import psycopg

from core.db import libpq_url
from flows.runtime import journey_id

METRIC = "Started Checkout"


def seed_customers(url: str, workspace_id: uuid.UUID, prefix: str, n: int) -> None:
    """`n` profiles `{prefix}{i}` with an email address and email consent, set-based."""
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(
            """
            WITH p AS (
                INSERT INTO profiles (id, workspace_id, external_id, email, first_name, timezone,
                                      properties, created_at, updated_at)
                SELECT gen_random_uuid(), %(ws)s, %(prefix)s || i,
                       %(prefix)s || i || '@example.com',
                       'Shopper' || i, 'UTC', '{}', now(), now()
                FROM generate_series(1, %(n)s) AS i
                RETURNING id
            )
            INSERT INTO consents (profile_id, channel, workspace_id, state, source, updated_at)
            SELECT id, 'email', %(ws)s, 'subscribed', 'api', now() FROM p
            """,
            {"ws": workspace_id, "prefix": prefix, "n": n},
        )


def completed_journeys(url: str, flow_id: uuid.UUID, prefix: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(
            "SELECT count(*) FROM journeys j JOIN profiles p ON p.id = j.profile_id "
            "WHERE j.flow_id = %s AND j.status = 'completed' AND p.external_id LIKE %s",
            (flow_id, prefix + "%"),
        ).fetchone()[0]


STAGES = (
    "outbox+router",  # event accepted → the router starts the journey
    "start→delay",  # start RPC, first workflow task, load, register, record "entered"
    "delay",  # the timer, from "entered" to "completed" as the workflow recorded them
    "delay→sent",  # record, record, the send path up to the ledger's sent_at
    "sent→end",  # record "completed", end the journey
)


def journey_times(
    url: str, flow_id: uuid.UUID, prefix: str
) -> tuple[float, list[float], dict[str, list[float]]]:
    """From the data: first acceptance → last journey end; per journey, event accepted → sent,
    and the time spent in each of `STAGES`."""
    with psycopg.connect(libpq_url(url)) as conn:
        events = conn.execute(
            "SELECT id, received_at FROM events WHERE metric = %s AND message_id LIKE %s",
            (METRIC, prefix + "%"),
        ).fetchall()
        journeys = {
            jid: (started, ended)
            for jid, started, ended in conn.execute(
                "SELECT id, started_at, ended_at FROM journeys WHERE flow_id = %s", (flow_id,)
            )
        }
        delays: dict[tuple[uuid.UUID, str], datetime] = {
            (jid, outcome): at
            for jid, outcome, at in conn.execute(
                "SELECT journey_id, outcome, occurred_at FROM journey_steps "
                "WHERE flow_id = %s AND step_id = 'wait'",
                (flow_id,),
            )
        }
        sent = dict(
            conn.execute(
                "SELECT journey_id, sent_at FROM messages WHERE flow_id = %s AND status = 'sent'",
                (str(flow_id),),
            ).fetchall()
        )
    latencies: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for event_id, received_at in events:
        jid = journey_id(flow_id, event_id)
        if (at := sent.get(str(jid))) is None:
            raise RuntimeError(f"event {event_id}'s journey sent no email")
        latencies.append((at - received_at).total_seconds())
        started, ended = journeys[jid]
        marks = [received_at, started, delays[jid, "entered"], delays[jid, "completed"], at, ended]
        for name, (a, b) in zip(STAGES, zip(marks, marks[1:], strict=False), strict=True):
            stages[name].append((b - a).total_seconds())
    first = min(received_at for _, received_at in events)
    last = max(journeys[journey_id(flow_id, event_id)][1] for event_id, _ in events)
    return (last - first).total_seconds(), latencies, stages
