"""The Segment tracking spec: the calls (`identify`, `track`, `page`, `alias`) as pydantic models.

Fields are Segment's own camelCase names, so any Segment or RudderStack library or pipeline
posts to Waymark unchanged. Unknown fields are accepted and ignored, as Segment does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_CALLS = 2000
PAGE_METRIC = "Viewed Page"

Id = Annotated[str, Field(min_length=1, max_length=255)]


class Call(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: Id | None = None
    anonymousId: Id | None = None
    messageId: Id | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)

    @field_validator("userId", "anonymousId", mode="before")
    @classmethod
    def _numbers_are_ids(cls, value: Any) -> Any:
        # Segment's libraries accept numeric ids and send them as numbers.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if where := nul_path(data):
            raise ValueError(f"{where}: text may not contain the NUL character (\\u0000)")
        return data

    @field_validator("timestamp", "originalTimestamp", "sentAt")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        try:
            return _utc(value)
        except OverflowError:
            raise ValueError("out of range") from None

    @model_validator(mode="after")
    def _someone(self) -> Call:
        if not (self.userId or self.anonymousId):
            raise ValueError("userId or anonymousId is required")
        return self

    def occurred_at(self, received_at: datetime, batch_sent_at: datetime | None = None) -> datetime:
        """When it happened, corrected for the client's clock as Segment does:
        `timestamp + (receivedAt - sentAt)` when the client said when it sent the call."""
        sent_at = _utc(self.sentAt or batch_sent_at)
        happened = _utc(self.timestamp or self.originalTimestamp)
        if sent_at is None:
            return happened or received_at
        return (happened or sent_at) + (received_at - sent_at)


def _utc(value: datetime | None) -> datetime | None:
    """In UTC (naive means UTC). PostgreSQL takes offsets only up to ±15:59; Python more."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def nul_path(value: Any, path: str = "") -> str | None:
    """Where in a JSON value a NUL character hides (PostgreSQL text cannot hold one), if any."""
    if isinstance(value, str):
        return (path or "value") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here.replace("\x00", "\\u0000")
            if found := nul_path(item, here):
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := nul_path(item, f"{path}[{index}]"):
                return found
    return None


class IdentifyCall(Call):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class TrackCall(Call):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict)


class PageCall(Call):
    type: Literal["page"] = "page"
    name: str | None = Field(default=None, max_length=255)
    category: str | None = Field(default=None, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict)


class AliasCall(Call):
    type: Literal["alias"] = "alias"
    userId: Id
    previousId: Id

    @field_validator("previousId", mode="before")
    @classmethod
    def _numeric_previous(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


AnyCall = Annotated[IdentifyCall | TrackCall | PageCall | AliasCall, Field(discriminator="type")]
any_call = TypeAdapter(AnyCall)


class BatchRequest(BaseModel):
    """`POST /v1/batch`: up to 2,000 calls and 500 KB. Each item has its `type`."""

    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]] = Field(max_length=MAX_BATCH_CALLS)
    sentAt: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)


class Rejected(BaseModel):
    index: int
    reason: str


class TrackingResponse(BaseModel):
    success: bool = True


class BatchResponse(BaseModel):
    success: bool = True
    accepted: int
    rejected: list[Rejected] = []


def event_value(properties: dict[str, Any]) -> Any:
    """A track call's value (revenue): `revenue`, else `value`, else Klaviyo's `$value`."""
    for key in ("revenue", "value", "$value"):
        if key in properties and properties[key] is not None:
            return properties[key]
    return None


def page_properties(call: PageCall) -> dict[str, Any]:
    page = call.context.get("page") if isinstance(call.context.get("page"), dict) else {}
    props = {k: v for k, v in page.items() if k in ("url", "path", "referrer", "title", "search")}
    props.update(call.properties)
    if call.name is not None:
        props.setdefault("name", call.name)
    if call.category is not None:
        props.setdefault("category", call.category)
    return props
