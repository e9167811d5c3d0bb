"""Flows: drafts, validation, publishing immutable versions, diffs and statuses.

A flow is created in draft with a definition (JSON Schema at `GET /v1/flows/schema`). Edit the
draft with `PUT /v1/flows/{id}/draft`, check it with `POST .../validate`, publish it with
`POST .../publish`: errors answer 422 with one detail per issue, located at
`steps.<step id>.<path>` (or the flow-level field); a changed draft becomes version N+1 and a
draft flow goes live. Status changes and new versions are signalled to running journeys.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Reader, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError, not_found
from api.pagination import created_page
from core.tenancy import Principal
from flows import hooks, reviews, service
from flows.definition import FlowDefinition, flow_json_schema
from flows.diff import FlowDiff, diff_definitions
from flows.library import library
from flows.validate import Issue, ValidationReport, pydantic_issues, validate_flow
from models import ApiKey, Flow, FlowStatus, FlowVersion

router = APIRouter(prefix="/v1/flows", tags=["flows"])
VERSION_MAX = 2**31 - 1  # versions are PostgreSQL integers: a larger one is a 422, not a 500

DEFINITION = Field(
    description="A flow definition: name, trigger, settings, entry and steps; the JSON Schema "
    "is at `GET /v1/flows/schema`"
)


class FlowCreate(BaseModel):
    definition: dict[str, Any] = DEFINITION


class DraftUpdate(BaseModel):
    definition: dict[str, Any] = DEFINITION


class PublishRequest(BaseModel):
    message: str | None = Field(default=None, max_length=2000, description="What changed")


class StatusRequest(BaseModel):
    status: FlowStatus


class IssuePublic(BaseModel):
    step_id: str | None
    path: str
    message: str


class Report(BaseModel):
    valid: bool
    errors: list[IssuePublic]
    warnings: list[IssuePublic]


class FlowSummary(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    status: FlowStatus
    live_version: int | None
    trigger_type: str | None
    trigger_metric: str | None
    created_at: datetime
    updated_at: datetime


class FlowPublic(FlowSummary):
    draft: dict[str, Any]
    live: dict[str, Any] | None = Field(description="The live version's definition")
    draft_changed: bool = Field(description="The draft differs from the live version")


class FlowPage(BaseModel):
    data: list[FlowSummary]
    next_cursor: str | None


class VersionSummary(BaseModel):
    version: int
    author: str
    message: str | None
    created_at: datetime


class VersionPublic(VersionSummary):
    definition: dict[str, Any]


class Published(BaseModel):
    published: bool = Field(description="False when the draft equals the live version")
    version: VersionSummary | None
    status: FlowStatus
    warnings: list[IssuePublic]


class StatusChanged(BaseModel):
    status: FlowStatus
    previous: FlowStatus


def _issue(i: Issue) -> IssuePublic:
    return IssuePublic(step_id=i.step_id, path=i.path, message=i.message)


def _report(report: ValidationReport) -> Report:
    return Report(
        valid=report.ok,
        errors=[_issue(i) for i in report.errors],
        warnings=[_issue(i) for i in report.warnings],
    )


def _loc(i: Issue) -> str:
    base = f"steps.{i.step_id}" if i.step_id else ""
    return ".".join(p for p in (base, i.path) if p) or "definition"


def _invalid(issues: list[Issue], message: str | None = None) -> ApiError:
    details = [{"loc": _loc(i), "message": i.message, "type": "error"} for i in issues]
    summary = "; ".join(f"{d['loc']}: {d['message']}" for d in details[:5])
    return ApiError(422, "invalid_flow", message or f"the flow has errors — {summary}", details)


def _parse(data: dict[str, Any]) -> FlowDefinition:
    try:
        return FlowDefinition.model_validate(data)
    except ValidationError as exc:
        issues = pydantic_issues(exc)
        for i in issues:
            i.path = f"body.definition.{i.path}" if i.path else "body.definition"
        raise _invalid(issues) from None


def _refused(exc: service.FlowError) -> ApiError:
    if isinstance(exc, service.FlowInvalid):
        return _invalid(exc.report.errors, exc.message)
    return ApiError(exc.status, exc.code, exc.message)


async def _author(session: AsyncSession, principal: Principal) -> str:
    key = await session.get(ApiKey, principal.key_id) if principal.key_id else None
    return f"{key.name} ({key.id})" if key else "api"


async def _get(session: AsyncSession, workspace_id: uuid.UUID, flow_id: uuid.UUID) -> Flow:
    flow = await session.get(Flow, flow_id)
    if flow is None or flow.workspace_id != workspace_id:
        raise not_found("flow")
    return flow


async def _public(session: AsyncSession, flow: Flow) -> FlowPublic:
    live = await service.live_definition(session, flow)
    return FlowPublic(
        **FlowSummary.model_validate(flow, from_attributes=True).model_dump(),
        draft=flow.draft,
        live=live,
        draft_changed=live is None or not diff_definitions(live, flow.draft).empty,
    )


@router.get("/schema", response_model=dict[str, Any])
async def schema(_: Reader) -> dict[str, Any]:
    """The JSON Schema of a flow definition (for editors and YAML files)."""
    return flow_json_schema()


@router.get("/templates-library", response_model=list[dict[str, Any]])
async def templates_library(_: Reader) -> list[dict[str, Any]]:
    """Ready flows to start from. Templates, lists and segments are named (`template: ...`):
    `waymark examples install` creates them and the flows."""
    return library()


@router.post("", response_model=FlowPublic, status_code=status.HTTP_201_CREATED)
async def create_flow(body: FlowCreate, principal: Writer, session: SessionDep) -> FlowPublic:
    """A new flow in draft. Nothing is checked against the workspace until you validate or
    publish it."""
    definition = _parse(body.definition)
    author = await _author(session, principal)
    try:
        flow = await service.create_flow(session, principal.workspace_id, definition, author)
    except service.FlowError as exc:
        raise _refused(exc) from None
    await session.commit()
    return await _public(session, flow)


@router.get("", response_model=FlowPage)
async def list_flows(
    principal: Reader,
    session: SessionDep,
    status_: FlowStatus | None = Query(None, alias="status", description="Only this status"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page"),
) -> FlowPage:
    query = select(Flow).where(Flow.workspace_id == principal.workspace_id)
    if status_:
        query = query.where(Flow.status == status_)
    rows, next_cursor = await created_page(session, query, Flow, limit, cursor)
    return FlowPage(
        data=[FlowSummary.model_validate(f, from_attributes=True) for f in rows],
        next_cursor=next_cursor,
    )


@router.get("/{flow_id}", response_model=FlowPublic)
async def get_flow(flow_id: uuid.UUID, principal: Reader, session: SessionDep) -> FlowPublic:
    return await _public(session, await _get(session, principal.workspace_id, flow_id))


@router.put("/{flow_id}/draft", response_model=FlowPublic)
async def update_draft(
    flow_id: uuid.UUID, body: DraftUpdate, principal: Writer, session: SessionDep
) -> FlowPublic:
    """Replace the draft. Journeys keep running on the live version until you publish."""
    flow = await _get(session, principal.workspace_id, flow_id)
    definition = _parse(body.definition)
    try:
        await service.update_draft(session, flow, definition)
    except service.FlowError as exc:
        raise _refused(exc) from None
    await session.commit()
    return await _public(session, flow)


@router.post("/{flow_id}/validate", response_model=Report)
async def validate(
    flow_id: uuid.UUID, principal: Writer, session: SessionDep, settings: SettingsDep
) -> Report:
    """Check the draft: errors block publishing, warnings do not; each names its step."""
    flow = await _get(session, principal.workspace_id, flow_id)
    report = await validate_flow(session, flow.workspace_id, flow.draft, settings=settings)
    return _report(report)


@router.post("/{flow_id}/publish", response_model=Published)
async def publish(
    flow_id: uuid.UUID,
    body: PublishRequest,
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> Published:
    """Publish the draft as a new immutable version (unless it equals the live one). A draft
    flow goes live; running journeys continue on the new version at the same step id."""
    flow = await _get(session, principal.workspace_id, flow_id)
    author = await _author(session, principal)
    try:
        version, report = await service.publish(
            session, flow, author=author, message=body.message, settings=settings
        )
    except service.FlowError as exc:
        raise _refused(exc) from None
    await session.commit()
    if version is not None:
        await hooks.on_published(temporal, session, flow.workspace_id, flow.id, version.version)
    return Published(
        published=version is not None,
        version=VersionSummary.model_validate(version, from_attributes=True) if version else None,
        status=flow.status,
        warnings=[_issue(i) for i in report.warnings],
    )


@router.get("/{flow_id}/versions", response_model=list[VersionSummary])
async def list_versions(
    flow_id: uuid.UUID, principal: Reader, session: SessionDep
) -> list[VersionSummary]:
    """Every published version, newest first."""
    await _get(session, principal.workspace_id, flow_id)
    query = select(FlowVersion).where(FlowVersion.flow_id == flow_id)
    rows = (await session.execute(query.order_by(FlowVersion.version.desc()))).scalars()
    return [VersionSummary.model_validate(v, from_attributes=True) for v in rows]


async def _version(session: AsyncSession, flow_id: uuid.UUID, version: int) -> FlowVersion:
    row = await session.get(FlowVersion, (flow_id, version))
    if row is None:
        raise not_found(f"version {version}")
    return row


@router.get("/{flow_id}/versions/{version}", response_model=VersionPublic)
async def get_version(
    flow_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=VERSION_MAX)],
    principal: Reader,
    session: SessionDep,
) -> VersionPublic:
    await _get(session, principal.workspace_id, flow_id)
    return VersionPublic.model_validate(
        await _version(session, flow_id, version), from_attributes=True
    )


@router.get("/{flow_id}/diff", response_model=FlowDiff)
async def diff(
    flow_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    from_: int | None = Query(
        None, alias="from", ge=1, le=VERSION_MAX, description="Default: the one before"
    ),
    to: int | None = Query(
        None,
        ge=1,
        le=VERSION_MAX,
        description="Default: the live version, or the draft when none is published",
    ),
) -> FlowDiff:
    """What changed between two versions; without `to`, the draft against the live version."""
    flow = await _get(session, principal.workspace_id, flow_id)
    if to is None:
        after = flow.draft
        before = await service.live_definition(session, flow) if from_ is None else None
    else:
        after = (await _version(session, flow_id, to)).definition
        before = None
    if from_ is not None:
        before = (await _version(session, flow_id, from_)).definition
    elif to is not None and to > 1:
        before = (await _version(session, flow_id, to - 1)).definition
    return diff_definitions(before, after)


@router.post("/{flow_id}/status", response_model=StatusChanged)
async def change_status(
    flow_id: uuid.UUID,
    body: StatusRequest,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
) -> StatusChanged:
    """draft → live; live ↔ paused; live ↔ manual (sends wait in the review queue,
    `/v1/flows/{id}/reviews`; back to live releases them all); live/paused →
    draft; any → deleted; deleted → paused (restore). Running journeys are told: paused, they
    hold before their next step (no one new enters) and go on where they were when the flow is
    live again; draft or deleted, they leave, counted as removed (`flow_draft`,
    `flow_deleted`). A restored flow comes back paused, without its removed journeys.
    Journeys are signalled within the request, after the change is committed: repeating the
    call after a timeout or error is safe (idempotent); released sends whose journeys were not
    woken are woken by `POST /v1/flows/{id}/reviews/release`, which signals them again."""
    flow = await _get(session, principal.workspace_id, flow_id)
    author = await _author(session, principal)
    try:
        previous = await service.change_status(session, flow, body.status, author=author)
    except service.FlowError as exc:
        raise _refused(exc) from None
    released = []  # manual → live releases every send waiting for review (flows.reviews)
    if previous == FlowStatus.manual and flow.status == FlowStatus.live:
        released = await reviews.release_on_live(session, flow.workspace_id, flow.id, author)
    await session.commit()
    await reviews.signal(temporal, released, "released")
    if previous is not None:
        await hooks.on_status_changed(temporal, session, flow.workspace_id, flow.id, flow.status)
    return StatusChanged(status=flow.status, previous=previous or flow.status)
