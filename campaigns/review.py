"""Review of a campaign message before it is scheduled: errors block scheduling, warnings don't.

The audience is counted with the send's own SQL (`campaigns.audience.AUDIENCE_CTES`): the path's
include lists/segments minus its excludes, and minus every earlier path's audience (first path
wins). Consent and suppression are not counted out here, as at send time: the send path's gate
decides them per recipient (`channels.gate`) and the metrics count them as skipped by reason.
Templates are rendered against up to 3 real recipients, or the sample profile when there are none.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience import AUDIENCE_CTES
from channels.credentials import providers_for
from channels.render import TemplateError, profile_context, render_sample
from channels.settings import load_channel_settings
from channels.sms_segments import count_segments
from channels.templates import get_template, validate
from models import Channel, Profile
from models.base import utcnow
from models.campaigns import (
    MAX_MESSAGES,
    MAX_PATHS,
    Campaign,
    CampaignMessage,
    CampaignPath,
    SendStrategy,
)

MAX_SMS_SEGMENTS = 10
LARGE_AUDIENCE = 100_000
SAMPLE_RECIPIENTS = 3
UNSUBSCRIBE_MARKERS = ("https://example.com/l/u/sample", "https://example.com/l/p/sample")


@dataclass(frozen=True)
class Issue:
    severity: Literal["error", "warning"]
    code: str
    message: str


@dataclass
class Review:
    message_id: uuid.UUID
    recipients: int
    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": str(self.message_id),
            "recipients": self.recipients,
            "errors": [asdict(i) for i in self.errors],
            "warnings": [asdict(i) for i in self.issues if i.severity == "warning"],
        }


# The path's audience exactly as the send snapshots it (`campaigns.audience.AUDIENCE_CTES`).
_AUDIENCE = (
    "WITH scope AS (SELECT CAST(:campaign_id AS uuid) AS campaign_id, "
    "CAST(:position AS int) AS position),"
    + AUDIENCE_CTES
    + """, mine AS (
    SELECT pr.id, pr.timezone FROM audience a JOIN profiles pr ON pr.id = a.profile_id
    WHERE a.path_id = :path_id
)
"""
)

# Recipients, and those whose local send time falls in quiet hours ([start, end), may wrap).
_COUNTS = text(
    _AUDIENCE
    + """
, local AS (
    SELECT CASE WHEN :local_time THEN (:send_at AT TIME ZONE :campaign_tz)::time
                ELSE (:send_at AT TIME ZONE COALESCE(z.name, :default_tz))::time END AS t
    FROM mine LEFT JOIN pg_timezone_names z ON z.name = mine.timezone
)
SELECT count(*),
       count(*) FILTER (WHERE CASE WHEN CAST(:qs AS time) <= CAST(:qe AS time)
                                   THEN t >= CAST(:qs AS time) AND t < CAST(:qe AS time)
                                   ELSE t >= CAST(:qs AS time) OR t < CAST(:qe AS time) END)
FROM local
"""
)
_SAMPLE = text(_AUDIENCE + "SELECT id FROM mine ORDER BY id LIMIT :n")


async def _audience(
    session: AsyncSession, campaign: Campaign, path: CampaignPath, message: CampaignMessage, quiet
) -> tuple[int, int, list[Profile]]:
    params = {"campaign_id": campaign.id, "position": path.position, "path_id": path.id}
    params["workspace_id"] = campaign.workspace_id
    ids = list((await session.execute(_SAMPLE, {**params, "n": SAMPLE_RECIPIENTS})).scalars())
    profiles = list((await session.execute(select(Profile).where(Profile.id.in_(ids)))).scalars())
    send_at = message.send_at or utcnow()
    counts = {
        "local_time": campaign.use_recipient_local_time,
        "send_at": send_at,
        "campaign_tz": campaign.timezone,
        "default_tz": quiet[2],
        "qs": quiet[0],
        "qe": quiet[1],
    }
    total, quiet_count = (await session.execute(_COUNTS, {**params, **counts})).one()
    return total, quiet_count, profiles


async def review_message(
    session: AsyncSession,
    settings: Any,
    campaign: Campaign,
    path: CampaignPath,
    message: CampaignMessage,
    *,
    now: datetime | None = None,
) -> Review:
    now = now or utcnow()
    ws = campaign.workspace_id
    issues: list[Issue] = []

    def error(code: str, text_: str) -> None:
        issues.append(Issue("error", code, text_))

    def warning(code: str, text_: str) -> None:
        issues.append(Issue("warning", code, text_))

    channel = Channel(message.channel)
    channel_settings = await load_channel_settings(session, ws)
    qh = channel_settings.quiet_hours
    zone = channel_settings.default_zone().key
    total, in_quiet, profiles = await _audience(
        session, campaign, path, message, (qh.start, qh.end, zone)
    )

    # Audience
    if not (path.include_lists or path.include_segments):
        error("no_audience", "the path has no audience: include at least one list or segment")
    elif total == 0:
        warning(
            "empty_audience",
            "no profile is in this path's audience now; if none is at send time, the message "
            "is cancelled",
        )

    # Content
    template = await get_template(session, ws, message.template_id) if message.template_id else None
    rendered = []
    if template is None:
        error("no_content", "choose a template (template_id) for the message")
    elif Channel(template.channel) != channel:
        error(
            "no_content",
            f"the template is a {template.channel} template; this is a {channel.value} message",
        )
        template = None
    else:
        try:
            rendered.append(validate(template))
            for profile in profiles:
                rendered.append(render_sample(template, profile_context(profile)))
        except TemplateError as exc:
            who = "a recipient" if rendered else "the sample recipient"
            error("template_error", f"the template fails to render for {who}: {exc}")

    # Sender and channel configuration
    providers = await providers_for(session, settings, ws)
    mode = providers.modes.get(channel, "local")
    config = providers.config.get(channel, {})
    sender = message.sender or {}
    if channel is Channel.email:
        if not (
            sender.get("from_email") or config.get("from_email") or channel_settings.from_email
        ):
            error(
                "missing_sender",
                "set a from address (sender.from_email) or a default one in the email settings",
            )
    elif channel in (Channel.sms, Channel.whatsapp) and mode == "provider":
        if not (
            sender.get("from_number")
            or config.get("from_number")
            or config.get("messaging_service_sid")
        ):
            error("missing_sender", "set a from number (sender.from_number)")
    if mode == "local":
        note = f"no {channel.value} provider is configured for this workspace"
        if getattr(settings, "env", "development") == "production":
            error("channel_not_configured", f"{note}: add its credentials before scheduling")
        else:
            warning("channel_not_configured", f"{note}: messages go to the local outbox")

    # Send time
    if message.send_at is None:
        error("no_send_time", "set the send date and time (send_at)")
    elif message.send_at <= now:
        error("send_time_passed", f"the send time {message.send_at.isoformat()} has passed")

    # Limits
    if message.strategy == SendStrategy.throttled and not (
        message.throttle_percent and 10 <= message.throttle_percent <= 50
    ):
        error("invalid_throttle", "a throttled send needs throttle_percent between 10 and 50")
    paths = await session.scalar(
        select(func.count())
        .select_from(CampaignPath)
        .where(CampaignPath.campaign_id == campaign.id)
    )
    messages = await session.scalar(
        select(func.count())
        .select_from(CampaignMessage)
        .where(CampaignMessage.campaign_id == campaign.id)
    )
    if paths > MAX_PATHS or messages > MAX_MESSAGES:
        error(
            "limit_exceeded",
            f"a campaign has at most {MAX_PATHS} paths and {MAX_MESSAGES} messages "
            f"(this one: {paths} and {messages})",
        )

    # Channel specifics on the rendered content
    if channel in (Channel.sms, Channel.whatsapp):
        worst = max((count_segments(r.body or "").segments for r in rendered), default=0)
        if channel is Channel.sms and worst > MAX_SMS_SEGMENTS:
            error(
                "sms_too_long",
                f"the SMS is {worst} segments long; the limit is {MAX_SMS_SEGMENTS}",
            )
        if channel is Channel.sms and qh.enabled and in_quiet:
            warning(
                "quiet_hours",
                f"{in_quiet} of {total} recipients get it in quiet hours "
                f"({qh.start:%H:%M}–{qh.end:%H:%M} local): it is held until they end",
            )
    if channel is Channel.email and rendered:
        html = " ".join((r.html or "") + (r.text or "") for r in rendered[:1])
        if not any(marker in html for marker in UNSUBSCRIBE_MARKERS):
            warning(
                "no_unsubscribe_link",
                "the email has no unsubscribe link: add {{ unsubscribe_url }} to the template",
            )
    if total > LARGE_AUDIENCE and message.strategy == SendStrategy.fixed:
        warning(
            "large_audience",
            f"{total} recipients at once: consider a throttled send (10–50 % per hour)",
        )
    return Review(message.id, total, issues)
