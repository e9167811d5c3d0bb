"""Provider webhooks: no API key — each request is verified by the provider's signature.

- `POST /webhooks/sendgrid/{workspace_id}`: SendGrid Event Webhook (ECDSA signature).
- `POST /webhooks/twilio/{workspace_id}/status`: Twilio message status callbacks.
- `POST /webhooks/twilio/{workspace_id}/inbound`: inbound SMS / WhatsApp (keywords).

A bad or missing signature, or a workspace with no verification key configured, answers 401
and writes nothing. Replays are idempotent (see `channels.webhooks_sendgrid` / `_twilio`).
"""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request, Response

from api.deps import SessionDep, SettingsDep
from api.errors import ApiError
from channels import webhooks_sendgrid, webhooks_twilio
from channels.settings import ChannelSettings, load_channel_settings
from models import Channel

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MAX_BODY = 8 * 1024 * 1024


def _unauthorized(what: str) -> ApiError:
    return ApiError(401, "invalid_signature", f"{what} signature missing or not valid")


async def _settings(session, workspace_id: uuid.UUID, what: str) -> ChannelSettings:
    try:
        return await load_channel_settings(session, workspace_id)
    except LookupError:
        raise _unauthorized(what) from None


@router.post("/sendgrid/{workspace_id}", status_code=204)
async def sendgrid_events(
    workspace_id: uuid.UUID, request: Request, session: SessionDep
) -> Response:
    """SendGrid Event Webhook; verified with the workspace's ECDSA public key."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"at most {MAX_BODY} bytes per request")
    cs = await _settings(session, workspace_id, "SendGrid")
    signature = request.headers.get(webhooks_sendgrid.SIGNATURE_HEADER)
    timestamp = request.headers.get(webhooks_sendgrid.TIMESTAMP_HEADER)
    if not webhooks_sendgrid.verify(cs.sendgrid_webhook_public_key, body, signature, timestamp):
        raise _unauthorized("SendGrid")
    try:
        events = json.loads(body)
    except ValueError:
        raise ApiError(400, "invalid_json", "the body is not a JSON array of events") from None
    if not isinstance(events, list):
        raise ApiError(400, "invalid_json", "the body is not a JSON array of events")
    await webhooks_sendgrid.apply_events(session, workspace_id, events)
    await session.commit()
    return Response(status_code=204)


async def _twilio_params(
    request: Request, session, settings, workspace_id: uuid.UUID
) -> dict[str, str]:
    """The form parameters of a request Twilio signed for this workspace; else 401."""
    form = await request.form()
    params = {k: str(v) for k, v in form.multi_items()}
    cs = await _settings(session, workspace_id, "Twilio")
    url = settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("X-Twilio-Signature")
    for token in await _twilio_auth_tokens(session, settings, workspace_id, cs):
        if webhooks_twilio.verify(token, url, params, signature):
            return params
    raise _unauthorized("Twilio")


async def _twilio_auth_tokens(session, settings, workspace_id: uuid.UUID, cs: ChannelSettings):
    """The tokens Twilio may sign with: the workspace's SMS / WhatsApp credentials (Twilio
    signs with the account's auth token), then the one in channel settings."""
    from channels import credentials

    tokens: list[str] = []
    box = credentials.SecretBox.from_settings(settings)
    stored = await credentials.rows(session, workspace_id)
    for channel in (Channel.sms, Channel.whatsapp):
        row = stored.get(channel)
        if row is not None and row.provider == "twilio":
            try:
                token = credentials.secrets_of(box, row).get("auth_token")
            except credentials.CredentialsUnreadable:
                continue
            if token and token not in tokens:
                tokens.append(token)
    if cs.twilio_auth_token and cs.twilio_auth_token not in tokens:
        tokens.append(cs.twilio_auth_token)
    return tokens


@router.post("/twilio/{workspace_id}/status", status_code=204)
async def twilio_status(
    workspace_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Twilio status callback (`?wm=<message id>` is the URL the send path gave Twilio)."""
    params = await _twilio_params(request, session, settings, workspace_id)
    await webhooks_twilio.apply_status(
        session, workspace_id, params, request.query_params.get("wm")
    )
    await session.commit()
    return Response(status_code=204)


@router.post("/twilio/{workspace_id}/inbound")
async def twilio_inbound(
    workspace_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Inbound SMS / WhatsApp: keywords change consent; answers empty TwiML (no reply)."""
    params = await _twilio_params(request, session, settings, workspace_id)
    await webhooks_twilio.apply_inbound(session, workspace_id, params)
    await session.commit()
    return Response(webhooks_twilio.EMPTY_TWIML, media_type="application/xml")
