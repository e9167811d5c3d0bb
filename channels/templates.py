"""Templates as a service: what each channel requires, validation against the sample data, and
loading one for the send path."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.render import PARTS, Rendered, TemplateError, TemplateSource, check, render_sample
from models import Channel, Template

REQUIRED: dict[Channel, tuple[str, ...]] = {
    Channel.email: ("subject", "html"),
    Channel.sms: ("body",),
    Channel.whatsapp: ("body",),
    Channel.push: ("push_title", "body"),
}
ALL_PARTS = ("subject", "preheader", "html", "text", "body", "push_title", "push_url", "push_icon")


def validate(template: TemplateSource) -> Rendered:
    """The template rendered against the sample profile and event, or TemplateError: a part the
    channel requires is empty, a part belongs to another channel, a syntax error, or a name the
    sample data lacks (write optional data as `{% if event.coupon is defined %}`)."""
    channel = Channel(template.channel)
    for part in REQUIRED[channel]:
        if not (getattr(template, part) or "").strip():
            raise TemplateError(part, f"is required for {channel.value} templates")
    for part in ALL_PARTS:
        if part not in PARTS[channel] and getattr(template, part, None):
            raise TemplateError(part, f"is not a part of {channel.value} templates")
    check(template)
    return render_sample(template)


async def get_template(
    session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID
) -> Template | None:
    return await session.scalar(
        select(Template).where(Template.id == template_id, Template.workspace_id == workspace_id)
    )
