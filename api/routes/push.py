"""Web-push subscriptions: browsers register them with the public write key.

The body is the Push API's `PushSubscription.toJSON()` plus Segment-style ids, so a storefront
snippet posts what the browser hands it. One subscription per endpoint: subscribing an endpoint
again (the same browser, now logged in as someone else) moves it to that profile.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from api.deps import Reader, SessionDep, Tracker
from api.routes.profiles import require_profile
from ingest.identity import resolve_one
from models import PushSubscription

router = APIRouter(tags=["push"])

P256DH_BYTES = 65  # an uncompressed P-256 public key
AUTH_BYTES = 16


def _base64url_bytes(value: str, expected: int) -> str:
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("must be base64url") from None
    if len(decoded) != expected:
        raise ValueError(f"must decode to {expected} bytes, got {len(decoded)}")
    return value


class PushKeys(BaseModel):
    p256dh: str = Field(max_length=255)
    auth: str = Field(max_length=255)

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        return _base64url_bytes(value, P256DH_BYTES)

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        return _base64url_bytes(value, AUTH_BYTES)


class BrowserSubscription(BaseModel):
    """`PushSubscription.toJSON()`; `expirationTime` is accepted and ignored."""

    endpoint: AnyHttpUrl
    keys: PushKeys
    expirationTime: int | float | None = None  # noqa: N815 (the Push API's name)

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.scheme != "https":
            raise ValueError("push endpoints are https URLs")
        if len(str(value)) > 2048:
            raise ValueError("at most 2048 characters")
        return value


class PushSubscribe(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    user_id: str | None = Field(default=None, alias="userId", min_length=1, max_length=255)
    anonymous_id: str | None = Field(
        default=None, alias="anonymousId", min_length=1, max_length=255
    )
    subscription: BrowserSubscription
    user_agent: str | None = Field(default=None, alias="userAgent", max_length=512)

    @model_validator(mode="after")
    def _identified(self) -> PushSubscribe:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("give userId or anonymousId")
        return self


class PushUnsubscribe(BaseModel):
    endpoint: AnyHttpUrl


class PushSubscribed(BaseModel):
    id: uuid.UUID
    endpoint: str


class PushSubscriptionPublic(BaseModel):
    id: uuid.UUID
    endpoint: str
    user_agent: str | None
    created_at: datetime


class PushSubscriptionList(BaseModel):
    data: list[PushSubscriptionPublic]


@router.post(
    "/v1/push/subscriptions",
    response_model=PushSubscribed,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PushSubscribed, "description": "The endpoint was known: updated"}},
)
async def subscribe(
    body: PushSubscribe,
    principal: Tracker,
    session: SessionDep,
    response: Response,
    user_agent: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> PushSubscribed:
    """Store a browser's push subscription for the profile of `userId` / `anonymousId`.

    201 for a new endpoint; 200 when the endpoint was known (its keys and profile are updated).
    """
    profile_id = await resolve_one(
        session, principal.workspace_id, user_id=body.user_id, anonymous_id=body.anonymous_id
    )
    endpoint = str(body.subscription.endpoint)
    values = {
        "profile_id": profile_id,
        "p256dh": body.subscription.keys.p256dh,
        "auth": body.subscription.keys.auth,
        "user_agent": (body.user_agent or user_agent or "")[:512] or None,
    }
    new_id = uuid.uuid4()
    subscription_id = (
        await session.execute(
            insert(PushSubscription)
            .values(id=new_id, workspace_id=principal.workspace_id, endpoint=endpoint, **values)
            .on_conflict_do_update(
                index_elements=[PushSubscription.workspace_id, PushSubscription.endpoint],
                set_=values,
            )
            .returning(PushSubscription.id)
        )
    ).scalar_one()
    await session.commit()
    if subscription_id != new_id:
        response.status_code = status.HTTP_200_OK
    return PushSubscribed(id=subscription_id, endpoint=endpoint)


@router.delete("/v1/push/subscriptions", status_code=status.HTTP_204_NO_CONTENT)
async def unsubscribe(body: PushUnsubscribe, principal: Tracker, session: SessionDep) -> Response:
    """Forget a browser's subscription (after `PushSubscription.unsubscribe()`). Idempotent."""
    await session.execute(
        delete(PushSubscription).where(
            PushSubscription.workspace_id == principal.workspace_id,
            PushSubscription.endpoint == str(body.endpoint),
        )
    )
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/profiles/{profile_id}/push-subscriptions", response_model=PushSubscriptionList)
async def list_push_subscriptions(
    profile_id: uuid.UUID, principal: Reader, session: SessionDep
) -> PushSubscriptionList:
    await require_profile(session, principal.workspace_id, profile_id)
    rows = await session.execute(
        select(PushSubscription)
        .where(
            PushSubscription.profile_id == profile_id,
            PushSubscription.workspace_id == principal.workspace_id,
        )
        .order_by(PushSubscription.created_at)
    )
    return PushSubscriptionList(
        data=[
            PushSubscriptionPublic.model_validate(s, from_attributes=True) for s in rows.scalars()
        ]
    )
