"""The local outbox (what channels in local mode "sent"), and the browser-side scripts.

`GET /v1/outbox` lists it (read scope). `GET /outbox` is a page for developers that holds no
data: its script asks for a private key, keeps it in sessionStorage (never a cookie, never the
URL) and calls `/v1/outbox` with it; every value is rendered as text, an email's HTML only
inside a sandboxed iframe (no scripts), so a message's content cannot act on the page.

`/waymark-push.js` is the storefront's subscribe snippet; `/waymark-sw.js` the service worker
that shows the pushes (a shop serves a copy at its own origin: service workers are same-origin).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import and_, or_, select

from api.deps import Reader, SessionDep
from api.errors import ApiError
from api.pagination import encode_cursor, time_cursor
from models import Channel, LocalOutboxMessage

router = APIRouter(tags=["outbox"])
STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src * data:; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class OutboxMessagePublic(BaseModel):
    id: uuid.UUID
    message_id: uuid.UUID
    provider_message_id: str
    channel: Channel
    to: str
    profile_id: uuid.UUID | None
    subject: str | None
    html: str | None
    text: str | None
    payload: dict[str, Any]
    created_at: datetime


class OutboxPage(BaseModel):
    data: list[OutboxMessagePublic]
    next_cursor: str | None = None  # pass as `cursor` for the next (older) page


def _cursor(row: LocalOutboxMessage) -> str:
    return encode_cursor(row.created_at.isoformat(), row.id)


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        return time_cursor(cursor)
    except ApiError:  # this endpoint has always answered `bad_cursor`
        raise ApiError(400, "bad_cursor", "cursor is not one this endpoint returned") from None


@router.get("/v1/outbox", response_model=OutboxPage)
async def list_outbox(
    principal: Reader,
    session: SessionDep,
    channel: Channel | None = None,
    profile_id: uuid.UUID | None = None,
    to: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> OutboxPage:
    """Messages the workspace's local-mode channels recorded, newest first."""
    query = select(LocalOutboxMessage).where(
        LocalOutboxMessage.workspace_id == principal.workspace_id
    )
    if channel is not None:
        query = query.where(LocalOutboxMessage.channel == channel.value)
    if profile_id is not None:
        query = query.where(LocalOutboxMessage.profile_id == profile_id)
    if to is not None:
        query = query.where(LocalOutboxMessage.to == to)
    if cursor is not None:
        created, row_id = _parse_cursor(cursor)
        query = query.where(
            or_(
                LocalOutboxMessage.created_at < created,
                and_(LocalOutboxMessage.created_at == created, LocalOutboxMessage.id < row_id),
            )
        )
    query = query.order_by(LocalOutboxMessage.created_at.desc(), LocalOutboxMessage.id.desc())
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return OutboxPage(
        data=[
            OutboxMessagePublic(**row.model_dump(), provider_message_id=f"local-{row.id}")
            for row in rows
        ],
        next_cursor=_cursor(rows[-1]) if more else None,
    )


def _static(name: str, media_type: str, headers: dict[str, str] | None = None) -> FileResponse:
    return FileResponse(
        STATIC / name,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=300", **(headers or {})},
    )


@router.get("/outbox", include_in_schema=False)
async def outbox_page() -> FileResponse:
    return _static(
        "outbox.html",
        "text/html; charset=utf-8",
        {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"},
    )


@router.get("/outbox.js", include_in_schema=False)
async def outbox_script() -> FileResponse:
    return _static("outbox.js", "text/javascript; charset=utf-8")


@router.get("/waymark-push.js", include_in_schema=False)
async def push_snippet() -> FileResponse:
    return _static("waymark-push.js", "text/javascript; charset=utf-8")


@router.get("/waymark-sw.js", include_in_schema=False)
async def service_worker() -> FileResponse:
    return _static(
        "waymark-sw.js", "text/javascript; charset=utf-8", {"Service-Worker-Allowed": "/"}
    )
