"""SMS and WhatsApp through Twilio's Messages API, with the official `twilio` SDK.

One request per message (the Messages API takes one recipient), run concurrently a few at a
time over the SDK's asyncio HTTP client (`AsyncTwilioHttpClient`: one aiohttp session, so
connections are reused). Used as `async with provider:` (as the send path does), one client
serves every call until the block ends; otherwise each call opens and closes its own.
The sender is the message's or the workspace's Messaging Service or from number; WhatsApp
addresses get the `whatsapp:` prefix; each message may name its own StatusCallback URL.
Errors as for every provider: 429, 5xx and failures to connect are retried, then
ProviderUnavailable; a request sent without an answer (timeout, connection dropped) raises
OutcomeUnknown and is never resent; other 4xx fail the message with Twilio's reason.

`base_url` replaces the API domain's `https://api.twilio.com` (the SDK's `Domain.base_url`),
which is how the contract tests point the SDK at a mock of Twilio's OpenAPI spec.
"""

from __future__ import annotations

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.base import OutcomeUnknown, OutgoingSms, SendResult, SendStatus
from channels.providers.common import (
    CONCURRENCY,
    RETRY_DELAYS,
    Retryable,
    run_bounded,
    with_retries,
)

WHATSAPP = "whatsapp:"
TIMEOUT_SECONDS = 30.0


def whatsapp_address(number: str) -> str:
    return number if number.startswith(WHATSAPP) else WHATSAPP + number


def _status(error: TwilioException) -> int:
    return int(getattr(error, "status", 0) or 0)


def reason_from(error: TwilioException) -> str:
    code = getattr(error, "code", None)
    message = getattr(error, "msg", None) or getattr(error, "detail", None) or str(error)
    return f"Twilio {_status(error)}" + (f" (error {code})" if code else "") + f": {message}"


class _HttpClient(AsyncTwilioHttpClient):
    """The SDK's asyncio client with its timeout in force: the SDK hands every request
    `timeout=None`, which aiohttp takes as no timeout at all."""

    async def request(self, *args, timeout: float | None = None, **kwargs):
        return await super().request(*args, timeout=timeout or self.timeout, **kwargs)


class TwilioSmsProvider:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str | None = None,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        whatsapp: bool = False,
        concurrency: int = CONCURRENCY,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.base_url = base_url
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.whatsapp = whatsapp  # every message of this provider goes out over WhatsApp
        self.concurrency = concurrency
        self.retry_delays = retry_delays

        self._http: AsyncTwilioHttpClient | None = None
        self._messages = None

    async def __aenter__(self) -> TwilioSmsProvider:
        self._http = _HttpClient(timeout=TIMEOUT_SECONDS)
        self._messages = self._messages_api(self._http)
        return self

    async def __aexit__(self, *exc_info) -> None:
        http, self._http, self._messages = self._http, None, None
        if http is not None:
            await http.close()

    def _messages_api(self, http: AsyncTwilioHttpClient):
        client = Client(self.account_sid, self.auth_token, http_client=http)
        if self.base_url:
            client.api.base_url = self.base_url.rstrip("/")
        return client.api.v2010.accounts(self.account_sid).messages

    async def send_sms(self, messages: list[OutgoingSms]) -> list[SendResult]:
        if not messages:
            return []
        if self._messages is not None:
            return await self._send_all(self._messages, messages)
        async with _HttpClient(timeout=TIMEOUT_SECONDS) as http:
            return await self._send_all(self._messages_api(http), messages)

    async def _send_all(self, api, messages: list[OutgoingSms]) -> list[SendResult]:
        return await run_bounded(
            (lambda m=m: self._send_one(api, m) for m in messages), self.concurrency
        )

    def request_params(self, message: OutgoingSms) -> dict[str, str]:
        """The Messages API parameters for one message (SDK names)."""
        whatsapp = message.whatsapp or self.whatsapp
        params = {"to": message.to, "body": message.body}
        service = message.messaging_service_sid or (
            None if message.from_number else self.messaging_service_sid
        )
        sender = message.from_number or (None if service else self.from_number)
        if service:
            params["messaging_service_sid"] = service
        if sender:
            params["from_"] = sender
        if whatsapp:
            params["to"] = whatsapp_address(params["to"])
            if sender:
                params["from_"] = whatsapp_address(sender)
        if message.status_callback:
            params["status_callback"] = message.status_callback
        return params

    async def _send_one(self, api, message: OutgoingSms) -> list[SendResult]:
        params = self.request_params(message)
        if "from_" not in params and "messaging_service_sid" not in params:
            reason = "no sender: set a from number or a Messaging Service for the workspace"
            return [SendResult(message.message_id, SendStatus.failed, error=reason)]

        async def create() -> str:
            try:
                created = await api.create_async(**params)
            except TwilioException as error:
                status = _status(error)
                if status == 429 or status >= 500:
                    raise Retryable(reason_from(error)) from error
                raise
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
                raise Retryable(f"Twilio unreachable: {error!r}") from error  # never connected
            except (TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                # Sent, but no answer: Twilio may have accepted it. Never resent.
                raise OutcomeUnknown(f"no answer from Twilio: {error!r}") from error
            except aiohttp.ClientError as error:
                raise Retryable(f"Twilio unreachable: {error!r}") from error
            return created.sid

        try:
            sid = await with_retries(create, self.retry_delays, what="Twilio")
        except (TwilioRestException, TwilioException) as error:
            return [SendResult(message.message_id, SendStatus.failed, error=reason_from(error))]
        return [SendResult(message.message_id, SendStatus.sent, provider_message_id=sid)]
