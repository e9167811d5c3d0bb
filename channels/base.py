"""What the send path hands a provider, and what it gets back. One shape per channel.

The send path (gate → render → ledger → provider) is written against these types only; each
provider adapter (SendGrid, Twilio, web push, the local outbox) turns them into real API calls.
Every outgoing message carries Waymark's message id (the ledger row), so provider callbacks and
webhooks find their way back.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol


class SendStatus(enum.StrEnum):
    sent = "sent"  # the provider accepted it
    failed = "failed"  # the provider refused it for good (4xx other than 429)


class ProviderUnavailable(Exception):
    """A retryable failure (429, 5xx, network): the activity raises it so Temporal retries."""


class OutcomeUnknown(Exception):
    """The request may have reached the provider: it was sent but no answer came (a read
    timeout, the connection dropped after sending). Resending could deliver it twice, so its
    messages stay `sending` and are settled by the provider's events (`channels/send.py`).
    `results` are what the provider did answer for other requests of the same call."""

    def __init__(self, reason: str, results: list[SendResult] | None = None) -> None:
        super().__init__(reason)
        self.results = results or []


# The per-message types below are plain slotted dataclasses, not frozen ones: one of each is
# made per message, and a frozen dataclass's __init__ sets every field through
# `object.__setattr__` (an `OutgoingEmail` took 1.9 µs to make, 0.7 µs now). Treat them as
# values all the same: `dataclasses.replace` makes a changed copy.
@dataclass(slots=True)
class SendResult:
    message_id: uuid.UUID
    status: SendStatus
    provider_message_id: str | None = None
    error: str | None = None


@dataclass(slots=True)
class OutgoingEmail:
    message_id: uuid.UUID
    to: str
    from_email: str
    subject: str
    html: str
    text: str
    from_name: str | None = None
    reply_to: str | None = None
    # e.g. List-Unsubscribe and List-Unsubscribe-Post (RFC 8058)
    headers: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    # Sent as SendGrid custom_args; always includes waymark_message_id and workspace id.
    custom_args: dict[str, str] = field(default_factory=dict)
    # Tag → value for this recipient (SendGrid `personalizations[].substitutions`): `html`/`text`
    # may hold tags (`-wm0-`, ...) standing for the recipient's own tracking URLs, so recipients
    # of otherwise identical content share one request. Empty: the content is as sent.
    substitutions: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class OutgoingSms:
    """SMS, or WhatsApp when `whatsapp` is set (addresses get the `whatsapp:` prefix)."""

    message_id: uuid.UUID
    to: str  # E.164
    body: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    whatsapp: bool = False


@dataclass(frozen=True)
class OutgoingPush:
    message_id: uuid.UUID
    subscription_id: uuid.UUID
    endpoint: str
    p256dh: str
    auth: str
    payload: dict[str, Any]  # title, body, url, icon, ... (JSON for the service worker)
    ttl_seconds: int = 24 * 3600  # up to 72 h
    urgency: str = "normal"  # very-low | low | normal | high


class EmailProvider(Protocol):
    async def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        """Send many; same-content emails may share a request (≤ 1,000 personalizations)."""


class SmsProvider(Protocol):
    async def send_sms(self, messages: list[OutgoingSms]) -> list[SendResult]: ...


class PushProvider(Protocol):
    async def send_push(self, messages: list[OutgoingPush]) -> list[SendResult]:
        """A 404/410 from the push service deletes that subscription and fails the message."""
