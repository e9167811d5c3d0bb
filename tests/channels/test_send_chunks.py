"""A large SMS send goes out in growing chunks: each claimed (committed) before its provider
call, the first one small, and a provider outage mid-send never sends anything twice."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text

from activities.channels import SendMessagesInput
from channels.base import ProviderUnavailable, SendResult, SendStatus
from channels.send import SMS_BATCH, send_many
from channels.settings import ChannelSettings, QuietHours, save_channel_settings
from core.db import session_scope
from core.settings import Settings
from models import Channel, Event, Message, MessageEvent
from models.templates import Template

N = 300


@pytest.fixture
def send_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        public_url="https://wm.example.com",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )


async def _setup(engine, workspaces) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    ws = await workspaces.create()
    async with session_scope(engine) as session:
        await save_channel_settings(
            session, ws.id, ChannelSettings(quiet_hours=QuietHours(enabled=False))
        )
        template = Template(
            workspace_id=ws.id, name="sale", channel=Channel.sms, body="Hi {{ profile.first_name }}"
        )
        session.add(template)
        await session.execute(
            text(
                """
                INSERT INTO profiles (id, workspace_id, phone, first_name, timezone, properties,
                                      created_at, updated_at)
                SELECT gen_random_uuid(), :ws, '+4860' || lpad(i::text, 7, '0'), 'P' || i, 'UTC',
                       '{}', now(), now()
                FROM generate_series(1, :n) AS i
                """
            ),
            {"ws": ws.id, "n": N},
        )
        await session.execute(
            text(
                """
                INSERT INTO consents (profile_id, channel, workspace_id, state, source, updated_at)
                SELECT id, 'sms', :ws, 'subscribed', 'api', now() FROM profiles
                WHERE workspace_id = :ws
                """
            ),
            {"ws": ws.id},
        )
        ids = list(
            (
                await session.execute(
                    text("SELECT id FROM profiles WHERE workspace_id = :ws ORDER BY id"),
                    {"ws": ws.id},
                )
            ).scalars()
        )
    return ws.id, template.id, ids


class WatchingSms:
    """Answers every SMS `sent`, noting for each call how many messages it got and whether
    each was already `sending` in the ledger (committed: read on another connection)."""

    def __init__(self, engine, *, unavailable_at: int | None = None) -> None:
        self.engine = engine
        self.calls: list[int] = []
        self.sent: list[uuid.UUID] = []
        self.unclaimed = 0
        self.unavailable_at = unavailable_at

    async def send_sms(self, messages):
        async with session_scope(self.engine) as session:
            claimed = set(
                (
                    await session.execute(
                        select(Message.id).where(
                            Message.id.in_([m.message_id for m in messages]),  # type: ignore[union-attr]
                            Message.status == "sending",
                        )
                    )
                ).scalars()
            )
        self.unclaimed += len(messages) - len(claimed)
        self.calls.append(len(messages))
        if self.unavailable_at is not None and len(self.calls) == self.unavailable_at:
            self.unavailable_at = None
            raise ProviderUnavailable("Twilio 503: try later")
        self.sent += [m.message_id for m in messages]
        return [
            SendResult(m.message_id, SendStatus.sent, f"SM{m.message_id.hex}") for m in messages
        ]


def _providers(provider):
    from types import SimpleNamespace

    return SimpleNamespace(sms=provider)


def _input(ws, template_id, ids, prefix) -> SendMessagesInput:
    return SendMessagesInput(
        workspace_id=ws,
        channel=Channel.sms,
        template_id=template_id,
        profile_ids=ids,
        idempotency_prefix=prefix,
        smart_sending=False,
    )


async def _count(engine, query) -> int:
    async with session_scope(engine) as session:
        return (await session.execute(query)).scalar_one()


async def test_a_large_sms_send_starts_small_and_claims_each_chunk_first(
    engine, workspaces, send_settings
):
    ws, template_id, ids = await _setup(engine, workspaces)
    provider = WatchingSms(engine)
    result = await send_many(
        engine,
        send_settings,
        _input(ws, template_id, ids, f"campaign-message:{uuid.uuid4()}"),
        providers=_providers(provider),
    )
    assert result.sent == N and result.failed == 0
    # The provider got its first messages after a small chunk, not a full one; every message
    # it got was claimed (`sending`, committed) before the call.
    assert provider.calls[0] < min(N, SMS_BATCH) and sum(provider.calls) == N
    assert provider.unclaimed == 0
    assert sorted(provider.sent) == sorted(set(provider.sent))
    sent = select(func.count()).select_from(Message).where(Message.workspace_id == ws)
    assert await _count(engine, sent.where(Message.status == "sent")) == N
    received = select(func.count()).select_from(Event).where(Event.workspace_id == ws)
    assert await _count(engine, received.where(Event.metric == "Received SMS")) == N


async def test_an_outage_mid_send_hands_back_and_the_retry_sends_the_rest_once(
    engine, workspaces, send_settings
):
    ws, template_id, ids = await _setup(engine, workspaces)
    prefix = f"campaign-message:{uuid.uuid4()}"
    provider = WatchingSms(engine, unavailable_at=2)
    with pytest.raises(ProviderUnavailable):
        await send_many(
            engine,
            send_settings,
            _input(ws, template_id, ids, prefix),
            providers=_providers(provider),
        )
    first = len(provider.sent)
    assert 0 < first < N
    by_status = select(Message.status, func.count()).where(Message.workspace_id == ws)
    async with session_scope(engine) as session:
        counts = dict((await session.execute(by_status.group_by(Message.status))).all())
    # The first chunk went out and is recorded; the chunk of the failed call and the one
    # claimed meanwhile are back in `queued` (none left in `sending`).
    assert counts["sent"] == first and "sending" not in counts
    assert counts["queued"] == N - first

    retry = await send_many(
        engine, send_settings, _input(ws, template_id, ids, prefix), providers=_providers(provider)
    )
    assert retry.sent == N and retry.replayed == first
    assert len(provider.sent) == len(set(provider.sent)) == N  # nobody twice
    assert provider.unclaimed == 0
    sent = select(func.count()).select_from(Message).where(Message.workspace_id == ws)
    assert await _count(engine, sent.where(Message.status == "sent")) == N
    assert await _count(engine, sent.where(Message.sent_at.is_not(None))) == N
    # The history keeps each hand-back with its reason (the claims and the acceptances are
    # the rows' `sending_at` and `sent_at`).
    history = select(MessageEvent.status, MessageEvent.detail["error"].astext).where(
        MessageEvent.workspace_id == ws
    )
    async with session_scope(engine) as session:
        entries = (await session.execute(history)).all()
    assert len(entries) == N - first
    assert all(s == "queued" and e.startswith("provider_unavailable") for s, e in entries)
