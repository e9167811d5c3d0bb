"""The send gate: before a message leaves, decide send / skip(reason) / hold(until).

One gate for journeys and campaigns. In order:

1. an address for the channel (email, phone, or a push subscription) — else skip `no_address`;
2. the address is not suppressed (hard bounce, spam report, invalid number) — all messages;
3. consent for the channel is `subscribed` — marketing only; transactional messages skip it;
4. Smart Sending — marketing only, when the message has it on: skip when the profile was sent a
   marketing message on the same channel within the workspace's window for that channel;
5. SMS/WhatsApp quiet hours in the recipient's local time (profile time zone, else the
   workspace's) — marketing only: hold until the window opens (DST-correct, via zoneinfo).

`check_many` decides for a whole batch in one SQL statement (campaign fan-out: up to 1,000
profiles per batch, no per-recipient queries); `check` is the single-profile form.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from channels.settings import ChannelSettings
from models import Channel


class GateAction(enum.StrEnum):
    send = "send"
    skip = "skip"
    hold = "hold"


class SkipReason(enum.StrEnum):
    no_address = "no_address"
    suppressed = "suppressed"
    no_consent = "no_consent"
    smart_sending = "smart_sending"


@dataclass(frozen=True)
class GateDecision:
    action: GateAction
    reason: str | None = None
    hold_until: datetime | None = None


SEND = GateDecision(GateAction.send)


class Recipient(Protocol):
    """What the gate reads of a profile (a `models.Profile` fits)."""

    id: uuid.UUID
    email: str | None
    phone: str | None
    timezone: str | None


QUIET_CHANNELS = frozenset({Channel.sms, Channel.whatsapp})

_FACTS = text(
    """
    SELECT x.n,
           -- A probe of the consent's primary key per recipient, not a join: planned as a
           -- join, consents the statistics have not seen yet (a new shop's import) looked like
           -- a handful of rows and were read wholesale for every batch.
           (SELECT c.state FROM consents c
            WHERE c.profile_id = x.id AND c.channel = :channel
              AND CAST(c.workspace_id AS text) = CAST(:ws AS text)) AS state,
           -- The suppression and Smart Sending checks probe their index per recipient too
           -- (OFFSET 0: EXISTS is not turned into a hashed subplan, which read every
           -- suppression, and every message the workspace sent within the window, once per
           -- batch: a campaign's own sends, more with every batch).
           EXISTS (SELECT 1 FROM suppressions s
                   WHERE s.workspace_id = :ws AND s.channel = :channel
                     AND s.address = x.address OFFSET 0) AS suppressed,
           -- Smart Sending's lookup only when the decision reads it.
           CASE WHEN CAST(:smart AS boolean) THEN
               EXISTS (SELECT 1 FROM messages m
                       WHERE m.workspace_id = :ws AND m.profile_id = x.id
                         AND m.channel = :channel AND NOT m.transactional
                         AND m.sent_at IS NOT NULL AND m.sent_at > :since OFFSET 0)
           ELSE false END AS recently_sent,
           CASE WHEN :channel = 'push' THEN
               EXISTS (SELECT 1 FROM push_subscriptions ps
                       WHERE ps.workspace_id = :ws AND ps.profile_id = x.id)
           ELSE x.address IS NOT NULL END AS has_address
    FROM (SELECT CAST(e.v ->> 0 AS uuid) AS id, e.v ->> 1 AS address, e.n
          FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(v, n)) AS x
    """
)


def address_of(profile: Recipient, channel: Channel) -> str | None:
    """The address suppressions are keyed by: lower-cased email, or the E.164 phone."""
    if channel == Channel.email:
        return profile.email.lower() if profile.email else None
    if channel in (Channel.sms, Channel.whatsapp):
        return profile.phone or None
    return None


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def quiet_hours_end(now: datetime, zone: ZoneInfo, settings: ChannelSettings) -> datetime | None:
    """When quiet hours end if `now` falls inside them in `zone` (UTC), else None.

    Wall-clock arithmetic in the recipient's zone: "08:00 tomorrow" is 08:00 local on that
    date whatever the UTC offset did overnight (DST changes included)."""
    quiet = settings.quiet_hours
    if not quiet.enabled or quiet.start == quiet.end:
        return None
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:  # e.g. 01:00–06:00, within one day
        inside = quiet.start <= clock < quiet.end
        end_date = local.date()
    else:  # e.g. 21:00–08:00, across midnight
        inside = clock >= quiet.start or clock < quiet.end
        end_date = local.date() + timedelta(days=1) if clock >= quiet.start else local.date()
    if not inside:
        return None
    end = datetime.combine(end_date, quiet.end, tzinfo=zone)
    # A wall time in a spring-forward gap does not exist; zoneinfo maps it past the gap.
    return end.astimezone(UTC)


async def check_many(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    profiles: Sequence[Recipient],
    channel: Channel | str,
    transactional: bool,
    smart_sending: bool,
    now: datetime,
    settings: ChannelSettings,
    refs: Sequence[str] | None = None,
) -> dict[uuid.UUID, GateDecision]:
    """The gate's decision for every profile, in one query (`refs`: their ids as text, when
    the caller has them)."""
    channel = Channel(channel)
    if not profiles:
        return {}
    addresses = [address_of(p, channel) for p in profiles]
    refs = refs or [str(p.id) for p in profiles]
    window_on = smart_sending and settings.smart_sending_window(channel) > timedelta(0)
    rows = await session.execute(
        _FACTS,
        {
            "ws": workspace_id,
            "channel": channel.value,
            "since": now - settings.smart_sending_window(channel),
            "smart": window_on and not transactional,
            # [[id, address], ...] as JSON text: json.dumps is C, psycopg's arrays are not.
            "rows": json.dumps([[r, a] for r, a in zip(refs, addresses, strict=True)]),
        },
    )
    # By position (`WITH ORDINALITY`): no profile id read back per row.
    facts: list = [None] * len(profiles)
    for row in rows:
        facts[row.n - 1] = row
    default_zone = settings.default_zone()
    decisions: dict[uuid.UUID, GateDecision] = {}
    for profile, fact in zip(profiles, facts, strict=True):
        if not fact.has_address:
            decision = GateDecision(GateAction.skip, SkipReason.no_address)
        elif fact.suppressed:
            decision = GateDecision(GateAction.skip, SkipReason.suppressed)
        elif transactional:
            decision = SEND
        elif fact.state != "subscribed":
            decision = GateDecision(GateAction.skip, SkipReason.no_consent)
        elif window_on and fact.recently_sent:
            decision = GateDecision(GateAction.skip, SkipReason.smart_sending)
        elif channel in QUIET_CHANNELS and (
            until := quiet_hours_end(now, _zone(profile.timezone, default_zone), settings)
        ):
            decision = GateDecision(GateAction.hold, hold_until=until)
        else:
            decision = SEND
        decisions[profile.id] = decision
    return decisions


async def check(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    profile: Recipient,
    channel: Channel | str,
    transactional: bool,
    smart_sending: bool,
    now: datetime,
    settings: ChannelSettings,
) -> GateDecision:
    """The gate's decision for one profile."""
    decisions = await check_many(
        session,
        workspace_id=workspace_id,
        profiles=[profile],
        channel=channel,
        transactional=transactional,
        smart_sending=smart_sending,
        now=now,
        settings=settings,
    )
    return decisions[profile.id]
