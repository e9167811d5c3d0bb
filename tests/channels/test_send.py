"""The send path end to end through the local outbox: ledger, events, retries, failures."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, update
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.channels import (
    SendActivities,
    SendMessageInput,
    SendMessageResult,
    SendMessagesInput,
    SendOutcome,
)
from channels import ledger
from channels.base import ProviderUnavailable
from channels.providers.local import LocalOutboxProvider
from channels.send import OutcomePending, send_many, send_one, unpack_content
from channels.settings import ChannelSettings, load_channel_settings, save_channel_settings
from core.db import session_scope
from core.settings import Settings
from ingest.consents import ConsentUpdate, apply_consents
from models import (
    Channel,
    ConsentSource,
    ConsentState,
    Event,
    LocalOutboxMessage,
    Message,
    MessageEvent,
    MessageStatus,
    Profile,
    SourceType,
)
from models.base import utcnow
from models.templates import Template

HTML = '<html><body><p>Hi {{ profile.first_name }}!</p><a href="https://shop.example.com/sale">Sale</a></body></html>'


@pytest.fixture
def send_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        public_url="https://wm.example.com",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )


async def _workspace(engine, workspaces, **channel_settings):
    ws = await workspaces.create()
    async with session_scope(engine) as session:
        cs = ChannelSettings(from_email="shop@example.com", from_name="Shop", **channel_settings)
        await save_channel_settings(session, ws.id, cs)
    return ws


async def _template(engine, ws, channel=Channel.email, **parts) -> uuid.UUID:
    if not parts:
        parts = {"subject": "Hello {{ profile.first_name }}", "html": HTML}
        if channel != Channel.email:
            parts = {"body": "Hi {{ profile.first_name }}, sale: https://shop.example.com/sale"}
    template = Template(workspace_id=ws.id, name=str(uuid.uuid4()), channel=channel, **parts)
    async with session_scope(engine) as session:
        session.add(template)
    return template.id


async def _profile(engine, ws, *, consent=ConsentState.subscribed, channels=(Channel.email,)):
    n = uuid.uuid4().hex[:8]
    profile = Profile(
        workspace_id=ws.id,
        email=f"ada-{n}@example.com",
        phone=f"+4860{int(n, 16) % 10_000_000:07d}",
        first_name="Ada",
        timezone="UTC",
    )
    async with session_scope(engine) as session:
        session.add(profile)
        await session.flush()
        if consent:
            updates = [ConsentUpdate(profile.id, c, consent, ConsentSource.api) for c in channels]
            await apply_consents(session, ws.id, updates)
    return profile


def _input(ws, profile, template_id, channel=Channel.email, **kw) -> SendMessageInput:
    return SendMessageInput(
        workspace_id=ws.id,
        profile_id=profile.id,
        channel=channel,
        template_id=template_id,
        idempotency_key=kw.pop("key", f"journey:{uuid.uuid4()}:step-1"),
        flow_id="welcome",
        flow_version=1,
        step_id="step-1",
        **kw,
    )


class CountingProvider:
    """The local outbox, counting calls per message id; optionally unavailable N times."""

    def __init__(self, engine, workspace_id, *, unavailable: int = 0) -> None:
        self.local = LocalOutboxProvider(engine, workspace_id)
        self.calls: list[uuid.UUID] = []
        self.unavailable = unavailable

    async def _send(self, method, messages):
        if self.unavailable:
            self.unavailable -= 1
            raise ProviderUnavailable("SendGrid 503: try later")
        self.calls += [m.message_id for m in messages]
        return await getattr(self.local, method)(messages)

    async def send_emails(self, emails):
        return await self._send("send_emails", emails)

    async def send_sms(self, messages):
        return await self._send("send_sms", messages)


def _providers(provider):
    return SimpleNamespace(email=provider, sms=provider, whatsapp=provider, push=provider)


async def _count(engine, query) -> int:
    async with session_scope(engine) as session:
        return (await session.execute(query)).scalar_one()


async def test_email_goes_out_through_the_local_outbox(engine, workspaces, send_settings):
    ws = await _workspace(engine, workspaces, utm={"utm_source": "waymark"})
    template_id = await _template(engine, ws)
    profile = await _profile(engine, ws)

    result = await send_one(engine, send_settings, _input(ws, profile, template_id))

    assert result.outcome == SendOutcome.sent and not result.replayed
    assert result.provider_message_id.startswith("local-")
    async with session_scope(engine) as session:
        message = await session.get(Message, result.message_id)
        history = (
            await session.execute(
                select(MessageEvent.status)
                .where(MessageEvent.message_id == message.id)
                .order_by(MessageEvent.id)
            )
        ).scalars()
        outbox = (
            await session.execute(
                select(LocalOutboxMessage).where(LocalOutboxMessage.message_id == message.id)
            )
        ).scalar_one()
        received = (
            await session.execute(select(Event).where(Event.profile_id == profile.id))
        ).scalar_one()
    assert (message.status, message.to_address, message.subject) == (
        "sent",
        profile.email,
        "Hello Ada",
    )
    assert (message.flow_id, message.step_id, message.provider) == (
        "welcome",
        "step-1",
        "LocalOutboxProvider",
    )
    assert message.sent_at is not None and message.provider_message_id == result.provider_message_id
    # The claim and the acceptance are the row's own (no history entry for either).
    assert message.created_at == message.sending_at <= message.sent_at
    assert list(history) == []
    # The ledger keeps exactly what the provider got: tracked links (with UTM), the pixel.
    content = unpack_content(message.content)
    assert content["html"] == outbox.html and "Hi Ada!" in content["html"]
    assert "https://wm.example.com/l/c/" in outbox.html
    assert "https://shop.example.com/sale" not in outbox.html
    assert outbox.payload["custom_args"]["waymark_message_id"] == str(message.id)
    assert "List-Unsubscribe" in outbox.payload["headers"]
    assert received.metric == "Received Email"
    assert received.message_id == f"waymark:{message.id}:received"
    assert received.properties == {
        "message_id": str(message.id),
        "channel": "email",
        "subject": "Hello Ada",
        "flow_id": "welcome",
        "step_id": "step-1",
        "template_id": str(template_id),
    }


async def test_a_retry_with_the_same_key_sends_once(engine, workspaces, send_settings):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    profile = await _profile(engine, ws)
    provider = CountingProvider(engine, ws.id)
    input = _input(ws, profile, template_id, key="journey:run-1:step-1")

    first = await send_one(engine, send_settings, input, providers=_providers(provider))
    again = await send_one(engine, send_settings, input, providers=_providers(provider))
    # Through the real provider lookup (local outbox) too.
    third = await send_one(engine, send_settings, input)

    assert first.outcome == again.outcome == third.outcome == SendOutcome.sent
    assert first.message_id == again.message_id == third.message_id
    assert again.replayed and third.replayed
    assert provider.calls == [first.message_id]
    assert await _count(engine, select(func.count()).select_from(LocalOutboxMessage)) == 1
    assert await _count(engine, select(func.count()).select_from(Message)) == 1
    assert await _count(engine, select(func.count()).select_from(Event)) == 1


async def test_template_error_fails_the_message_with_the_reason(engine, workspaces, send_settings):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(
        engine, ws, subject="Your cart", html="<p>{{ event.cart.itmes }}</p>"
    )
    profile = await _profile(engine, ws)

    result = await send_one(
        engine, send_settings, _input(ws, profile, template_id, event={"cart": {"items": []}})
    )

    assert result.outcome == SendOutcome.failed
    assert result.error.startswith("template_error: html line 1")
    assert "itmes" in result.error
    async with session_scope(engine) as session:
        message = await session.get(Message, result.message_id)
    assert message.status == "failed" and message.error == result.error
    assert message.content is None  # never half-filled
    assert await _count(engine, select(func.count()).select_from(LocalOutboxMessage)) == 0
    assert await _count(engine, select(func.count()).select_from(Event)) == 0


async def test_skips_are_recorded_with_their_reason(engine, workspaces, send_settings):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    profile = await _profile(engine, ws, consent=None)

    result = await send_one(engine, send_settings, _input(ws, profile, template_id))
    transactional = await send_one(
        engine, send_settings, _input(ws, profile, template_id, transactional=True)
    )

    assert (result.outcome, result.skip_reason) == (SendOutcome.skipped, "no_consent")
    assert transactional.outcome == SendOutcome.sent
    async with session_scope(engine) as session:
        message = await session.get(Message, result.message_id)
        reason = (
            await session.execute(
                select(MessageEvent.detail["reason"].astext).where(
                    MessageEvent.message_id == message.id
                )
            )
        ).scalar_one()
    assert (message.status, message.skip_reason, reason) == ("skipped", "no_consent", "no_consent")


async def test_provider_unavailable_hands_the_message_back_for_a_retry(
    engine, workspaces, send_settings
):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    profile = await _profile(engine, ws)
    provider = CountingProvider(engine, ws.id, unavailable=1)
    input = _input(ws, profile, template_id)

    with pytest.raises(ProviderUnavailable):
        await send_one(engine, send_settings, input, providers=_providers(provider))
    async with session_scope(engine) as session:
        row = (await session.execute(select(Message))).scalar_one()
    assert row.status == "queued" and "503" in row.error

    result = await send_one(engine, send_settings, input, providers=_providers(provider))
    assert result.outcome == SendOutcome.sent and provider.calls == [row.id]


async def test_an_interrupted_send_is_never_resent(engine, workspaces, send_settings):
    """The unknown-outcome window: a row left in `sending` by a dead worker."""
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    profile = await _profile(engine, ws)
    provider = CountingProvider(engine, ws.id)
    input = _input(ws, profile, template_id)
    row = Message(
        workspace_id=ws.id,
        profile_id=profile.id,
        channel=Channel.email,
        source_type="flow",
        idempotency_key=input.idempotency_key,
        status="sending",
        sending_at=utcnow(),
    )
    async with session_scope(engine) as session:
        session.add(row)

    # Young: wait for the provider's events (the activity retries later).
    with pytest.raises(OutcomePending):
        await send_one(engine, send_settings, input, providers=_providers(provider))
    # Old and still unconfirmed: settled as failed, outcome unknown; never sent again.
    async with session_scope(engine) as session:
        await session.execute(
            update(Message)
            .where(Message.id == row.id)
            .values(sending_at=utcnow() - timedelta(minutes=11))
        )
    result = await send_one(engine, send_settings, input, providers=_providers(provider))
    assert result.outcome == SendOutcome.failed and result.error.startswith("outcome_unknown")
    assert provider.calls == []
    # A late delivery report (SendGrid event with our custom arg) still settles it.
    async with session_scope(engine) as session:
        await ledger.record_provider_event(
            session,
            workspace_id=ws.id,
            message_id=row.id,
            status="delivered",
            occurred_at=utcnow(),
            provider_event_id="sendgrid:evt-1",
        )
        message = await session.get(Message, row.id)
    assert message.status == "delivered" and message.sent_at is not None


async def test_a_campaign_batch_is_sent_once_per_profile(engine, workspaces, send_settings):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    subscribed = [await _profile(engine, ws) for _ in range(12)]
    never = [await _profile(engine, ws, consent=None) for _ in range(3)]
    already = await send_one(engine, send_settings, _input(ws, subscribed[0], template_id))
    assert already.outcome == SendOutcome.sent
    campaign_message_id = uuid.uuid4()
    input = SendMessagesInput(
        workspace_id=ws.id,
        channel=Channel.email,
        template_id=template_id,
        profile_ids=[p.id for p in subscribed + never] + [uuid.uuid4()],
        idempotency_prefix=f"campaign-message:{campaign_message_id}",
        campaign_id=uuid.uuid4(),
        campaign_message_id=campaign_message_id,
    )
    beats: list = []

    result = await send_many(engine, send_settings, input, heartbeat=beats.append)
    again = await send_many(engine, send_settings, input)

    assert (result.sent, result.failed, result.missing) == (11, 0, 1)
    assert result.skipped == {"smart_sending": 1, "no_consent": 3}
    assert beats == [11]
    assert (again.sent, again.replayed) == (11, 15)
    assert await _count(engine, select(func.count()).select_from(LocalOutboxMessage)) == 12
    received = select(func.count()).select_from(Event).where(Event.metric == "Received Email")
    assert await _count(engine, received) == 12


async def test_sms_in_quiet_hours_is_held_then_sent(engine, workspaces, send_settings):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws, Channel.sms)
    profile = await _profile(engine, ws, channels=(Channel.sms,))
    local_hour = utcnow().hour
    # Quiet hours around "now" in UTC (the profile's zone), then switched off.
    start, end = (local_hour - 1) % 24, (local_hour + 1) % 24
    async with session_scope(engine) as session:
        cs = await load_channel_settings(session, ws.id)
        cs.quiet_hours.start = cs.quiet_hours.start.replace(hour=start, minute=0)
        cs.quiet_hours.end = cs.quiet_hours.end.replace(hour=end, minute=0)
        await save_channel_settings(session, ws.id, cs)
    input = _input(ws, profile, template_id, Channel.sms)

    held = await send_one(engine, send_settings, input)
    assert held.outcome == SendOutcome.held and held.hold_until > utcnow()

    async with session_scope(engine) as session:
        cs.quiet_hours.enabled = False
        await save_channel_settings(session, ws.id, cs)
    sent = await send_one(engine, send_settings, input)
    assert sent.outcome == SendOutcome.sent and sent.message_id == held.message_id
    async with session_scope(engine) as session:
        outbox = (await session.execute(select(LocalOutboxMessage))).scalar_one()
    assert outbox.text.startswith("Hi Ada, sale: https://wm.example.com/l/c/")
    assert outbox.payload["status_callback"].endswith(f"/status?wm={sent.message_id}")


@workflow.defn(sandboxed=False)
class SendOnceWorkflow:
    @workflow.run
    async def run(self, input: SendMessageInput) -> SendMessageResult:
        return await workflow.execute_activity(
            SendActivities.send_message,
            input,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )


async def test_send_message_runs_as_an_activity(
    engine, workspaces, settings, temporal_env, task_queue
):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    profile = await _profile(engine, ws)
    client = Client(
        temporal_env.client.service_client,
        namespace="default",
        data_converter=pydantic_data_converter,
    )
    activities = SendActivities(engine, settings)
    input = _input(ws, profile, template_id, key="journey:wf:step")
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SendOnceWorkflow],
        activities=[activities.send_message],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        results = [
            await client.execute_workflow(
                SendOnceWorkflow.run, input, id=f"send-{uuid.uuid4()}", task_queue=task_queue
            )
            for _ in range(2)
        ]
    assert [r.outcome for r in results] == [SendOutcome.sent, SendOutcome.sent]
    assert [r.replayed for r in results] == [False, True]
    assert await _count(engine, select(func.count()).select_from(LocalOutboxMessage)) == 1


class CapturingProvider(CountingProvider):
    """The local outbox, keeping every OutgoingEmail it was handed."""

    def __init__(self, engine, workspace_id) -> None:
        super().__init__(engine, workspace_id)
        self.emails: list = []

    async def send_emails(self, emails):
        self.emails += emails
        return await super().send_emails(emails)


async def test_a_campaign_batch_shares_content_with_per_recipient_substitutions(
    engine, workspaces, send_settings
):
    """Same copy but for the recipient's own links (the template prints its preferences URL):
    the message's token (in its click URLs, open pixel, unsubscribe and preference links) is
    the one substitution, so the content is the same for every recipient (one SendGrid
    request); the ledger gives each message back as its recipient got it, the outbox keeps
    each one's real content."""
    from channels.compose import message_content
    from channels.email_tags import _TAG, substitute
    from channels.links import LinkKind, verify, verify_click

    ws = await _workspace(engine, workspaces, utm={"utm_source": "waymark"})
    html = (
        '<html><body><p>Sale!</p><a href="https://shop.example.com/sale">Sale</a> '
        '<a href="{{ preferences_url }}">Preferences</a></body></html>'
    )
    template_id = await _template(engine, ws, subject="Summer sale", html=html)
    profiles = [await _profile(engine, ws) for _ in range(5)]
    provider = CapturingProvider(engine, ws.id)
    input = SendMessagesInput(
        workspace_id=ws.id,
        channel=Channel.email,
        template_id=template_id,
        profile_ids=[p.id for p in profiles],
        idempotency_prefix=f"campaign-message:{uuid.uuid4()}",
    )

    result = await send_many(engine, send_settings, input, providers=_providers(provider))

    assert result.sent == 5
    emails = provider.emails
    assert len({(e.subject, e.html, e.text) for e in emails}) == 1  # one shared content
    shared = emails[0].html
    assert "shop.example.com" not in shared
    # The click, the pixel and the recipient's links: around the tag of each message's token.
    tags = set(_TAG.findall(shared))
    assert len(tags) == 1 and shared.count("/l/c/-wm") == shared.count("/l/o/-wm") == 1
    assert shared.count("/l/p/-wm") == shared.count("/l/u/-wm") == 1
    async with session_scope(engine) as session:
        messages = {
            m.id: m
            for m in (await session.execute(select(Message).where(Message.workspace_id == ws.id)))
            .scalars()
            .all()
        }
        outbox = {
            o.message_id: o
            for o in (await session.execute(select(LocalOutboxMessage))).scalars().all()
        }
        contents = {
            m.id: await message_content(session, send_settings, m) for m in messages.values()
        }
    assert {m.content for m in messages.values()} == {None}  # kept once: `message_contents`
    for email in emails:
        assert set(email.substitutions) == tags  # the message token
        content = contents[email.message_id]
        real = substitute(email.html, email.substitutions)
        assert content["html"] == real == outbox[email.message_id].html
        assert content["text"] == substitute(email.text, email.substitutions)
        assert "https://wm.example.com/l/p/" in real and "https://wm.example.com/l/o/" in real
        [token] = [t for t in real.split('"') if t.startswith("https://wm.example.com/l/c/")]
        click = verify_click(send_settings, *token.split("/")[-2:])
        assert click.message_id == email.message_id
        assert click.url.startswith("https://shop.example.com/sale?utm_source=waymark")
        [pixel] = [t for t in real.split('"') if t.startswith("https://wm.example.com/l/o/")]
        opened = verify(send_settings, pixel.rsplit("/", 1)[1][: -len(".gif")], LinkKind.open)
        assert (opened.message_id, opened.profile_id) == (click.message_id, click.profile_id)
        [token] = email.substitutions.values()
        assert email.headers["List-Unsubscribe"] == f"<https://wm.example.com/l/u/{token}>"
        [url] = [t for t in real.split('"') if t.startswith("https://wm.example.com/l/p/")]
        preferences = verify(send_settings, url.rsplit("/", 1)[1], LinkKind.preferences)
        assert preferences.message_id == email.message_id and url.endswith(token)


async def test_a_partly_sent_call_records_what_went_out(engine, workspaces, send_settings):
    """Some requests accepted, others unavailable: the accepted are `sent` (never resent),
    the rest handed back to `queued` for the retry."""
    from channels.base import SendResult, SendStatus
    from channels.providers.common import PartlySent

    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    profiles = [await _profile(engine, ws) for _ in range(2)]

    class HalfProvider:
        async def send_emails(self, emails):
            first = SendResult(emails[0].message_id, SendStatus.sent, "sg-1")
            raise PartlySent("SendGrid 503: try later", [first])

    input = SendMessagesInput(
        workspace_id=ws.id,
        channel=Channel.email,
        template_id=template_id,
        profile_ids=[p.id for p in profiles],
        idempotency_prefix=f"campaign-message:{uuid.uuid4()}",
    )
    with pytest.raises(ProviderUnavailable):
        await send_many(engine, send_settings, input, providers=_providers(HalfProvider()))
    async with session_scope(engine) as session:
        statuses = sorted(
            (m.status, m.provider_message_id)
            for m in (await session.execute(select(Message))).scalars()
        )
    assert statuses == [("queued", None), ("sent", "sg-1")]


async def test_an_accepted_message_a_provider_event_moved_first_still_gets_its_received_event(
    engine, workspaces
):
    """The outcome statement makes "Received Email" from the rows it moves; a message it does
    not move because a provider event (delivered) got there first is read again and gets its
    event too, and a replay of the outcome stores no second one."""
    ws = await _workspace(engine, workspaces)
    profiles = [await _profile(engine, ws) for _ in range(3)]
    async with session_scope(engine) as session:
        messages = [
            Message(
                workspace_id=ws.id,
                profile_id=p.id,
                channel=Channel.email,
                source_type=SourceType.campaign,
                idempotency_key=f"test:{uuid.uuid4()}",
                status=MessageStatus.sending,
                subject="Sale",
            )
            for p in profiles
        ]
        session.add_all(messages)
    ids = [m.id for m in messages]
    async with session_scope(engine) as session:
        await ledger.record_provider_event(
            session,
            workspace_id=ws.id,
            message_id=ids[0],
            status=MessageStatus.delivered,
            occurred_at=utcnow(),
            provider_event_id="sg-1",
        )
    outcomes = [ledger.Outcome(i, MessageStatus.sent, "sg-batch") for i in ids]
    for expected_moves in (2, 0):  # the outcome, then its replay
        async with session_scope(engine) as session:
            moved = await ledger.mark_outcomes(
                session, ws.id, outcomes, utcnow(), received_metric="Received Email"
            )
        assert moved == expected_moves
        async with session_scope(engine) as session:
            events = (
                await session.execute(select(Event).where(Event.workspace_id == ws.id))
            ).scalars()
            received = sorted((e.profile_id, e.message_id, e.properties["subject"]) for e in events)
        assert received == sorted(
            (p.id, f"waymark:{i}:received", "Sale") for p, i in zip(profiles, ids, strict=True)
        )
