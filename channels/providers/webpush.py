"""Web push (RFC 8030) with VAPID (RFC 8292) through pywebpush.

Each push is encrypted for its subscription (aes128gcm, RFC 8291) and signed with the
workspace's VAPID key. TTL is clamped to 72 hours; `Urgency` is passed on. A 404 or 410 means
the browser dropped the subscription: its row is deleted and the message fails
"subscription expired". 429, 5xx and network failures are retried, then ProviderUnavailable.
"""

from __future__ import annotations

import json
import uuid

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush_async
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from channels.base import OutgoingPush, SendResult, SendStatus
from channels.providers.common import (
    CONCURRENCY,
    RETRY_DELAYS,
    Retryable,
    retry_after_seconds,
    run_bounded,
    with_retries,
)
from core.db import session_scope
from models import PushSubscription

MAX_TTL_SECONDS = 72 * 3600
URGENCIES = ("very-low", "low", "normal", "high")
# 4096 bytes of record minus the aes128gcm header (86) and tag and padding delimiter (17).
MAX_PAYLOAD_BYTES = 3993
TIMEOUT_SECONDS = 30.0
EXPIRED = "subscription expired"


def clamp_ttl(seconds: int) -> int:
    return max(0, min(int(seconds), MAX_TTL_SECONDS))


class WebPushProvider:
    def __init__(
        self,
        vapid_private_key: str,
        vapid_subject: str,
        engine: AsyncEngine,
        *,
        concurrency: int = CONCURRENCY,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        """`vapid_private_key`: a PEM; `vapid_subject`: `mailto:` or `https:` contact."""
        self.vapid = Vapid02.from_pem(vapid_private_key.encode())
        self.subject = vapid_subject
        self.engine = engine
        self.concurrency = concurrency
        self.retry_delays = retry_delays

    async def send_push(self, messages: list[OutgoingPush]) -> list[SendResult]:
        if not messages:
            return []
        async with aiohttp.ClientSession() as http:
            return await run_bounded(
                (lambda m=m: self._send_one(http, m) for m in messages), self.concurrency
            )

    async def _send_one(
        self, http: aiohttp.ClientSession, message: OutgoingPush
    ) -> list[SendResult]:
        data = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False)
        if len(data.encode()) > MAX_PAYLOAD_BYTES:
            return [self._failed(message, f"payload over {MAX_PAYLOAD_BYTES} bytes")]
        urgency = message.urgency if message.urgency in URGENCIES else "normal"
        subscription = {
            "endpoint": message.endpoint,
            "keys": {"p256dh": message.p256dh, "auth": message.auth},
        }

        async def push() -> str | None:
            try:
                response = await webpush_async(
                    subscription,
                    data,
                    vapid_private_key=self.vapid,
                    vapid_claims={"sub": self.subject},  # aud and exp are filled per push
                    ttl=clamp_ttl(message.ttl_seconds),
                    headers={"Urgency": urgency},
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
                    aiohttp_session=http,
                )
                response.release()
                return response.headers.get("Location")  # the push service's message
            except WebPushException as error:
                status = error.status_code or 0
                if status == 429 or status >= 500:
                    raise Retryable(
                        f"push service {status}", retry_after_seconds(error.retry_after)
                    ) from error
                raise
            except (TimeoutError, aiohttp.ClientError) as error:
                raise Retryable(f"push service unreachable: {error!r}") from error

        try:
            location = await with_retries(push, self.retry_delays, what="web push")
        except WebPushException as error:
            if error.status_code in (404, 410):
                await self._forget(message.subscription_id)
                return [self._failed(message, EXPIRED)]
            return [self._failed(message, f"push service {error.status_code}: {error.message}")]
        return [SendResult(message.message_id, SendStatus.sent, provider_message_id=location)]

    @staticmethod
    def _failed(message: OutgoingPush, reason: str) -> SendResult:
        return SendResult(message.message_id, SendStatus.failed, error=reason)

    async def _forget(self, subscription_id: uuid.UUID) -> None:
        async with session_scope(self.engine) as session:
            await session.execute(
                delete(PushSubscription).where(PushSubscription.id == subscription_id)
            )
