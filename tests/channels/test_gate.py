"""The send gate: consent, transactional bypass, suppression, Smart Sending, quiet hours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert

from channels.gate import GateAction, GateDecision, check, check_many
from channels.settings import ChannelSettings, QuietHours, SmartSendingWindows
from core.db import session_scope
from ingest.consents import ConsentUpdate, apply_consents
from models import Channel, ConsentSource, ConsentState, Message, Profile, Suppression

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 14:00 in Warsaw: outside quiet hours


async def _profile(engine, ws, *, consent=None, channel=Channel.email, **fields) -> Profile:
    n = uuid.uuid4().hex[:8]
    profile = Profile(
        workspace_id=ws,
        email=fields.pop("email", f"shopper-{n}@example.com"),
        phone=fields.pop("phone", f"+4860{int(n, 16) % 10_000_000:07d}"),
        **fields,
    )
    async with session_scope(engine) as session:
        session.add(profile)
        await session.flush()
        if consent:
            channels = [channel] if isinstance(channel, Channel) else channel
            await apply_consents(
                session,
                ws,
                [ConsentUpdate(profile.id, c, consent, ConsentSource.api) for c in channels],
            )
    return profile


async def _sent(engine, profile, channel, at, *, transactional=False) -> None:
    async with session_scope(engine) as session:
        session.add(
            Message(
                workspace_id=profile.workspace_id,
                profile_id=profile.id,
                channel=channel,
                source_type="flow",
                idempotency_key=str(uuid.uuid4()),
                transactional=transactional,
                status="sent",
                sent_at=at,
            )
        )


async def _check(engine, profile, channel=Channel.email, *, settings=None, **kw) -> GateDecision:
    args = {"transactional": False, "smart_sending": True, "now": NOW} | kw
    async with session_scope(engine) as session:
        return await check(
            session,
            workspace_id=profile.workspace_id,
            profile=profile,
            channel=channel,
            settings=settings or ChannelSettings(workspace_timezone="Europe/Warsaw"),
            **args,
        )


def skip(reason: str) -> GateDecision:
    return GateDecision(GateAction.skip, reason)


SEND = GateDecision(GateAction.send)


async def test_consent_is_required_for_marketing(engine, workspaces):
    ws = await workspaces.create()
    subscribed = await _profile(engine, ws.id, consent=ConsentState.subscribed)
    unsubscribed = await _profile(engine, ws.id, consent=ConsentState.unsubscribed)
    never_asked = await _profile(engine, ws.id)

    assert await _check(engine, subscribed) == SEND
    assert await _check(engine, unsubscribed) == skip("no_consent")
    assert await _check(engine, never_asked) == skip("no_consent")
    # Consent is per channel: email consent does not allow SMS.
    assert await _check(engine, subscribed, Channel.sms) == skip("no_consent")


async def test_transactional_skips_consent_but_not_suppression(engine, workspaces):
    ws = await workspaces.create()
    unsubscribed = await _profile(engine, ws.id, consent=ConsentState.unsubscribed)
    bounced = await _profile(engine, ws.id, email="Bounced@Example.com")
    async with session_scope(engine) as session:
        await session.execute(
            insert(Suppression).values(
                workspace_id=ws.id,
                channel=Channel.email,
                address="bounced@example.com",
                reason="hard_bounce",
            )
        )

    assert await _check(engine, unsubscribed, transactional=True) == SEND
    assert await _check(engine, bounced, transactional=True) == skip("suppressed")


async def test_suppressed_address_is_skipped_even_when_subscribed(engine, workspaces):
    ws = await workspaces.create()
    profile = await _profile(
        engine, ws.id, consent=ConsentState.subscribed, channel=[Channel.email, Channel.sms]
    )
    async with session_scope(engine) as session:
        await session.execute(
            insert(Suppression).values(
                workspace_id=ws.id, channel=Channel.sms, address=profile.phone, reason="invalid"
            )
        )
    assert await _check(engine, profile, Channel.sms) == skip("suppressed")
    assert await _check(engine, profile, Channel.email) == SEND


async def test_no_address_is_skipped(engine, workspaces):
    ws = await workspaces.create()
    profile = await _profile(engine, ws.id, consent=ConsentState.subscribed, email=None)
    assert await _check(engine, profile) == skip("no_address")
    push = await _profile(engine, ws.id, consent=ConsentState.subscribed, channel=Channel.push)
    assert await _check(engine, push, Channel.push) == skip("no_address")


@pytest.mark.parametrize(
    ("channel", "inside", "outside"),
    [
        (Channel.email, timedelta(hours=15), timedelta(hours=17)),
        (Channel.sms, timedelta(hours=23), timedelta(hours=25)),
        (Channel.whatsapp, timedelta(hours=23), timedelta(hours=25)),
    ],
)
async def test_smart_sending_window_per_channel(engine, workspaces, channel, inside, outside):
    ws = await workspaces.create()
    # Quiet hours off: this test is about the window only.
    settings = ChannelSettings(quiet_hours=QuietHours(enabled=False))
    recent = await _profile(engine, ws.id, consent=ConsentState.subscribed, channel=channel)
    earlier = await _profile(engine, ws.id, consent=ConsentState.subscribed, channel=channel)
    await _sent(engine, recent, channel, NOW - inside)
    await _sent(engine, earlier, channel, NOW - outside)

    assert await _check(engine, recent, channel, settings=settings) == skip("smart_sending")
    assert await _check(engine, earlier, channel, settings=settings) == SEND
    # Off for this message: sent anyway.
    assert await _check(engine, recent, channel, settings=settings, smart_sending=False) == SEND


async def test_smart_sending_counts_only_marketing_on_the_same_channel(engine, workspaces):
    ws = await workspaces.create()
    profile = await _profile(
        engine, ws.id, consent=ConsentState.subscribed, channel=[Channel.email, Channel.sms]
    )
    await _sent(engine, profile, Channel.email, NOW - timedelta(hours=1), transactional=True)
    await _sent(engine, profile, Channel.sms, NOW - timedelta(hours=1))
    assert await _check(engine, profile, Channel.email) == SEND


async def test_smart_sending_window_is_per_workspace(engine, workspaces):
    ws = await workspaces.create()
    profile = await _profile(engine, ws.id, consent=ConsentState.subscribed)
    await _sent(engine, profile, Channel.email, NOW - timedelta(hours=5))
    short = ChannelSettings(smart_sending_hours=SmartSendingWindows(email=4))
    long = ChannelSettings(smart_sending_hours=SmartSendingWindows(email=6))
    assert await _check(engine, profile, settings=short) == SEND
    assert await _check(engine, profile, settings=long) == skip("smart_sending")


@pytest.mark.parametrize(
    ("zone", "now", "until"),
    [
        # Warsaw, the evening before spring-forward (CET → CEST): 08:00 local is 06:00Z.
        ("Europe/Warsaw", datetime(2026, 3, 28, 20, 30, tzinfo=UTC), datetime(2026, 3, 29, 6, 0)),
        # New York, the night of fall-back (EDT → EST): 08:00 local is 13:00Z.
        ("America/New_York", datetime(2026, 11, 1, 3, 0, tzinfo=UTC), datetime(2026, 11, 1, 13)),
        # Early morning, same local day: 07:59 in Tokyo → 08:00 Tokyo (23:00Z the day before).
        ("Asia/Tokyo", datetime(2026, 6, 9, 22, 59, tzinfo=UTC), datetime(2026, 6, 9, 23, 0)),
    ],
)
async def test_quiet_hours_hold_sms_until_local_morning(engine, workspaces, zone, now, until):
    ws = await workspaces.create()
    profile = await _profile(
        engine, ws.id, consent=ConsentState.subscribed, channel=Channel.sms, timezone=zone
    )
    decision = await _check(engine, profile, Channel.sms, now=now)
    assert decision == GateDecision(GateAction.hold, hold_until=until.replace(tzinfo=UTC))


async def test_quiet_hours_use_the_workspace_zone_without_a_profile_zone(engine, workspaces):
    ws = await workspaces.create()
    no_zone = await _profile(engine, ws.id, consent=ConsentState.subscribed, channel=Channel.sms)
    bad_zone = await _profile(
        engine, ws.id, consent=ConsentState.subscribed, channel=Channel.sms, timezone="Mars/Base"
    )
    settings = ChannelSettings(workspace_timezone="America/Los_Angeles")
    # 20:00Z is 13:00 in Los Angeles (send), but 22:00 in Warsaw.
    at = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
    assert await _check(engine, no_zone, Channel.sms, now=at, settings=settings) == SEND
    assert await _check(engine, bad_zone, Channel.sms, now=at, settings=settings) == SEND
    # 05:00Z is 22:00 in Los Angeles: held until 08:00 there (15:00Z).
    at = datetime(2026, 6, 10, 5, 0, tzinfo=UTC)
    decision = await _check(engine, no_zone, Channel.sms, now=at, settings=settings)
    assert decision.hold_until == datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
    # A workspace default zone set in channel settings wins over the workspace's own.
    settings.timezone = "Europe/Warsaw"
    at = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
    assert (await _check(engine, no_zone, Channel.sms, now=at, settings=settings)).action == "hold"


async def test_quiet_hours_spare_email_transactional_and_custom_windows(engine, workspaces):
    ws = await workspaces.create()
    profile = await _profile(
        engine,
        ws.id,
        consent=ConsentState.subscribed,
        channel=[Channel.email, Channel.sms],
        timezone="Europe/Warsaw",
    )
    night = datetime(2026, 6, 10, 21, 0, tzinfo=UTC)  # 23:00 in Warsaw
    assert await _check(engine, profile, Channel.email, now=night) == SEND
    assert await _check(engine, profile, Channel.sms, now=night, transactional=True) == SEND
    late = ChannelSettings(quiet_hours=QuietHours(start=time(23, 30), end=time(7, 0)))
    assert await _check(engine, profile, Channel.sms, now=night, settings=late) == SEND
    off = ChannelSettings(quiet_hours=QuietHours(enabled=False))
    assert await _check(engine, profile, Channel.sms, now=night, settings=off) == SEND


async def test_check_many_decides_a_batch_in_one_query(engine, workspaces):
    ws = await workspaces.create()
    subscribed = [await _profile(engine, ws.id, consent=ConsentState.subscribed) for _ in range(5)]
    others = [await _profile(engine, ws.id) for _ in range(5)]
    await _sent(engine, subscribed[0], Channel.email, NOW - timedelta(hours=1))
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with session_scope(engine) as session:
            decisions = await check_many(
                session,
                workspace_id=ws.id,
                profiles=subscribed + others,
                channel=Channel.email,
                transactional=False,
                smart_sending=True,
                now=NOW,
                settings=ChannelSettings(),
            )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)

    assert len([s for s in statements if "jsonb_array_elements" in s]) == 1
    assert len(statements) <= 3  # the query, plus BEGIN/COMMIT bookkeeping at most
    assert decisions[subscribed[0].id] == skip("smart_sending")
    assert all(decisions[p.id] == SEND for p in subscribed[1:])
    assert all(decisions[p.id] == skip("no_consent") for p in others)
