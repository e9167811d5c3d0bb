"""Twilio adapter against a Prism mock of Twilio's official API 2010 OpenAPI spec, and against a
local sink for error mapping and retries."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs

import pytest

from channels.base import OutgoingSms, ProviderUnavailable, SendStatus
from channels.providers.twilio import TwilioSmsProvider

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-0123"
SERVICE = "MG" + "fedcba9876543210" * 2


def sms(**kw) -> OutgoingSms:
    fields = {
        "message_id": uuid.uuid4(),
        "to": "+14155550100",
        "body": "Your cart is waiting: https://shop.example/c/1",
        "status_callback": "https://waymark.example/webhooks/twilio/status",
    }
    return OutgoingSms(**(fields | kw))


def form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


async def test_sms_whatsapp_and_service_pass_the_spec(mock_providers):
    before = mock_providers.validated("twilio")
    provider = TwilioSmsProvider(SID, TOKEN, mock_providers.twilio_url, from_number="+14155550199")
    whatsapp = TwilioSmsProvider(
        SID, TOKEN, mock_providers.twilio_url, from_number="+14155550199", whatsapp=True
    )
    service = TwilioSmsProvider(
        SID, TOKEN, mock_providers.twilio_url, messaging_service_sid=SERVICE
    )
    results = [
        *(await provider.send_sms([sms(), sms(whatsapp=True)])),
        *(await whatsapp.send_sms([sms()])),
        *(await service.send_sms([sms(status_callback=None)])),
    ]
    assert [r.status for r in results] == [SendStatus.sent] * 4
    assert all(r.provider_message_id and r.provider_message_id.startswith("SM") for r in results)
    assert mock_providers.validated("twilio") == before + 4


def test_request_parameters():
    provider = TwilioSmsProvider(SID, TOKEN, from_number="+14155550199", whatsapp=True)
    message = sms()
    assert provider.request_params(message) == {
        "to": "whatsapp:+14155550100",
        "from_": "whatsapp:+14155550199",
        "body": message.body,
        "status_callback": message.status_callback,
    }
    by_service = TwilioSmsProvider(SID, TOKEN, messaging_service_sid=SERVICE)
    assert by_service.request_params(sms(status_callback=None)) == {
        "to": "+14155550100",
        "body": message.body,
        "messaging_service_sid": SERVICE,
    }
    # A message's own sender wins over the workspace's.
    assert by_service.request_params(sms(from_number="+14155550111"))["from_"] == "+14155550111"


async def test_the_mock_rejects_what_the_real_api_would(mock_providers):
    """Proof the contract tests can fail: a StatusCallback that is no URL breaks the spec."""
    rejected = mock_providers.rejected("twilio")
    provider = TwilioSmsProvider(SID, TOKEN, mock_providers.twilio_url, from_number="+14155550199")
    [result] = await provider.send_sms([sms(status_callback="not a url")])
    assert result.status is SendStatus.failed
    assert result.error.startswith("Twilio 422")
    assert mock_providers.rejected("twilio") == rejected + 1


async def test_no_sender_fails_without_a_request():
    [result] = await TwilioSmsProvider(SID, TOKEN).send_sms([sms()])
    assert result.status is SendStatus.failed
    assert "no sender" in result.error


async def test_4xx_fails_with_twilios_reason(sink):
    error = {
        "code": 21211,
        "message": "The 'To' number +1415 is not a valid phone number.",
        "status": 400,
        "more_info": "https://www.twilio.com/docs/errors/21211",
    }
    sink.answers = [(400, {"Content-Type": "application/json"}, json.dumps(error).encode())]
    provider = TwilioSmsProvider(SID, TOKEN, sink.url, from_number="+14155550199")
    [result] = await provider.send_sms([sms(to="+1415")])
    assert result.status is SendStatus.failed
    assert "Twilio 400 (error 21211)" in result.error
    assert "is not a valid phone number" in result.error
    assert len(sink.requests) == 1


async def test_429_and_5xx_are_retried(sink):
    created = {"sid": "SM" + "1" * 32, "status": "queued", "num_segments": "1"}
    sink.answers = [
        (
            429,
            {"Content-Type": "application/json"},
            b'{"code": 20429, "message": "Too Many Requests"}',
        ),
        (502, {}, b"bad gateway"),
        (201, {"Content-Type": "application/json"}, json.dumps(created).encode()),
    ]
    provider = TwilioSmsProvider(
        SID, TOKEN, sink.url, from_number="+14155550199", retry_delays=(0.01, 0.01, 0.01)
    )
    message = sms(whatsapp=True)
    [result] = await provider.send_sms([message])
    assert result.status is SendStatus.sent
    assert result.provider_message_id == created["sid"]
    assert len(sink.requests) == 3
    _, path, _, body = sink.requests[-1]
    assert path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert form(body) == {
        "To": "whatsapp:+14155550100",
        "From": "whatsapp:+14155550199",
        "Body": message.body,
        "StatusCallback": message.status_callback,
    }


async def test_still_unavailable_raises_for_temporal(sink):
    sink.default = (503, {}, b"")
    provider = TwilioSmsProvider(
        SID, TOKEN, sink.url, from_number="+14155550199", retry_delays=(0.01,)
    )
    with pytest.raises(ProviderUnavailable, match="Twilio 503"):
        await provider.send_sms([sms()])
