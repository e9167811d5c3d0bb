"""Local mode: a workspace without provider accounts records what it would have sent."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from channels.base import OutgoingEmail, OutgoingPush, OutgoingSms, SendStatus
from channels.credentials import SecretBox, TwilioCredentials, providers_for, save
from channels.providers.local import LocalOutboxProvider
from channels.providers.twilio import TwilioSmsProvider
from core.db import session_scope
from core.settings import Settings
from models import Channel, LocalOutboxMessage, Profile, PushSubscription

SETTINGS = Settings(secret_key="test-secret-key-that-is-long-enough-0123456789")


def email(**kw) -> OutgoingEmail:
    fields = {
        "message_id": uuid.uuid4(),
        "to": "ann@example.com",
        "from_email": "shop@example.com",
        "subject": "Hello <Ann>",
        "html": "<p>Hi</p>",
        "text": "Hi",
        "headers": {"List-Unsubscribe": "<https://waymark.test/u/1>"},
        "custom_args": {"waymark_profile_id": str(uuid.uuid4())},
    }
    return OutgoingEmail(**(fields | kw))


async def test_every_channel_is_recorded_once_per_message(engine, workspaces):
    ws = await workspaces.create()
    async with session_scope(engine) as session:
        profile = Profile(workspace_id=ws.id, external_id="u-1")
        session.add(profile)
        await session.flush()
        subscription = PushSubscription(
            workspace_id=ws.id,
            profile_id=profile.id,
            endpoint="https://push.example/1",
            p256dh="k",
            auth="a",
        )
        session.add(subscription)
    outbox = LocalOutboxProvider(engine, ws.id)
    mail = email()
    [sent] = await outbox.send_emails([mail])
    assert sent.status is SendStatus.sent and sent.provider_message_id.startswith("local-")
    # Temporal retries the activity: the same message is recorded once, same provider id.
    [again] = await outbox.send_emails([mail])
    assert again == sent

    sms = OutgoingSms(message_id=uuid.uuid4(), to="+14155550100", body="Hi", whatsapp=True)
    [whatsapp] = await outbox.send_sms([sms])
    push = OutgoingPush(
        message_id=uuid.uuid4(),
        subscription_id=subscription.id,
        endpoint=subscription.endpoint,
        p256dh="k",
        auth="a",
        payload={"title": "T", "body": "B", "url": "https://shop.example"},
    )
    [pushed] = await outbox.send_push([push])
    assert whatsapp.status is pushed.status is SendStatus.sent

    async with session_scope(engine) as session:
        rows = {
            r.channel: r
            for r in (
                await session.execute(
                    select(LocalOutboxMessage).where(LocalOutboxMessage.workspace_id == ws.id)
                )
            ).scalars()
        }
    assert set(rows) == {"email", "whatsapp", "push"}
    assert rows["email"].subject == "Hello <Ann>"
    assert rows["email"].profile_id == uuid.UUID(mail.custom_args["waymark_profile_id"])
    assert rows["email"].payload["headers"] == mail.headers
    assert rows["whatsapp"].text == "Hi"
    assert rows["push"].profile_id == profile.id
    assert rows["push"].payload["payload"] == push.payload


async def test_providers_for_uses_the_outbox_without_credentials(engine, workspaces):
    ws = await workspaces.create()
    providers = await providers_for(engine, SETTINGS, ws.id)
    assert providers.modes == {c: "local" for c in Channel}
    assert all(isinstance(providers.for_channel(c), LocalOutboxProvider) for c in Channel)
    [result] = await providers.email.send_emails([email()])
    assert result.status is SendStatus.sent
    async with session_scope(engine) as session:
        count = await session.scalar(select(func.count()).select_from(LocalOutboxMessage))
    assert count == 1

    async with session_scope(engine) as session:
        creds = TwilioCredentials(
            account_sid="AC" + "0" * 32,
            auth_token="token-0123456789abc",
            from_number="+14155550199",
        )
        await save(session, SecretBox.from_settings(SETTINGS), ws.id, Channel.sms, creds)
        providers = await providers_for(session, SETTINGS, ws.id)
    assert providers.modes[Channel.sms] == "provider"
    assert isinstance(providers.sms, TwilioSmsProvider)
    assert providers.sms.auth_token == "token-0123456789abc"
    assert isinstance(providers.whatsapp, LocalOutboxProvider)  # its own credentials, none
