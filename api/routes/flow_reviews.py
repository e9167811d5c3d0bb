"""The review queue of a manual flow: the sends its journeys hold until a person decides.

While a flow is in status `manual`, every send step of its journeys waits here (one row per
journey and step). List the queue (oldest first; filter by step or status), then release one
send, a step's or all of them — the journeys send and go on — or discard them: the journey is
removed (reason `review_discarded`). Deciding twice is harmless: nothing is decided again, and
journeys still waiting on a recorded decision are signalled again. Setting the flow back to
`live` releases everything waiting.

A decision is saved (one UPDATE, committed) before the journeys are signalled, inside the
request, at most 16 at a time: a bulk call over many sends takes a while, and if it fails or
times out after the commit, or answers `signalled` < `decided`, simply repeat it — it is
idempotent and signals again the journeys that have not moved on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import Reader, SessionDep, TemporalDep, Writer
from api.errors import ApiError, not_found
from api.pagination import created_page
from api.routes.flows import _author, _get
from flows import reviews
from models import Profile
from models.journey_reviews import JourneyReview, ReviewStatus

router = APIRouter(prefix="/v1/flows", tags=["flow reviews"])

STEP_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ReviewPublic(BaseModel):
    id: uuid.UUID
    flow_id: uuid.UUID
    flow_version: int
    step_id: str
    journey_id: uuid.UUID
    profile_id: uuid.UUID
    profile_email: str | None = Field(description="The recipient's email, to review by")
    channel: str
    template_id: uuid.UUID
    status: ReviewStatus
    reason: str | None = Field(description="Why it was discarded (review_discarded, exit, …)")
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None


class ReviewPage(BaseModel):
    data: list[ReviewPublic]
    next_cursor: str | None


class ReviewSelection(BaseModel):
    step_id: str | None = Field(
        default=None, pattern=STEP_ID, description="Only this step's sends (default: all)"
    )


class ReviewsDecided(BaseModel):
    decided: int = Field(description="Sends released (or discarded) by this call")
    signalled: int = Field(
        description="Journeys woken: those decided now, and those still waiting on an earlier "
        "decision; fewer than decided when a journey was unreachable (repeat the call)"
    )


def _public(review: JourneyReview, email: str | None) -> ReviewPublic:
    data = ReviewPublic.model_fields.keys() - {"profile_email"}
    return ReviewPublic(profile_email=email, **{k: getattr(review, k) for k in data})


async def _review(session, flow_id: uuid.UUID, review_id: uuid.UUID) -> ReviewPublic:
    row = (
        await session.execute(
            select(JourneyReview, Profile.email)
            .outerjoin(Profile, Profile.id == JourneyReview.profile_id)
            .where(JourneyReview.id == review_id, JourneyReview.flow_id == flow_id)
        )
    ).one_or_none()
    if row is None:
        raise not_found("review")
    return _public(*row)


@router.get("/{flow_id}/reviews", response_model=ReviewPage)
async def list_reviews(
    flow_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    status: ReviewStatus = Query(ReviewStatus.waiting, description="Default: waiting"),
    step_id: Annotated[
        str | None, Query(pattern=STEP_ID, description="Only this step's sends")
    ] = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page"),
) -> ReviewPage:
    """The flow's queue, oldest first."""
    await _get(session, principal.workspace_id, flow_id)
    query = (
        select(JourneyReview, Profile.email)
        .outerjoin(Profile, Profile.id == JourneyReview.profile_id)
        .where(JourneyReview.flow_id == flow_id, JourneyReview.status == status)
    )
    if step_id:
        query = query.where(JourneyReview.step_id == step_id)
    rows, next_cursor = await created_page(session, query, JourneyReview, limit, cursor)
    return ReviewPage(
        data=[_public(review, email) for review, email in rows], next_cursor=next_cursor
    )


@router.get("/{flow_id}/reviews/{review_id}", response_model=ReviewPublic)
async def get_review(
    flow_id: uuid.UUID, review_id: uuid.UUID, principal: Reader, session: SessionDep
) -> ReviewPublic:
    await _get(session, principal.workspace_id, flow_id)
    return await _review(session, flow_id, review_id)


async def _decide_all(
    flow_id, body, principal, session, temporal, decision: reviews.Decision
) -> ReviewsDecided:
    flow = await _get(session, principal.workspace_id, flow_id)
    step_id = body.step_id if body else None
    author = await _author(session, principal)
    decided = await reviews.decide(
        session, flow.workspace_id, flow.id, decision, by=author, step_id=step_id
    )
    await session.commit()
    signalled = await reviews.signal(temporal, decided, decision)
    return ReviewsDecided(decided=sum(d.new for d in decided), signalled=signalled)


@router.post("/{flow_id}/reviews/release", response_model=ReviewsDecided)
async def release_all(
    flow_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
    body: ReviewSelection | None = None,
) -> ReviewsDecided:
    """Release every waiting send of the flow (or of `step_id`): the journeys send and go on.

    The decision is committed first, then each journey is signalled within the request, so a
    call over many sends takes a while. It is idempotent: repeat it after a timeout or an error,
    or when `signalled` is below `decided` (a journey was unreachable); nothing is decided twice,
    and the journeys still waiting are signalled again.
    """
    return await _decide_all(flow_id, body, principal, session, temporal, "released")


@router.post("/{flow_id}/reviews/discard", response_model=ReviewsDecided)
async def discard_all(
    flow_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
    body: ReviewSelection | None = None,
) -> ReviewsDecided:
    """Discard every waiting send of the flow (or of `step_id`): those journeys are removed.

    The decision is committed first, then each journey is signalled within the request, so a
    call over many sends takes a while. It is idempotent: repeat it after a timeout or an error,
    or when `signalled` is below `decided` (a journey was unreachable); nothing is decided twice,
    and the journeys still waiting are signalled again.
    """
    return await _decide_all(flow_id, body, principal, session, temporal, "discarded")


def _already_decided(status: ReviewStatus, decision: reviews.Decision) -> ApiError:
    return ApiError(
        409,
        "review_decided",
        f"this send was {status.value} already; it cannot be {decision}",
    )


async def _decide_one(
    flow_id, review_id, principal, session, temporal, decision: reviews.Decision
) -> ReviewPublic:
    flow = await _get(session, principal.workspace_id, flow_id)
    current = await _review(session, flow.id, review_id)
    if current.status not in (ReviewStatus.waiting, decision):
        raise _already_decided(current.status, decision)
    author = await _author(session, principal)
    decided = await reviews.decide(
        session, flow.workspace_id, flow.id, decision, by=author, review_id=review_id
    )
    await session.commit()
    session.expire_all()  # the row as the UPDATE (or a decision that won the race) left it
    review = await _review(session, flow_id, review_id)
    if not any(d.new for d in decided) and review.status != decision:
        # The other decision landed between the check and the UPDATE, which then matched
        # nothing: answer as if it had come first.
        raise _already_decided(review.status, decision)
    await reviews.signal(temporal, decided, decision)
    return review


@router.post("/{flow_id}/reviews/{review_id}/release", response_model=ReviewPublic)
async def release(
    flow_id: uuid.UUID,
    review_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
) -> ReviewPublic:
    """Release one send: the journey sends it and goes on. Releasing it again is harmless (and
    wakes the journey again if it still waits: repeat it after a timeout or error); a discarded
    one answers 409 `review_decided`, also when the discard came while this call ran."""
    return await _decide_one(flow_id, review_id, principal, session, temporal, "released")


@router.post("/{flow_id}/reviews/{review_id}/discard", response_model=ReviewPublic)
async def discard(
    flow_id: uuid.UUID,
    review_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
) -> ReviewPublic:
    """Discard one send: nothing is sent and the journey is removed (`review_discarded`).
    Discarding it again is harmless (repeat it after a timeout or error); a released one answers
    409 `review_decided`, also when the release came while this call ran."""
    return await _decide_one(flow_id, review_id, principal, session, temporal, "discarded")
