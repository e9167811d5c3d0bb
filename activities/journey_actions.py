"""Journey steps that reach outside Waymark: webhooks and internal (staff) alerts.

Templating: a webhook's JSON body (every string value, at any depth) and an alert's message are
Jinja templates over `profile`, `event` (the trigger event, as message templates see it) and
`workspace`, rendered by the messages' own sandboxed renderer (`channels.render`). A template
that does not render fails the step at once (no retry) with the place, line and missing name:
`webhook body.customer line 1: 'profile' has no attribute 'nickname'`. Strings without `{`
are sent as they are.

Webhooks: HTTP POST of JSON, signed `X-Waymark-Signature: t=<unix>,v1=<hex>` where hex is
HMAC-SHA256 over `f"{t}.{body}"` with the workspace's webhook secret
(`webhook_secret(secret_key, workspace_id)`, HMAC-SHA256(secret_key, "webhook:" + workspace)).
Non-2xx and network errors raise, so Temporal retries; the journey catches the final failure.

Alerts: `webhook` POSTs the alert (signed the same way); `email` sends a staff email with the
message, the profile and the trigger event through the workspace's email provider
(`channels.credentials.providers_for`: SendGrid with the workspace's account, else the local
outbox). Once per journey and step: the email's id is derived from (journey, step), so the local
outbox records it once, and `processed_calls` keeps `alert:<journey>:<step>` once the provider
accepted it, so a retry after success sends nothing. The one window left (the provider accepted,
the worker died before the key was written) sends the alert twice rather than never.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import time
import uuid
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from channels.render import event_context
from flows.definition import check_webhook_url

log = structlog.get_logger(__name__)
ALERT_IDS = uuid.UUID("5b0f6d1e-8c0e-4f57-9a0c-3f3c1f0a7e11")  # uuid5 namespace of alert emails
LOCAL_ALERT_SENDER = "alerts@waymark.localhost"


class SendWebhookInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    timeout_seconds: int = 10
    journey_id: uuid.UUID
    flow_id: uuid.UUID
    step_id: str
    event: dict[str, Any] | None = None


class SendWebhookResult(BaseModel):
    status_code: int


class SendAlertInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    flow_id: uuid.UUID
    journey_id: uuid.UUID
    step_id: str
    channel: Literal["email", "webhook"]
    to: str
    message: str
    event: dict[str, Any] | None = None  # the trigger event (as the journey holds it)


class SendAlertResult(BaseModel):
    sent: bool = True
    reason: str | None = None  # why nothing was sent now (already_sent)


def webhook_secret(secret_key: str, workspace_id: uuid.UUID) -> bytes:
    return hmac.new(secret_key.encode(), f"webhook:{workspace_id}".encode(), "sha256").digest()


def sign_webhook(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def template_event(trigger: dict[str, Any] | None) -> dict[str, Any] | None:
    """The journey's trigger event (`{id, metric, properties, value, occurred_at}`, as the
    router stores it) as templates see it: `channels.render.event_context`."""
    if not trigger:
        return None
    return event_context(
        str(trigger.get("metric") or ""),
        dict(trigger.get("properties") or {}),
        value=trigger.get("value"),
        currency=trigger.get("currency"),
        occurred_at=trigger.get("occurred_at"),
    )


def alert_message_id(journey_id: uuid.UUID, step_id: str) -> uuid.UUID:
    return uuid.uuid5(ALERT_IDS, f"{journey_id}:{step_id}")


def _render_error(exc: Exception) -> ApplicationError:
    return ApplicationError(str(exc), type="TemplateError", non_retryable=True)


def render_text(context: Any, source: str, place: str) -> str:
    """One string as a plain-text template (no HTML escaping); a string without `{` as it is.
    One that does not render raises `channels.render.TemplateError` located at `place`
    (`body.customer line 1: ...`). Also what flow validation renders (`flows.validate_render`)."""
    from channels.render import TemplateError, TemplateParts, render
    from models import Channel

    if "{" not in source:
        return source
    try:
        rendered = render(TemplateParts(channel=Channel.sms, body=source), context)
    except TemplateError as exc:
        raise TemplateError(place, exc.reason, line=exc.line, name=exc.name) from None
    return rendered.body or ""


def render_value(context: Any, value: Any, place: str) -> Any:
    """A JSON value with every string in it rendered by `render_text`, at any depth."""
    if isinstance(value, str):
        return render_text(context, value, place)
    if isinstance(value, dict):
        return {k: render_value(context, v, f"{place}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(context, v, f"{place}[{i}]") for i, v in enumerate(value)]
    return value


class _Renderer:
    """Renders strings (and JSON values holding strings) against one profile and event; a
    failure fails the step at once (`webhook body.customer line 1: ...`)."""

    def __init__(self, context: Any, what: str) -> None:
        self.context, self.what = context, what

    def text(self, source: str, place: str) -> str:
        return self._located(render_text, source, place)

    def value(self, value: Any, place: str) -> Any:
        return self._located(render_value, value, place)

    def _located(self, render: Any, value: Any, place: str) -> Any:
        from channels.render import TemplateError

        try:
            return render(self.context, value, place)
        except TemplateError as exc:
            raise _render_error(ValueError(f"{self.what} {exc}")) from None


class JourneyActionActivities:
    def __init__(self, engine: AsyncEngine, settings: Any) -> None:
        self.engine = engine
        self.settings = settings

    def all(self) -> list[Any]:
        """Every activity of this class, bound (what the worker registers)."""
        return [self.send_webhook, self.send_alert]

    async def _context(
        self, workspace_id: uuid.UUID, profile_id: uuid.UUID, trigger: dict[str, Any] | None
    ) -> tuple[Any, Any]:
        """(RenderContext, the profile row or None)."""
        from sqlalchemy import select

        from channels.render import RenderContext, profile_context, workspace_context
        from core.db import session_scope
        from models import Profile, Workspace

        async with session_scope(self.engine) as session:
            profile = (
                await session.execute(
                    select(Profile).where(
                        Profile.id == profile_id, Profile.workspace_id == workspace_id
                    )
                )
            ).scalar_one_or_none()
            workspace = await session.get(Workspace, workspace_id)
        context = RenderContext(
            profile=profile_context(profile) if profile else {"id": str(profile_id)},
            event=template_event(trigger),
            workspace=workspace_context(workspace) if workspace else {},
        )
        return context, profile

    async def _post(
        self, workspace_id: uuid.UUID, url: str, payload: Any, headers: dict, timeout: float
    ) -> int:
        import httpx

        try:
            check_webhook_url(url)  # also for versions published before alerts were checked
        except ValueError as exc:
            raise ApplicationError(
                f"webhook {url}: {exc}", type="WebhookError", non_retryable=True
            ) from None
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        secret = webhook_secret(self.settings.secret_key, workspace_id)
        signed = {
            **headers,
            "Content-Type": "application/json",
            "User-Agent": "Waymark-Webhook/1",
            "X-Waymark-Signature": sign_webhook(secret, body, int(time.time())),
        }
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
                response = await http.post(url, content=body, headers=signed)
        except httpx.HTTPError as exc:
            raise ApplicationError(
                f"webhook {url}: {type(exc).__name__}: {exc}", type="WebhookError"
            ) from exc
        if not 200 <= response.status_code < 300:
            raise ApplicationError(
                f"webhook {url} answered {response.status_code}",
                type="WebhookError",
                non_retryable=400 <= response.status_code < 500
                and response.status_code not in (408, 429),
            )
        return response.status_code

    @activity.defn
    async def send_webhook(self, input: SendWebhookInput) -> SendWebhookResult:
        if input.body is None:
            payload: Any = {
                "profile_id": str(input.profile_id),
                "flow_id": str(input.flow_id),
                "journey_id": str(input.journey_id),
                "step_id": input.step_id,
                "event": input.event,
            }
        else:
            context, _ = await self._context(input.workspace_id, input.profile_id, input.event)
            payload = _Renderer(context, "webhook").value(input.body, "body")
        status = await self._post(
            input.workspace_id, input.url, payload, input.headers, input.timeout_seconds
        )
        return SendWebhookResult(status_code=status)

    @activity.defn
    async def send_alert(self, input: SendAlertInput) -> SendAlertResult:
        """`webhook`: a signed POST of the alert to `to`. `email`: a staff email through the
        workspace's email provider (see the module's docstring)."""
        context, profile = await self._context(input.workspace_id, input.profile_id, input.event)
        message = _Renderer(context, "alert").text(input.message, "message")
        alert = {
            "type": "flow_alert",
            "message": message,
            "workspace_id": str(input.workspace_id),
            "flow_id": str(input.flow_id),
            "journey_id": str(input.journey_id),
            "profile_id": str(input.profile_id),
            "step_id": input.step_id,
            "profile": _profile_summary(context.profile, profile is not None),
            "event": template_event(input.event),
        }
        if input.channel == "webhook":
            await self._post(input.workspace_id, input.to, alert, {}, 10)
            return SendAlertResult()
        return await self._email(input, alert)

    async def _email(self, input: SendAlertInput, alert: dict[str, Any]) -> SendAlertResult:
        from channels.base import OutgoingEmail, ProviderUnavailable, SendStatus
        from channels.credentials import providers_for
        from channels.settings import load_channel_settings
        from core.db import session_scope
        from models import Channel

        key = f"alert:{input.journey_id}:{input.step_id}"
        async with session_scope(self.engine) as session:
            if await _done(session, input.workspace_id, key):
                return SendAlertResult(sent=False, reason="already_sent")
            channel_settings = await load_channel_settings(session, input.workspace_id)
            flow_name = (
                await session.execute(
                    text("SELECT name FROM flows WHERE id = :id"), {"id": input.flow_id}
                )
            ).scalar_one_or_none()
        providers = await providers_for(self.engine, self.settings, input.workspace_id)
        config = providers.config.get(Channel.email, {})
        local = providers.modes.get(Channel.email) == "local"
        sender = config.get("from_email") or channel_settings.from_email
        if not sender and local:
            sender = LOCAL_ALERT_SENDER
        if not sender:
            raise ApplicationError(
                "no sender address for staff alerts: set from_email in the channel settings",
                type="AlertError",
                non_retryable=True,
            )
        subject, body_text, body_html = _alert_email(flow_name or str(input.flow_id), alert)
        email = OutgoingEmail(
            message_id=alert_message_id(input.journey_id, input.step_id),
            to=input.to,
            from_email=sender,
            from_name=config.get("from_name") or channel_settings.from_name,
            subject=subject,
            html=body_html,
            text=body_text,
            categories=("flow_alert",),
            custom_args={"waymark_workspace_id": str(input.workspace_id), "waymark_alert": key},
        )
        try:
            [result] = await providers.email.send_emails([email])
        except ProviderUnavailable as exc:  # Temporal retries the activity
            raise ApplicationError(f"alert email: {exc}", type="ProviderUnavailable") from exc
        if result.status != SendStatus.sent:
            raise ApplicationError(
                f"alert email refused: {result.error}", type="AlertError", non_retryable=True
            )
        async with session_scope(self.engine) as session:
            await _mark_done(session, input.workspace_id, key)
        log.info("flow alert emailed", to=input.to, flow_id=str(input.flow_id), key=key)
        return SendAlertResult()


async def _done(session: Any, workspace_id: uuid.UUID, key: str) -> bool:
    found = await session.execute(
        text("SELECT 1 FROM processed_calls WHERE workspace_id = :ws AND message_id = :key"),
        {"ws": workspace_id, "key": key[:255]},
    )
    return found.first() is not None


async def _mark_done(session: Any, workspace_id: uuid.UUID, key: str) -> None:
    await session.execute(
        text(
            "INSERT INTO processed_calls (workspace_id, message_id) VALUES (:ws, :key) "
            "ON CONFLICT DO NOTHING"
        ),
        {"ws": workspace_id, "key": key[:255]},
    )


_PROFILE_FIELDS = ("id", "email", "phone", "external_id", "full_name", "city", "country")


def _profile_summary(profile: dict[str, Any], exists: bool) -> dict[str, Any]:
    if not exists:
        return {"id": profile.get("id"), "deleted": True}
    summary = {k: profile.get(k) for k in _PROFILE_FIELDS if profile.get(k) is not None}
    summary["properties"] = profile.get("properties") or {}
    return summary


def _alert_email(flow_name: str, alert: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) of a staff alert: the message, then the profile and the event."""
    first_line = (alert["message"].strip().splitlines() or [""])[0][:120]
    subject = f"[Waymark] {flow_name}: {first_line}" if first_line else f"[Waymark] {flow_name}"
    profile = json.dumps(alert["profile"], indent=2, default=str, ensure_ascii=False)
    event = json.dumps(alert["event"], indent=2, default=str, ensure_ascii=False)
    ids = (
        f"flow {alert['flow_id']} · step {alert['step_id']} · journey {alert['journey_id']}"
        f" · workspace {alert['workspace_id']}"
    )
    text_body = (
        f"{alert['message']}\n\nProfile\n{profile}\n\nEvent\n{event}\n\nFlow: {flow_name}\n{ids}\n"
    )
    e = html.escape
    html_body = (
        f"<html><body><p>{e(alert['message']).replace(chr(10), '<br>')}</p>"
        f"<h3>Profile</h3><pre>{e(profile)}</pre><h3>Event</h3><pre>{e(event)}</pre>"
        f"<p>Flow: <b>{e(flow_name)}</b><br><small>{e(ids)}</small></p></body></html>"
    )
    return subject, text_body, html_body
