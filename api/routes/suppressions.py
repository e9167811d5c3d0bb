"""Suppressed addresses: emails and phone numbers nothing is sent to (bounces, complaints, ...).

Separate from consent: a subscribed profile whose address is suppressed is still not sent to.
Addresses are stored normalized (emails lower-cased, phones in E.164), so any spelling of an
address finds its suppression.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select, tuple_

from api.deps import Reader, SessionDep, Writer
from api.errors import ApiError, not_found
from api.pagination import decode_cursor, encode_cursor
from ingest import suppressions
from ingest.traits import normalize_email, normalize_phone
from models import Channel, Suppression

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])


class SuppressionCreate(BaseModel):
    channel: Channel
    address: str = Field(min_length=1, max_length=320, examples=["jan@example.com"])
    reason: str = Field(
        default="manual",
        min_length=1,
        max_length=64,
        examples=["hard_bounce", "spam_complaint", "manual"],
    )


class SuppressionPublic(BaseModel):
    channel: Channel
    address: str
    reason: str
    created_at: datetime


class SuppressionPage(BaseModel):
    data: list[SuppressionPublic]
    next_cursor: str | None


def normalize_address(channel: Channel, address: str, loc: str) -> str:
    """An address as suppressions store it; 422 naming `loc` when it is not one."""
    try:
        if channel == Channel.email:
            return normalize_email(address).lower()
        if channel in (Channel.sms, Channel.whatsapp):
            return normalize_phone(address)
        message = "push subscriptions are removed, not suppressed (DELETE /v1/push/subscriptions)"
    except ValueError as exc:
        message = str(exc)
    raise ApiError(
        422,
        "validation_error",
        f"invalid request — {loc}: {message}",
        [{"loc": loc, "message": message, "type": "value_error"}],
    )


def _encode_cursor(row: Suppression) -> str:
    return encode_cursor(row.channel, row.address)


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        channel, address = decode_cursor(cursor, 2)
        return channel, address
    except ApiError:  # this listing answers a bad cursor as a 422 on query.cursor
        message = "not a cursor this API returned"
        raise ApiError(
            422,
            "validation_error",
            f"invalid request — query.cursor: {message}",
            [{"loc": "query.cursor", "message": message, "type": "value_error"}],
        ) from None


@router.get("", response_model=SuppressionPage)
async def list_suppressions(
    principal: Reader,
    session: SessionDep,
    channel: Channel | None = None,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page"),
) -> SuppressionPage:
    """Suppressions ordered by (channel, address), a page at a time."""
    query = select(Suppression).where(Suppression.workspace_id == principal.workspace_id)
    if channel is not None:
        query = query.where(Suppression.channel == channel)
    if cursor is not None:
        query = query.where(
            tuple_(Suppression.channel, Suppression.address) > _decode_cursor(cursor)
        )
    query = query.order_by(Suppression.channel, Suppression.address).limit(limit + 1)
    rows = (await session.execute(query)).scalars().all()
    page = rows[:limit]
    return SuppressionPage(
        data=[SuppressionPublic.model_validate(r, from_attributes=True) for r in page],
        next_cursor=_encode_cursor(page[-1]) if len(rows) > limit else None,
    )


@router.post(
    "",
    response_model=SuppressionPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": SuppressionPublic, "description": "Already suppressed"}},
)
async def suppress(
    body: SuppressionCreate, principal: Writer, session: SessionDep, response: Response
) -> SuppressionPublic:
    """Suppress an address. Suppressing it again keeps the first reason and answers 200."""
    address = normalize_address(body.channel, body.address, "body.address")
    inserted = await suppressions.suppress(
        session, principal.workspace_id, body.channel, address, body.reason
    )
    row = (
        await session.execute(
            select(Suppression)
            .where(
                Suppression.workspace_id == principal.workspace_id,
                Suppression.channel == body.channel,
                Suppression.address == address,
            )
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    await session.commit()
    if not inserted:
        response.status_code = status.HTTP_200_OK
    return SuppressionPublic.model_validate(row, from_attributes=True)


@router.delete("/{channel}/{address}", status_code=status.HTTP_204_NO_CONTENT)
async def unsuppress(
    channel: Channel, address: str, principal: Writer, session: SessionDep
) -> Response:
    """Lift a suppression; the address may be given in any spelling (it is normalized)."""
    normalized = normalize_address(channel, address, "path.address")
    if not await suppressions.unsuppress(session, principal.workspace_id, channel, normalized):
        raise not_found("suppression")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
