"""Provider credentials per workspace and channel, encrypted at rest; `providers_for`.

Secrets (API keys, auth tokens, VAPID private keys) are Fernet tokens under a key derived from
`WAYMARK_SECRET_KEY` with HKDF-SHA256. Each token also names its workspace and channel, so a
blob copied to another row does not decrypt there. Rotation: set the new secret key and list
the old one in `WAYMARK_PREVIOUS_SECRET_KEYS`; everything stays readable (MultiFernet), and
`waymark channels reencrypt` rewrites every blob under the new key, after which the old one can
go. Non-secret settings (from address, numbers, sids, subject) are kept in plain JSONB.

A channel without a credentials row is in local mode: its messages go to the local outbox.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, model_validator
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from channels import vapid
from channels.base import EmailProvider, PushProvider, SmsProvider
from channels.providers.local import LocalOutboxProvider
from channels.providers.sendgrid import SendGridEmailProvider
from channels.providers.twilio import TwilioSmsProvider
from channels.providers.webpush import WebPushProvider
from core.db import session_scope
from core.settings import Settings
from models import Channel, ChannelCredential
from models.base import utcnow

HKDF_INFO = b"waymark/channel-credentials/v1"


class CredentialsUnreadable(Exception):
    """A secret was encrypted under a key this process does not have."""


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    """Encrypts JSON secrets bound to a context string (e.g. `<workspace>/<channel>`)."""

    def __init__(self, secret_key: str, previous_keys: list[str] | tuple[str, ...] = ()) -> None:
        self._fernet = MultiFernet([_fernet(k) for k in (secret_key, *previous_keys)])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.secret_key, settings.previous_secret_keys)

    def encrypt(self, context: str, secret: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps({"ctx": context, "secret": secret}).encode())

    def decrypt(self, context: str, token: bytes) -> dict[str, Any]:
        try:
            data = json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken:
            raise CredentialsUnreadable(
                f"cannot decrypt the secret of {context}: it was encrypted under another "
                "WAYMARK_SECRET_KEY (list the old one in WAYMARK_PREVIOUS_SECRET_KEYS)"
            ) from None
        if data.get("ctx") != context:
            raise CredentialsUnreadable(f"the secret stored for {context} belongs elsewhere")
        return data["secret"]

    def rotate(self, token: bytes) -> bytes:
        """The same secret under the current key (MultiFernet.rotate)."""
        return self._fernet.rotate(bytes(token))


# --- What a workspace gives per provider (validated; secret fields are SecretStr) -----------

E164 = r"^\+[1-9]\d{6,14}$"


class SendGridCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal["sendgrid"] = "sendgrid"
    api_key: SecretStr = Field(min_length=20, max_length=200)
    from_email: EmailStr
    from_name: str | None = Field(default=None, max_length=200)
    reply_to: EmailStr | None = None

    @model_validator(mode="after")
    def _sendgrid_key(self) -> SendGridCredentials:
        if not self.api_key.get_secret_value().startswith("SG."):
            raise ValueError("api_key: SendGrid API keys start with `SG.`")
        return self


class TwilioCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal["twilio"] = "twilio"
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr = Field(min_length=16, max_length=200)
    from_number: str | None = Field(default=None, pattern=E164)
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")

    @model_validator(mode="after")
    def _sender(self) -> TwilioCredentials:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("give from_number (E.164) or messaging_service_sid")
        return self


class WebPushSettings(BaseModel):
    """Turns on delivery to browsers; the VAPID keys are the workspace's own (generated)."""

    model_config = ConfigDict(extra="forbid")
    provider: Literal["webpush"] = "webpush"
    subject: str = Field(pattern=r"^(mailto:\S+@\S+|https://\S+)$", max_length=255)


CredentialsIn = SendGridCredentials | TwilioCredentials | WebPushSettings
SHAPES: dict[Channel, type[BaseModel]] = {
    Channel.email: SendGridCredentials,
    Channel.sms: TwilioCredentials,
    Channel.whatsapp: TwilioCredentials,
    Channel.push: WebPushSettings,
}


def _context(workspace_id: uuid.UUID, channel: Channel) -> str:
    return f"{workspace_id}/{channel.value}"


def mask(secret: str) -> str:
    return "…" + secret[-4:] if len(secret) > 8 else "…"


def _split(credentials: BaseModel) -> tuple[dict[str, str], dict[str, Any]]:
    secrets, config = {}, {}
    for name, value in credentials:
        if name == "provider":
            continue
        if isinstance(value, SecretStr):
            secrets[name] = value.get_secret_value()
        elif value is not None:
            config[name] = value
    return secrets, config


async def save(
    session: AsyncSession,
    box: SecretBox,
    workspace_id: uuid.UUID,
    channel: Channel,
    credentials: CredentialsIn,
) -> ChannelCredential:
    secrets, config = _split(credentials)
    if secrets:
        config["secret_hint"] = {name: mask(value) for name, value in secrets.items()}
    values = {
        "provider": credentials.provider,
        "secret": box.encrypt(_context(workspace_id, channel), secrets) if secrets else None,
        "config": config,
        "updated_at": utcnow(),
    }
    await session.execute(
        insert(ChannelCredential)
        .values(workspace_id=workspace_id, channel=channel.value, **values)
        .on_conflict_do_update(
            index_elements=[ChannelCredential.workspace_id, ChannelCredential.channel],
            set_=values,
        )
    )
    return await session.get(
        ChannelCredential, (workspace_id, channel.value), populate_existing=True
    )


async def remove(session: AsyncSession, workspace_id: uuid.UUID, channel: Channel) -> bool:
    result = await session.execute(
        delete(ChannelCredential).where(
            ChannelCredential.workspace_id == workspace_id,
            ChannelCredential.channel == channel.value,
        )
    )
    return result.rowcount > 0


async def rows(session: AsyncSession, workspace_id: uuid.UUID) -> dict[Channel, ChannelCredential]:
    result = await session.execute(
        select(ChannelCredential).where(ChannelCredential.workspace_id == workspace_id)
    )
    return {Channel(row.channel): row for row in result.scalars()}


def secrets_of(box: SecretBox, row: ChannelCredential) -> dict[str, str]:
    if row.secret is None:
        return {}
    return box.decrypt(_context(row.workspace_id, Channel(row.channel)), row.secret)


async def reencrypt_all(session: AsyncSession, box: SecretBox) -> int:
    """Rewrite every stored secret under the current key; returns how many."""
    from models import VapidKey

    count = 0
    for row in (await session.execute(select(ChannelCredential).with_for_update())).scalars():
        if row.secret is not None:
            row.secret = box.rotate(row.secret)
            count += 1
    for key in (await session.execute(select(VapidKey).with_for_update())).scalars():
        key.private_key = box.rotate(key.private_key)
        count += 1
    await session.flush()
    return count


# --- The send path's entry point ------------------------------------------------------------


@dataclass(frozen=True)
class ChannelProviders:
    """A workspace's provider per channel; `modes[channel]` is "local" or "provider"."""

    email: EmailProvider
    sms: SmsProvider
    whatsapp: SmsProvider
    push: PushProvider
    modes: dict[Channel, str] = field(default_factory=dict)
    # Non-secret settings per channel (e.g. email from address, for the send path's defaults).
    config: dict[Channel, dict[str, Any]] = field(default_factory=dict)

    def for_channel(self, channel: Channel) -> EmailProvider | SmsProvider | PushProvider:
        return getattr(self, Channel(channel).value)


async def providers_for(
    session_or_engine: AsyncSession | AsyncEngine, settings: Settings, workspace_id: uuid.UUID
) -> ChannelProviders:
    """The providers to send a workspace's messages with: its own accounts where it has
    credentials, the local outbox for every other channel."""
    if isinstance(session_or_engine, AsyncSession):
        engine = session_or_engine.bind
        return await _build(session_or_engine, engine, settings, workspace_id)
    async with session_scope(session_or_engine) as session:
        return await _build(session, session_or_engine, settings, workspace_id)


async def _build(
    session: AsyncSession, engine: AsyncEngine, settings: Settings, workspace_id: uuid.UUID
) -> ChannelProviders:
    box = SecretBox.from_settings(settings)
    stored = await rows(session, workspace_id)
    local = LocalOutboxProvider(engine, workspace_id)
    chosen: dict[Channel, Any] = {}
    for channel, row in stored.items():
        secrets, config = secrets_of(box, row), row.config
        if channel is Channel.email and row.provider == "sendgrid":
            chosen[channel] = SendGridEmailProvider(
                secrets["api_key"],
                settings.sendgrid_base_url,
                default_from_email=config.get("from_email"),
                default_from_name=config.get("from_name"),
                default_reply_to=config.get("reply_to"),
            )
        elif channel in (Channel.sms, Channel.whatsapp) and row.provider == "twilio":
            chosen[channel] = TwilioSmsProvider(
                config["account_sid"],
                secrets["auth_token"],
                settings.twilio_base_url,
                from_number=config.get("from_number"),
                messaging_service_sid=config.get("messaging_service_sid"),
                whatsapp=channel is Channel.whatsapp,
            )
        elif channel is Channel.push and row.provider == "webpush":
            await vapid.ensure_keys(session, box, workspace_id)
            pem = await vapid.private_pem(session, box, workspace_id)
            chosen[channel] = WebPushProvider(pem, config["subject"], engine)
    return ChannelProviders(
        email=chosen.get(Channel.email, local),
        sms=chosen.get(Channel.sms, local),
        whatsapp=chosen.get(Channel.whatsapp, local),
        push=chosen.get(Channel.push, local),
        modes={c: "provider" if c in chosen else "local" for c in Channel},
        config={
            c: {k: v for k, v in row.config.items() if k != "secret_hint"}
            for c, row in stored.items()
        },
    )
