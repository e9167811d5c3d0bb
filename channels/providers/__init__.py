"""Provider adapters behind the interfaces of channels/base.py: SendGrid (email), Twilio (SMS,
WhatsApp), web push (VAPID), and the local outbox for channels without a provider account.
Which one a workspace uses is decided by `channels.credentials.providers_for`."""

from channels.providers.local import LocalOutboxProvider
from channels.providers.sendgrid import SendGridEmailProvider
from channels.providers.twilio import TwilioSmsProvider
from channels.providers.webpush import WebPushProvider

__all__ = [
    "LocalOutboxProvider",
    "SendGridEmailProvider",
    "TwilioSmsProvider",
    "WebPushProvider",
]
