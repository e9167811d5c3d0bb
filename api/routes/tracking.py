"""Segment-compatible tracking: `/v1/identify`, `/v1/track`, `/v1/page`, `/v1/alias`, `/v1/batch`.

Authenticated with the workspace's public write key as the HTTP Basic username (what Segment's
libraries send) or a private write key. A 200 means every accepted call is committed.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from pydantic import ValidationError

from api.deps import SessionDep, Tracker
from api.errors import ApiError
from core.tenancy import Principal
from ingest.segment import (
    MAX_BATCH_BYTES,
    MAX_BATCH_CALLS,
    AliasCall,
    BatchRequest,
    BatchResponse,
    Call,
    IdentifyCall,
    PageCall,
    TrackCall,
    TrackingResponse,
)
from ingest.tracking import apply_calls, describe, parse_calls
from models.base import utcnow

router = APIRouter(prefix="/v1", tags=["tracking"])


async def _single(session: SessionDep, principal: Principal, call: Call) -> TrackingResponse:
    outcome = await apply_calls(session, principal.workspace_id, [(0, call)], utcnow())
    if outcome.rejected:
        await session.rollback()
        raise ApiError(422, "invalid_call", outcome.rejected[0].reason)
    await session.commit()
    return TrackingResponse()


@router.post("/identify", response_model=TrackingResponse)
async def identify(call: IdentifyCall, principal: Tracker, session: SessionDep) -> TrackingResponse:
    """Create or update the profile with `traits` (merged, typed). With both `anonymousId` and
    `userId`, the anonymous profile is merged into the known one."""
    return await _single(session, principal, call)


@router.post("/track", response_model=TrackingResponse)
async def track(call: TrackCall, principal: Tracker, session: SessionDep) -> TrackingResponse:
    """Record an event. `properties.revenue` (or `value`) and `currency` are its value."""
    return await _single(session, principal, call)


@router.post("/page", response_model=TrackingResponse)
async def page(call: PageCall, principal: Tracker, session: SessionDep) -> TrackingResponse:
    """Record a page view as a "Viewed Page" event carrying the URL."""
    return await _single(session, principal, call)


@router.post("/alias", response_model=TrackingResponse)
async def alias(call: AliasCall, principal: Tracker, session: SessionDep) -> TrackingResponse:
    """Merge `previousId`'s profile into `userId`'s."""
    return await _single(session, principal, call)


@router.post(
    "/batch",
    response_model=BatchResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BatchRequest.model_json_schema()}},
        }
    },
    responses={400: {}, 413: {}},
)
async def batch(request: Request, principal: Tracker, session: SessionDep) -> BatchResponse:
    """Up to 2,000 calls and 500 KB. Good calls are stored; bad ones are listed by index."""
    body = await _read_limited(request, MAX_BATCH_BYTES)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        if len(payload["batch"]) > MAX_BATCH_CALLS:
            raise ApiError(413, "batch_too_large", f"a batch holds at most {MAX_BATCH_CALLS} calls")
    try:
        request_body = BatchRequest.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(400, "invalid_batch", describe(exc)) from None
    calls, rejected = parse_calls(request_body.batch)
    outcome = await apply_calls(
        session, principal.workspace_id, calls, utcnow(), request_body.sentAt
    )
    await session.commit()
    rejected = sorted([*rejected, *outcome.rejected], key=lambda r: r.index)
    return BatchResponse(accepted=outcome.accepted, rejected=rejected)


async def _read_limited(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, "batch_too_large", f"a batch is at most {limit // 1024} KB")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
