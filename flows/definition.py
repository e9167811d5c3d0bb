"""A flow definition: one trigger, settings, and a graph of steps with stable ids.

The same shape is the API's JSON body, the JSON Schema served for editors and the YAML of flows
as code. Steps point to the next step by id (`next`, `yes`/`no`, branches); `None` ends the
journey on that path. Graph rules (reachability, no cycles, known ids) live in `flows.validate`,
so a draft with a dangling edge still parses and can be saved and fixed.

New trigger kinds (date, schedule, inactivity, price drop) plug in as another member of
`Trigger`, discriminated by `type`.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models import Channel
from segments.conditions import Condition, EventFilter

StepId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
TimeOfDay = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_BRANCHES = 10
STORED = "stored"  # validation context key: a definition read back from `flow_versions`
Filters = Annotated[list[EventFilter], Field(default_factory=list, max_length=20)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- Triggers -----------------------------------------------------------------------------


class EventTrigger(_Model):
    """A profile did `metric` (optionally only events whose properties pass `where`)."""

    type: Literal["event"] = "event"
    metric: str = Field(min_length=1, max_length=255)
    where: Filters


class ListJoinedTrigger(_Model):
    type: Literal["list_joined"] = "list_joined"
    list_id: uuid.UUID


class SegmentEnteredTrigger(_Model):
    type: Literal["segment_entered"] = "segment_entered"
    segment_id: uuid.UUID


Trigger = Annotated[
    EventTrigger | ListJoinedTrigger | SegmentEnteredTrigger, Field(discriminator="type")
]

# --- Settings -----------------------------------------------------------------------------


class OrderPlacedExit(_Model):
    type: Literal["order_placed"] = "order_placed"
    metric: str = Field(default="Placed Order", min_length=1, max_length=255)


class PageVisitedExit(_Model):
    """A `Viewed Page`-style event whose `url` property equals / contains / matches `value`."""

    type: Literal["page_visited"] = "page_visited"
    op: Literal["equals", "contains", "matches"] = "equals"
    value: str = Field(min_length=1, max_length=2048)

    @model_validator(mode="after")
    def _regex(self) -> PageVisitedExit:
        if self.op == "matches":
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return self


class EventExit(_Model):
    type: Literal["event"] = "event"
    metric: str = Field(min_length=1, max_length=255)
    where: Filters


Exit = Annotated[OrderPlacedExit | PageVisitedExit | EventExit, Field(discriminator="type")]


class FlowSettings(_Model):
    duplicate: Literal["new_instance", "ignore", "restart"] = "new_instance"
    cooldown_days: int | None = Field(default=None, ge=1, le=3650)
    filter: Condition | None = None  # checked at entry and before every step
    exits: list[Exit] = Field(default_factory=list, max_length=20)


# --- Steps --------------------------------------------------------------------------------


class Duration(_Model):
    amount: int = Field(ge=1, le=100_000)
    unit: Literal["seconds", "minutes", "hours", "days"] = "days"

    def seconds(self) -> int:
        return self.amount * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[self.unit]


class UntilTime(_Model):
    """Wait until the next `time` on an allowed weekday, in the profile's (or shop's) zone."""

    time: TimeOfDay
    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    timezone: Literal["profile", "workspace"] = "profile"


class UntilDate(_Model):
    """Wait until the date in profile property `property` plus `offset_days`, at `time`."""

    property: str = Field(min_length=1, max_length=255)
    offset_days: int = Field(default=0, ge=-3650, le=3650)
    time: TimeOfDay = "09:00"


class _Step(_Model):
    id: StepId
    name: str | None = Field(default=None, max_length=255)


class DelayStep(_Step):
    type: Literal["delay"] = "delay"
    duration: Duration | None = None
    until_time: UntilTime | None = None
    until_date: UntilDate | None = None
    next: StepId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DelayStep:
        given = [x for x in (self.duration, self.until_time, self.until_date) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of duration, until_time or until_date")
        return self


class ConditionSplit(_Step):
    type: Literal["condition_split"] = "condition_split"
    condition: Condition
    yes: StepId | None = None
    no: StepId | None = None


class TriggerSplit(_Step):
    """A yes/no split on the properties of the event that started the journey."""

    type: Literal["trigger_split"] = "trigger_split"
    where: list[EventFilter] = Field(min_length=1, max_length=20)
    yes: StepId | None = None
    no: StepId | None = None


class Branch(_Model):
    name: str = Field(min_length=1, max_length=255)
    condition: Condition
    next: StepId | None = None


class MultiSplit(_Step):
    """Ordered branches, first match wins; `otherwise` is "everyone else"."""

    type: Literal["multi_split"] = "multi_split"
    branches: list[Branch] = Field(min_length=1)
    otherwise: StepId | None = None


class WeightedBranch(_Model):
    weight: int = Field(ge=1, le=100)
    next: StepId | None = None
    name: str | None = Field(default=None, max_length=255)


class RandomSplit(_Step):
    type: Literal["random_split"] = "random_split"
    branches: list[WeightedBranch] = Field(min_length=2)


class WaitForEvent(_Step):
    type: Literal["wait_for_event"] = "wait_for_event"
    metric: str = Field(min_length=1, max_length=255)
    where: Filters
    timeout: Duration
    on_event: StepId | None = None
    on_timeout: StepId | None = None


class SendStep(_Step):
    type: Literal["send"] = "send"
    channel: Channel
    template_id: uuid.UUID
    transactional: bool = False
    smart_sending: bool = True
    utm: dict[str, str] = Field(default_factory=dict)
    next: StepId | None = None


class PropertyUpdate(_Model):
    property: str = Field(min_length=1, max_length=255)
    op: Literal["set", "clear", "set_now", "increment", "decrement"] = "set"
    value: Any = None

    @model_validator(mode="after")
    def _value(self) -> PropertyUpdate:
        if self.op == "set" and self.value is None:
            raise ValueError("'set' needs a value")
        if self.op in ("clear", "set_now") and self.value is not None:
            raise ValueError(f"'{self.op}' takes no value")
        if self.op in ("increment", "decrement") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float | None)
        ):
            raise ValueError(f"'{self.op}' takes a number (default 1)")
        return self


class ConsentUpdate(_Model):
    channel: Channel
    action: Literal["grant", "revoke"]


class UpdateProfile(_Step):
    type: Literal["update_profile"] = "update_profile"
    properties: list[PropertyUpdate] = Field(default_factory=list, max_length=50)
    consents: list[ConsentUpdate] = Field(default_factory=list, max_length=4)
    next: StepId | None = None


class ListStep(_Step):
    type: Literal["list"] = "list"
    list_id: uuid.UUID
    action: Literal["add", "remove"] = "add"
    next: StepId | None = None


class TagStep(_Step):
    type: Literal["tag"] = "tag"
    tag: str = Field(min_length=1, max_length=255)
    action: Literal["add", "remove"] = "add"
    next: StepId | None = None


def check_webhook_url(url: str) -> str:
    """`url` if Waymark may POST to it: https, or http only to this machine (localhost), so a
    flow cannot reach plain-http addresses inside the network. Raises ValueError."""
    parts = urlsplit(url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and local)):
        raise ValueError("give an https:// URL (http:// only for localhost)")
    return url


_EMAIL = TypeAdapter(EmailStr)


def _is_email(value: str) -> bool:
    """One plain address (`Name <address>` is refused: only the address would be sent to)."""
    try:
        _EMAIL.validate_python(value)
    except ValidationError:
        return False
    return "<" not in value


class WebhookStep(_Step):
    """HTTP POST `body` (string values may be Jinja templates over `profile` and `event`)."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(max_length=2048)
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    timeout_seconds: int = Field(default=10, ge=1, le=60)
    on_failure: Literal["continue", "stop"] = "continue"
    next: StepId | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_webhook_url(url)


class AlertStep(_Step):
    """Notify staff: an email address (`channel: email`) or a webhook URL (`channel: webhook`,
    the same https rule as a webhook step) in `to`.

    A definition read back from `flow_versions` (`parse_definition`) skips the `to` check, so a
    version published before it keeps loading; the alert activity checks a webhook URL again
    before posting."""

    type: Literal["alert"] = "alert"
    channel: Literal["email", "webhook"] = "email"
    to: str = Field(min_length=1, max_length=2048)
    message: str = Field(min_length=1, max_length=5000)
    next: StepId | None = None

    @model_validator(mode="after")
    def _to(self, info: ValidationInfo) -> AlertStep:
        if (info.context or {}).get(STORED):
            return self
        if self.channel == "webhook":
            try:
                check_webhook_url(self.to)
            except ValueError as exc:
                raise ValueError(f"step '{self.id}': to: {exc}") from None
            return self
        if not _is_email(self.to):
            raise ValueError(
                f"step '{self.id}': to: give the email address alerts go to, like ops@shop.com"
            )
        return self


Step = Annotated[
    DelayStep
    | ConditionSplit
    | TriggerSplit
    | MultiSplit
    | RandomSplit
    | WaitForEvent
    | SendStep
    | UpdateProfile
    | ListStep
    | TagStep
    | WebhookStep
    | AlertStep,
    Field(discriminator="type"),
]


class FlowDefinition(_Model):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=5000)
    trigger: Trigger
    settings: FlowSettings = Field(default_factory=FlowSettings)
    entry: StepId
    steps: list[Step] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _unique_ids(self) -> FlowDefinition:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"step id '{step.id}' is used twice: ids must be unique")
            seen.add(step.id)
        return self


# --- Helpers ------------------------------------------------------------------------------


def successors(step: Step) -> list[StepId | None]:
    """Every outgoing edge of a step, in order (`None`: the journey ends on that path)."""
    match step:
        case ConditionSplit() | TriggerSplit():
            return [step.yes, step.no]
        case MultiSplit():
            return [b.next for b in step.branches] + [step.otherwise]
        case RandomSplit():
            return [b.next for b in step.branches]
        case WaitForEvent():
            return [step.on_event, step.on_timeout]
        case _:
            return [step.next]


def step_map(defn: FlowDefinition) -> dict[str, Step]:
    return {step.id: step for step in defn.steps}


def dump_definition(defn: FlowDefinition) -> dict[str, Any]:
    """The JSON form stored in `flow_versions.definition` (what `parse_definition` reads)."""
    return defn.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_definition(data: Any) -> FlowDefinition:
    """A stored (published) definition: rules added after it was published do not refuse it."""
    return FlowDefinition.model_validate(data, context={STORED: True})


def flow_json_schema() -> dict[str, Any]:
    return FlowDefinition.model_json_schema(by_alias=True)
