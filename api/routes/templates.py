"""Message templates: CRUD, preview against a profile or the sample data, and validation.

A template is saved only when it renders against the sample profile and event (a cart with
items, an order): a missing name answers 422 `template_error` with the part, line and name.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Reader, SessionDep, Writer
from api.errors import ApiError, not_found
from api.pagination import created_page
from channels import render
from channels.templates import get_template, validate
from models import Channel, Profile, Template, Workspace
from models.base import utcnow

router = APIRouter(prefix="/v1/templates", tags=["templates"])


class TemplateParts(BaseModel):
    subject: str | None = Field(default=None, max_length=2000)
    preheader: str | None = Field(default=None, max_length=2000)
    html: str | None = Field(default=None, max_length=1_000_000)
    text: str | None = Field(
        default=None, max_length=500_000, description="Email: empty means derived from the HTML"
    )
    body: str | None = Field(
        default=None, max_length=10_000, description="SMS, WhatsApp and push text"
    )
    push_title: str | None = Field(default=None, max_length=500)
    push_url: str | None = Field(default=None, max_length=2048)
    push_icon: str | None = Field(default=None, max_length=2048)


class TemplateDraft(TemplateParts):
    channel: Channel


class TemplateCreate(TemplateDraft):
    name: str = Field(min_length=1, max_length=255)


class TemplateUpdate(TemplateParts):
    name: str | None = Field(default=None, min_length=1, max_length=255)


class TemplatePublic(TemplateCreate):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class TemplatePage(BaseModel):
    data: list[TemplatePublic]
    next_cursor: str | None


class PreviewRequest(BaseModel):
    """Render against a real profile (`profile_id`), given data, or the sample data."""

    profile_id: uuid.UUID | None = None
    profile: dict[str, Any] | None = None
    event: dict[str, Any] | None = Field(
        default=None, description="The event as templates see it; default: the sample cart"
    )


class RenderedPublic(BaseModel):
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    push_title: str | None = None
    push_url: str | None = None
    push_icon: str | None = None


def _template_error(exc: render.TemplateError) -> ApiError:
    detail = {
        "loc": exc.part,
        "message": exc.reason,
        "type": "template_error",
        "line": exc.line,
        "name": exc.name,
    }
    return ApiError(422, "template_error", str(exc), [detail])


def _validated(template: render.TemplateSource) -> render.Rendered:
    try:
        return validate(template)
    except render.TemplateError as exc:
        raise _template_error(exc) from None


def _public(t: Template) -> TemplatePublic:
    return TemplatePublic.model_validate(t, from_attributes=True)


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "conflict", f"a template named {name!r} already exists in this workspace")


async def _get(session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID):
    template = await get_template(session, workspace_id, template_id)
    if template is None:
        raise not_found("template")
    return template


@router.post("", response_model=TemplatePublic, status_code=status.HTTP_201_CREATED)
async def create_template(
    body: TemplateCreate, principal: Writer, session: SessionDep
) -> TemplatePublic:
    """Create a template; 422 `template_error` when it does not render against the sample."""
    template = Template(workspace_id=principal.workspace_id, **body.model_dump())
    _validated(render.TemplateParts(**body.model_dump(exclude={"name"})))
    session.add(template)
    try:
        await session.commit()
    except IntegrityError:
        raise _name_taken(body.name) from None
    return _public(template)


@router.get("", response_model=TemplatePage)
async def list_templates(
    principal: Reader,
    session: SessionDep,
    channel: Channel | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page"),
) -> TemplatePage:
    query = select(Template).where(Template.workspace_id == principal.workspace_id)
    if channel is not None:
        query = query.where(Template.channel == channel)
    rows, next_cursor = await created_page(session, query, Template, limit, cursor)
    return TemplatePage(
        data=[_public(t) for t in rows],
        next_cursor=next_cursor,
    )


@router.post("/validate", response_model=RenderedPublic)
async def validate_template(body: TemplateDraft, principal: Reader) -> RenderedPublic:
    """Check a template without saving it: its parts rendered against the sample data, or 422
    `template_error` with the part, line and missing name."""
    rendered = _validated(render.TemplateParts(**body.model_dump()))
    return RenderedPublic.model_validate(rendered, from_attributes=True)


@router.get("/{template_id}", response_model=TemplatePublic)
async def get_one(template_id: uuid.UUID, principal: Reader, session: SessionDep):
    return _public(await _get(session, principal.workspace_id, template_id))


@router.patch("/{template_id}", response_model=TemplatePublic)
async def update_template(
    template_id: uuid.UUID, body: TemplateUpdate, principal: Writer, session: SessionDep
) -> TemplatePublic:
    template = await _get(session, principal.workspace_id, template_id)
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise ApiError(422, "validation_error", "name cannot be null")
    parts = {k: getattr(template, k) for k in TemplateParts.model_fields} | {
        k: v for k, v in changes.items() if k != "name"
    }
    _validated(render.TemplateParts(channel=template.channel, **parts))
    for key, value in changes.items():
        setattr(template, key, value)
    template.updated_at = utcnow()
    session.add(template)
    try:
        await session.commit()
    except IntegrityError:
        raise _name_taken(changes.get("name") or "") from None
    return _public(template)


@router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_template(template_id: uuid.UUID, principal: Writer, session: SessionDep):
    template = await _get(session, principal.workspace_id, template_id)
    await session.delete(template)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{template_id}/preview", response_model=RenderedPublic)
async def preview_template(
    template_id: uuid.UUID, body: PreviewRequest, principal: Reader, session: SessionDep
) -> RenderedPublic:
    """The template rendered for a real profile (`profile_id`), given data, or the sample;
    422 `template_error` with the part, line and missing name when it does not render."""
    template = await _get(session, principal.workspace_id, template_id)
    profile = body.profile
    if body.profile_id is not None:
        found = await session.scalar(
            select(Profile).where(
                Profile.id == body.profile_id, Profile.workspace_id == principal.workspace_id
            )
        )
        if found is None:
            raise not_found("profile")
        profile = render.profile_context(found)
    workspace = await session.get(Workspace, principal.workspace_id)
    try:
        rendered = render.render_sample(
            template,
            profile,
            body.event,
            workspace=render.workspace_context(workspace) if workspace else None,
        )
    except render.TemplateError as exc:
        raise _template_error(exc) from None
    return RenderedPublic.model_validate(rendered, from_attributes=True)
