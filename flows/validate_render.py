"""Rendering a flow's templates as validation: the sample profile, the trigger's real event shape.

`event` is what the router really hands a journey of this flow:

- an event trigger: the sample event (`channels.render.SAMPLE_EVENT`, a cart with items) under
  the trigger's metric;
- list joined / segment entered: the synthetic trigger event the router builds for a join or an
  entry (`flows.router_membership.membership_event`: metric `Joined List` with `list_id`,
  `list_name`, `source` / `Entered Segment` with `segment_id`, `segment_name`), named after the
  flow's list or segment — so `{{ event.list_name }}` validates and `{{ event.list_nam }}` or a
  cart's `{{ event.checkout_url }}` is reported.

Message templates see that event as it is (the send step passes the journey's trigger event);
webhook bodies and alert messages see it as `activities.journey_actions.template_event` makes it
and are rendered by the activities' own functions (`render_value`, `render_text`), so a body that
validates is a body that renders, and an error reads as the failed step's reason would.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.journey_actions import render_value, template_event
from channels.render import (
    SAMPLE_EVENT,
    SAMPLE_PROFILE,
    SAMPLE_WORKSPACE,
    RenderContext,
    TemplateError,
    TemplateSource,
    render_sample,
)
from channels.templates import REQUIRED
from flows.definition import (
    AlertStep,
    EventTrigger,
    FlowDefinition,
    ListJoinedTrigger,
    SegmentEnteredTrigger,
    WebhookStep,
)
from flows.router_membership import membership_event
from ingest.outbox import MembershipChange
from models import Channel

SAMPLE_SOURCE = "api"  # who made the sample join (`list_membership_changes.source`)
SAMPLE_FLOW_ID = uuid.UUID(int=0)


def sample_event(
    defn: FlowDefinition, workspace_id: uuid.UUID, source_name: str | None = None
) -> dict[str, Any]:
    """The trigger event a journey of `defn` starts with, on sample data. `source_name`: the
    name of the trigger's list or segment (what `list_name` / `segment_name` hold)."""
    trigger = defn.trigger
    if isinstance(trigger, EventTrigger):
        return {**SAMPLE_EVENT, "metric": trigger.metric}
    if not isinstance(trigger, ListJoinedTrigger | SegmentEnteredTrigger):
        return {}
    change = MembershipChange(
        id=0,
        workspace_id=workspace_id,
        flow_id=SAMPLE_FLOW_ID,
        profile_id=uuid.UUID(SAMPLE_PROFILE["id"]),
        trigger_type=trigger.type,
        list_id=trigger.list_id if isinstance(trigger, ListJoinedTrigger) else None,
        segment_id=trigger.segment_id if isinstance(trigger, SegmentEnteredTrigger) else None,
        change_id=0,
        source=SAMPLE_SOURCE,
        occurred_at=SAMPLE_EVENT["occurred_at"],
    )
    return membership_event(change, source_name)


async def trigger_source_name(
    session: AsyncSession, workspace_id: uuid.UUID, defn: FlowDefinition
) -> str | None:
    """The name of the flow's trigger list or segment (None: another trigger, or not found)."""
    trigger = defn.trigger
    if isinstance(trigger, ListJoinedTrigger):
        table, ident = "lists", trigger.list_id
    elif isinstance(trigger, SegmentEnteredTrigger):
        table, ident = "segments", trigger.segment_id
    else:
        return None
    sql = text(f"SELECT name FROM {table} WHERE workspace_id = :ws AND id = :id")
    return (await session.execute(sql, {"ws": workspace_id, "id": ident})).scalar_one_or_none()


def template_problem(template: TemplateSource, event: dict[str, Any]) -> str | None:
    """Why a message template cannot be sent with this trigger event (None: it can)."""
    for part in REQUIRED[Channel(template.channel)]:
        if not (getattr(template, part) or "").strip():
            return f"{part} is empty"
    try:
        render_sample(template, event=event)
    except TemplateError as exc:
        return str(exc)
    return None


def action_problems(defn: FlowDefinition, event: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(step id, path, message) for each webhook body and alert message that does not render,
    e.g. `("notify", "body.customer", "fails to render: body.customer line 1: 'profile' has no
    attribute 'nick'")`."""
    context = RenderContext(
        profile=SAMPLE_PROFILE, event=template_event(event), workspace=SAMPLE_WORKSPACE
    )
    out = []
    for step in defn.steps:
        if isinstance(step, WebhookStep) and step.body is not None:
            value, place = step.body, "body"
        elif isinstance(step, AlertStep):
            value, place = step.message, "message"
        else:
            continue
        try:
            render_value(context, value, place)
        except TemplateError as exc:
            out.append((step.id, exc.part, f"fails to render: {exc}"))
    return out
