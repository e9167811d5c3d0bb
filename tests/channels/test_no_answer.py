"""A request that went out and got no answer is never sent again.

A provider that received the request but whose answer never arrived (a read timeout, the
connection dropped after sending) may have accepted the message: resending it would deliver it
twice. The SDK adapters raise `OutcomeUnknown` instead of retrying, and the send path leaves the
message `sending` for the provider's events to settle — while a provider that could not be
reached at all is still retried.
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
from aiohttp import web
from sqlalchemy import select

from channels.base import OutcomeUnknown, OutgoingEmail, OutgoingSms, ProviderUnavailable
from channels.providers import sendgrid as sendgrid_provider
from channels.providers import twilio as twilio_provider
from channels.send import OutcomePending, send_one
from core.db import session_scope
from core.settings import Settings
from models import Message
from tests.channels.test_send import (
    CountingProvider,
    _input,
    _profile,
    _providers,
    _template,
    _workspace,
)

ACCOUNT_SID = "AC" + "0" * 32


class SilentProvider:
    """Takes every request, counts it, and answers only after the client has given up."""

    def __init__(self) -> None:
        self.requests = 0

    async def _silent(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        await asyncio.sleep(5)
        return web.Response(status=202)

    async def __aenter__(self) -> SilentProvider:
        app = web.Application()
        app.router.add_post("/v3/mail/send", self._silent)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._silent)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there once closed


def _email() -> OutgoingEmail:
    return OutgoingEmail(
        message_id=uuid.uuid4(),
        to="ann@example.com",
        from_email="shop@example.com",
        subject="Hi",
        html="<p>Hi</p>",
        text="Hi",
    )


async def test_sendgrid_without_an_answer_is_not_resent(monkeypatch):
    monkeypatch.setattr(sendgrid_provider, "TIMEOUT_SECONDS", 0.5)
    async with SilentProvider() as silent:
        provider = sendgrid_provider.SendGridEmailProvider(
            "SG." + "x" * 40, silent.url, retry_delays=(0.01, 0.01, 0.01)
        )
        with pytest.raises(OutcomeUnknown):
            await provider.send_emails([_email()])
        assert silent.requests == 1


async def test_twilio_without_an_answer_is_not_resent(monkeypatch):
    monkeypatch.setattr(twilio_provider, "TIMEOUT_SECONDS", 0.5)
    async with SilentProvider() as silent:
        provider = twilio_provider.TwilioSmsProvider(
            ACCOUNT_SID, "t" * 32, silent.url, from_number="+48500000000",
            retry_delays=(0.01, 0.01, 0.01),
        )  # fmt: skip
        sms = OutgoingSms(message_id=uuid.uuid4(), to="+48600100200", body="Hi")
        with pytest.raises(OutcomeUnknown):
            await provider.send_sms([sms])
        assert silent.requests == 1


async def test_an_unreachable_provider_is_still_retried():
    provider = sendgrid_provider.SendGridEmailProvider(
        "SG." + "x" * 40, _closed_port(), retry_delays=(0.01, 0.01)
    )
    with pytest.raises(ProviderUnavailable, match="after 3 tries"):
        await provider.send_emails([_email()])


class NoAnswerProvider(CountingProvider):
    """Counts the call, then behaves like a request that got no answer."""

    async def _send(self, method, messages):
        self.calls += [m.message_id for m in messages]
        raise OutcomeUnknown("no answer from SendGrid: TimeoutError('timed out')")


async def test_the_send_path_leaves_it_sending_and_never_calls_again(
    engine, workspaces, database_url
):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(engine, ws)
    profile = await _profile(engine, ws)
    provider = NoAnswerProvider(engine, ws.id)
    send_settings = Settings(
        database_url=database_url,
        public_url="https://wm.example.com",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )
    input = _input(ws, profile, template_id)

    for _ in range(2):  # the activity's retry finds the row `sending`: no second call
        with pytest.raises(OutcomePending):
            await send_one(engine, send_settings, input, providers=_providers(provider))

    async with session_scope(engine) as session:
        row = (await session.execute(select(Message))).scalar_one()
    assert row.status == "sending" and provider.calls == [row.id]
