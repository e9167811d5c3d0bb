"""The condition language: pydantic models of every node, with one JSON (and YAML) shape.

A condition is a tree. Groups: `{"all": [...]}` (AND), `{"any": [...]}` (OR), `{"not": {...}}`.
Leaves carry a `type`:

    {"type": "behaviour", "metric": "Placed Order",
     "where": [{"property": "$value", "op": "gt", "value": 100}],
     "count": {"op": "at_least", "value": 2}   # or "sum": {...} or "last": {...}
     "timeframe": {"kind": "in_last", "amount": 5, "unit": "days"}}
    {"type": "property", "property": "plan", "op": "eq", "value": "gold"}
    {"type": "list_membership", "op": "in", "list_id": "..."}
    {"type": "segment_membership", "op": "not_in", "segment_id": "..."}
    {"type": "consent", "channel": "email", "op": "can_receive"}      # cannot_receive,
    {"type": "consent", "channel": "sms", "op": "subscribed_within", "days": 7}
    {"type": "engagement", "action": "opened", "channel": "email", "days": 30}
    {"type": "location", "op": "within", "latitude": 52.2, "longitude": 21.0, "km": 50}
    {"type": "location", "op": "country_in", "countries": ["PL"]}       # or phone_country_in
    {"type": "sms_keyword", "keywords": ["JOIN", "JION"], "days": 30}
    {"type": "language", "languages": ["pl", "en-GB"]}
    {"type": "random_sample", "percent": 10, "offset": 0, "salt": "ab-test-1"}

The meaning of every leaf is written once, in `segments.reference` (plain Python), and compiled
to SQL in `segments.compile*`; property tests hold the two together.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from channels.metrics import CLICKED, OPENED, RECEIVED
from models import Channel

MAX_DEPTH = 8  # the root is depth 1
MAX_NODES = 100  # groups and leaves


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _aware(value: datetime) -> datetime:
    """Naive datetimes (and plain dates) are read as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]


# --- Timeframes ---------------------------------------------------------------------------


class AllTime(_Node):
    kind: Literal["all_time"] = "all_time"


class InLast(_Node):
    """occurred_at > now - amount units."""

    kind: Literal["in_last"] = "in_last"
    amount: int = Field(ge=0, le=100_000)
    unit: Literal["minutes", "hours", "days"] = "days"


class Between(_Node):
    """start <= occurred_at < end."""

    kind: Literal["between"] = "between"
    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Between:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Before(_Node):
    """occurred_at < at."""

    kind: Literal["before"] = "before"
    at: UtcDatetime


class After(_Node):
    """occurred_at > at."""

    kind: Literal["after"] = "after"
    at: UtcDatetime


class SinceFlowStart(_Node):
    """occurred_at >= the reference time the caller gives (`since`): flows only."""

    kind: Literal["since_flow_start"] = "since_flow_start"


Timeframe = Annotated[
    AllTime | InLast | Between | Before | After | SinceFlowStart, Field(discriminator="kind")
]

# --- Behaviour ----------------------------------------------------------------------------

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat


class EventOp(enum.StrEnum):
    eq = "eq"
    in_ = "in"
    contains = "contains"
    starts_with = "starts_with"
    gt = "gt"
    gte = "gte"
    lt = "lt"
    lte = "lte"
    is_set = "is_set"
    is_not_set = "is_not_set"


NUMBER_OPS = {"gt", "gte", "lt", "lte"}
STRING_OPS = {"contains", "starts_with"}
NO_VALUE_OPS = {"is_set", "is_not_set", "anniversary", "in_last_days", "in_next_days"}


def _check_value(op: str, value: Any) -> Any:
    """The operand must suit the operator: shared by event filters and property conditions."""
    if op in NO_VALUE_OPS:
        if value is not None:
            raise ValueError(f"'{op}' takes no value")
        return value
    if value is None:
        raise ValueError(f"'{op}' needs a value")
    if op in NUMBER_OPS and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"'{op}' compares numbers: give a number")
    if op in STRING_OPS and not isinstance(value, str):
        raise ValueError(f"'{op}' compares strings: give a string")
    if op == "eq" and isinstance(value, list):
        raise ValueError("'eq' takes one value (use 'in' for several)")
    if op == "in":
        if not isinstance(value, list) or not value:
            raise ValueError("'in' takes a non-empty list")
        kinds = {
            "number" if isinstance(v, int | float) and not isinstance(v, bool) else type(v).__name__
            for v in value
        }
        if len(kinds) != 1 or kinds & {"bool"}:
            raise ValueError("'in' takes a list of strings or a list of numbers")
    if op in ("before", "after"):
        if not isinstance(value, str) or parse_instant(value) is None:
            raise ValueError(f"'{op}' takes an ISO date or datetime, e.g. 2026-01-31")
    if op == "list_contains" and isinstance(value, list):
        raise ValueError("'list_contains' takes one value")
    return value


def parse_instant(text: str) -> datetime | None:
    """An ISO date or datetime as an aware datetime (dates: midnight UTC; naive: UTC)."""
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


class EventFilter(_Node):
    """A test on the event: `$value` is the event's value column, any other name a property."""

    property: str = Field(min_length=1, max_length=255)
    op: EventOp
    value: Scalar | list[Scalar] | None = Field(default=None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:
            return value
        _check_value(op, value)
        if info.data.get("property") == "$value" and (
            op in STRING_OPS
            or isinstance(value, str | bool)
            or (isinstance(value, list) and isinstance(value[0], str))
        ):
            raise ValueError("$value is a number: compare it with numbers")
        return value


class CountOp(enum.StrEnum):
    zero = "zero"
    at_least = "at_least"
    at_most = "at_most"
    equals = "equals"
    greater_than = "greater_than"
    less_than = "less_than"


class Count(_Node):
    op: CountOp = CountOp.at_least
    value: int | None = Field(default=None, ge=0, le=1_000_000, validate_default=True)

    @field_validator("value")
    @classmethod
    def _value(cls, value: int | None, info: ValidationInfo) -> int | None:
        op = info.data.get("op")
        if op is not None and (op == CountOp.zero) != (value is None):
            raise ValueError("'zero' takes no value" if value is not None else f"'{op}' needs N")
        return value


class Sum(_Node):
    """The sum of the events' value (0 when there are none) compared with `value`."""

    op: Literal["gt", "gte", "lt", "lte", "eq"]
    value: Number


class LastDid(_Node):
    """The most recent occurrence was more (or less) than `days` days ago; never = no match."""

    op: Literal["more_than", "less_than"]
    days: int = Field(ge=0, le=100_000)


class Behaviour(_Node):
    type: Literal["behaviour"] = "behaviour"
    metric: str = Field(min_length=1, max_length=255)
    where: list[EventFilter] = Field(default_factory=list, max_length=20)
    count: Count | None = None
    sum: Sum | None = None
    last: LastDid | None = None
    timeframe: Timeframe = Field(default_factory=AllTime)

    @model_validator(mode="after")
    def _one_measure(self) -> Behaviour:
        given = [m for m in (self.count, self.sum, self.last) if m is not None]
        if len(given) > 1:
            raise ValueError("give one of count, sum or last")
        if self.last is not None and self.timeframe.kind != "all_time":
            raise ValueError("'last' looks at all time: leave timeframe out")
        if not given:
            object.__setattr__(self, "count", Count(op=CountOp.at_least, value=1))
        return self


# --- Profile properties -------------------------------------------------------------------


class PropertyOp(enum.StrEnum):
    eq = "eq"
    in_ = "in"
    contains = "contains"
    starts_with = "starts_with"
    gt = "gt"
    gte = "gte"
    lt = "lt"
    lte = "lte"
    before = "before"
    after = "after"
    in_last_days = "in_last_days"
    in_next_days = "in_next_days"
    anniversary = "anniversary"
    list_contains = "list_contains"
    is_set = "is_set"
    is_not_set = "is_not_set"


DATE_OPS = {"before", "after", "in_last_days", "in_next_days", "anniversary"}


class PropertyCondition(_Node):
    type: Literal["property"] = "property"
    property: str = Field(min_length=1, max_length=255)
    op: PropertyOp
    value: Scalar | list[Scalar] | None = Field(default=None, validate_default=True)
    days: int | None = Field(default=None, ge=0, le=100_000, validate_default=True)

    @field_validator("value")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        return value if op is None else _check_value(op, value)

    @field_validator("days")
    @classmethod
    def _days(cls, days: int | None, info: ValidationInfo) -> int | None:
        op = info.data.get("op")
        if op in ("in_last_days", "in_next_days") and days is None:
            raise ValueError(f"'{op}' needs days")
        if op is not None and op not in ("in_last_days", "in_next_days") and days is not None:
            raise ValueError(f"'{op}' takes no days")
        return days


# --- Membership, consent, engagement, location, messages, sampling -------------------------


class ListMembership(_Node):
    type: Literal["list_membership"] = "list_membership"
    op: Literal["in", "not_in"] = "in"
    list_id: uuid.UUID


class SegmentMembership(_Node):
    """Reads the segment's materialized members (segment_members), not its definition."""

    type: Literal["segment_membership"] = "segment_membership"
    op: Literal["in", "not_in"] = "in"
    segment_id: uuid.UUID


class ConsentCondition(_Node):
    type: Literal["consent"] = "consent"
    channel: Channel
    op: Literal["can_receive", "cannot_receive", "subscribed_within"] = "can_receive"
    days: int | None = Field(default=None, ge=0, le=100_000)

    @model_validator(mode="after")
    def _days(self) -> ConsentCondition:
        if (self.op == "subscribed_within") != (self.days is not None):
            raise ValueError("days goes with (and only with) op 'subscribed_within'")
        return self


class Engagement(_Node):
    type: Literal["engagement"] = "engagement"
    action: Literal["received", "opened", "clicked"]
    channel: Channel
    days: int | None = Field(default=None, ge=0, le=100_000)  # None: ever

    @model_validator(mode="after")
    def _known_metric(self) -> Engagement:
        if engagement_metric(self.action, self.channel) is None:
            raise ValueError(f"no '{self.action}' events exist on {self.channel}")
        return self


def engagement_metric(action: str, channel: Channel) -> str | None:
    """The event metric that records `action` on `channel` (channels.metrics), if any."""
    return {"received": RECEIVED, "opened": OPENED, "clicked": CLICKED}[action].get(channel)


_EXTRA_COUNTRIES = {"AQ", "BV", "GS", "HM", "PN", "TF", "UM"}  # countries without phones
CountryCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]


class Location(_Node):
    type: Literal["location"] = "location"
    op: Literal["within", "country_in", "phone_country_in"]
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    km: float | None = Field(default=None, gt=0, le=20_100)
    countries: list[CountryCode] | None = Field(default=None, min_length=1, max_length=300)

    @model_validator(mode="after")
    def _fields(self) -> Location:
        point = (self.latitude, self.longitude, self.km)
        if self.op == "within" and (None in point or self.countries is not None):
            raise ValueError("'within' takes latitude, longitude and km")
        if self.op != "within" and (self.countries is None or point != (None, None, None)):
            raise ValueError(f"'{self.op}' takes countries")
        return self

    @field_validator("countries")
    @classmethod
    def _countries(cls, countries: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if countries is None:
            return None
        countries = [c.upper() for c in countries]
        for country in countries:
            if phonenumbers.country_code_for_region(country) == 0 and (
                info.data.get("op") == "phone_country_in" or country not in _EXTRA_COUNTRIES
            ):
                raise ValueError(f"unknown country code '{country}'")
        return countries


class SmsKeyword(_Node):
    """Sent one of `keywords` (alternative spellings; case and surrounding spaces ignored)."""

    type: Literal["sms_keyword"] = "sms_keyword"
    keywords: list[Annotated[str, Field(min_length=1, max_length=160)]] = Field(
        min_length=1, max_length=50
    )
    channel: Literal["sms", "whatsapp"] = "sms"
    days: int | None = Field(default=None, ge=0, le=100_000)  # None: ever


class Language(_Node):
    """Profile locale is one of `languages`: "pl" matches "pl" and "pl-PL"; case ignored."""

    type: Literal["language"] = "language"
    languages: list[Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")]] = (
        Field(min_length=1, max_length=100)
    )


class RandomSample(_Node):
    """Profiles whose bucket (0..99, see `segments.reference.bucket`) is in
    [offset, offset + percent)."""

    type: Literal["random_sample"] = "random_sample"
    percent: int = Field(ge=0, le=100)
    offset: int = Field(default=0, ge=0, le=99)
    salt: str = Field(default="", max_length=64)

    @model_validator(mode="after")
    def _range(self) -> RandomSample:
        if self.offset + self.percent > 100:
            raise ValueError("offset + percent must be at most 100")
        return self


# --- Groups and the union -----------------------------------------------------------------


class AllOf(_Node):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Node):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Node):
    not_: Condition = Field(alias="not")


Leaf = (
    Behaviour
    | PropertyCondition
    | ListMembership
    | SegmentMembership
    | ConsentCondition
    | Engagement
    | Location
    | SmsKeyword
    | Language
    | RandomSample
)
LEAF_TYPES = {
    "behaviour": Behaviour,
    "property": PropertyCondition,
    "list_membership": ListMembership,
    "segment_membership": SegmentMembership,
    "consent": ConsentCondition,
    "engagement": Engagement,
    "location": Location,
    "sms_keyword": SmsKeyword,
    "language": Language,
    "random_sample": RandomSample,
}
GROUP_TAGS = {"all": "all_group", "any": "any_group", "not": "not_group"}


def node_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        for key, tag in GROUP_TAGS.items():
            if key in value:
                return tag
        kind = value.get("type")
        return kind if isinstance(kind, str) else None
    if isinstance(value, AllOf | AnyOf | NotOf):
        return {AllOf: "all_group", AnyOf: "any_group", NotOf: "not_group"}[type(value)]
    return getattr(value, "type", None)


Condition = Annotated[
    Annotated[AllOf, Tag("all_group")]
    | Annotated[AnyOf, Tag("any_group")]
    | Annotated[NotOf, Tag("not_group")]
    | Annotated[Behaviour, Tag("behaviour")]
    | Annotated[PropertyCondition, Tag("property")]
    | Annotated[ListMembership, Tag("list_membership")]
    | Annotated[SegmentMembership, Tag("segment_membership")]
    | Annotated[ConsentCondition, Tag("consent")]
    | Annotated[Engagement, Tag("engagement")]
    | Annotated[Location, Tag("location")]
    | Annotated[SmsKeyword, Tag("sms_keyword")]
    | Annotated[Language, Tag("language")]
    | Annotated[RandomSample, Tag("random_sample")],
    Discriminator(
        node_tag,
        custom_error_type="unknown_condition",
        custom_error_message="not a condition: give all, any, not, or a known type",
    ),
]

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()

condition_adapter: TypeAdapter[Condition] = TypeAdapter(Condition)


def dump_condition(condition: Condition) -> dict[str, Any]:
    """The JSON form (what `condition_adapter.validate_python` reads back)."""
    return condition_adapter.dump_python(condition, mode="json", by_alias=True, exclude_none=True)


def condition_json_schema() -> dict[str, Any]:
    return condition_adapter.json_schema(by_alias=True)


def children(node: Condition) -> list[tuple[str, Condition]]:
    """A group's children with their path step (`all[0]`, `not`); leaves have none."""
    if isinstance(node, AllOf):
        return [(f"all[{i}]", c) for i, c in enumerate(node.all)]
    if isinstance(node, AnyOf):
        return [(f"any[{i}]", c) for i, c in enumerate(node.any)]
    if isinstance(node, NotOf):
        return [("not", node.not_)]
    return []


def walk(node: Condition, path: str = "") -> list[tuple[str, Condition]]:
    """Every node with its path, parents first. Paths: `all[1].any[0]`; the root is ""."""
    out = [(path, node)]
    for step, child in children(node):
        out.extend(walk(child, f"{path}.{step}" if path else step))
    return out
