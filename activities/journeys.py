"""Journey activities: everything a journey does outside its workflow (definitions, filters,
the journeys index, step outcomes, profile/list/tag changes, webhooks, alerts, delay times).

Each is safe to retry: writes are keyed (`journeys.id`, `journey_steps (journey_id, key)`, the
step's key in `processed_calls` for profile changes) or idempotent by nature (list add/remove,
tag add/remove are set operations). Heavy modules are imported when an activity runs: the
workflow sandbox imports this module for its method references.

Tags: `profiles.properties["tags"]`, a JSON list of distinct strings, changed with one set-based
UPDATE (so segments read them as any list property: `tags contains "vip"`).

Webhooks: HTTP POST of JSON, signed `X-Waymark-Signature: t=<unix>,v1=<hex>` where hex is
HMAC-SHA256 over `f"{t}.{body}"` with the workspace's webhook secret
(`webhook_secret(secret_key, workspace_id)`, HMAC-SHA256(secret_key, "webhook:" + workspace)).
Non-2xx and network errors raise, so Temporal retries; the journey catches the final failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

log = structlog.get_logger(__name__)


# --- inputs and results ---------------------------------------------------------------------


class LoadFlowVersionInput(BaseModel):
    flow_id: uuid.UUID
    version: int


class LoadFlowVersionResult(BaseModel):
    definition: dict[str, Any]
    flow_name: str = ""
    status: str | None = None  # the flow's status now (None: the flow is gone)
    live_version: int | None = None


class EvaluateInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    condition: dict[str, Any]
    since: datetime | None = None


class EvaluateResult(BaseModel):
    matches: bool


class RegisterJourneyInput(BaseModel):
    journey_id: uuid.UUID
    workspace_id: uuid.UUID
    flow_id: uuid.UUID
    version: int
    profile_id: uuid.UUID
    workflow_id: str
    started_at: datetime


class RegisterJourneyResult(BaseModel):
    status: str  # "active" for a new (or this same running) journey, else how it ended


class EndJourneyInput(BaseModel):
    journey_id: uuid.UUID
    status: Literal["completed", "removed", "exited"]
    reason: str | None = None
    ended_at: datetime


class RecordStepInput(BaseModel):
    journey_id: uuid.UUID
    workspace_id: uuid.UUID
    flow_id: uuid.UUID
    version: int
    step_id: str
    outcome: Literal["entered", "completed", "skipped", "failed"]
    reason: str | None = None
    key: str  # unique per journey: a retried activity writes one row
    occurred_at: datetime


class UpdateProfileInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    key: str
    properties: list[dict[str, Any]] = Field(default_factory=list)  # PropertyUpdate dumps
    consents: list[dict[str, Any]] = Field(default_factory=list)  # ConsentUpdate dumps
    now: datetime


class StepActionResult(BaseModel):
    changed: bool = True
    reason: str | None = None  # why nothing changed (already applied, profile gone, ...)


class ListActionInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    list_id: uuid.UUID
    action: Literal["add", "remove"]
    flow_id: uuid.UUID


class TagActionInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    tag: str
    action: Literal["add", "remove"]


class SendWebhookInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    timeout_seconds: int = 10
    journey_id: uuid.UUID
    flow_id: uuid.UUID
    step_id: str
    event: dict[str, Any] | None = None


class SendWebhookResult(BaseModel):
    status_code: int


class SendAlertInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    flow_id: uuid.UUID
    journey_id: uuid.UUID
    step_id: str
    channel: Literal["email", "webhook"]
    to: str
    message: str


class ResolveDelayInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    entered_at: datetime
    until_time: dict[str, Any] | None = None  # UntilTime dump
    until_date: dict[str, Any] | None = None  # UntilDate dump


class ResolveDelayResult(BaseModel):
    wake_at: datetime | None = None
    reason: str | None = None  # when there is no wake-up time (e.g. the date is missing)


def webhook_secret(secret_key: str, workspace_id: uuid.UUID) -> bytes:
    return hmac.new(secret_key.encode(), f"webhook:{workspace_id}".encode(), "sha256").digest()


def sign_webhook(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


_TAGS = text(
    """
    UPDATE profiles SET properties = jsonb_set(properties, '{tags}', (
        SELECT coalesce(jsonb_agg(DISTINCT t ORDER BY t), '[]'::jsonb) FROM (
            SELECT jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(properties->'tags') = 'array'
                     THEN properties->'tags' ELSE '[]'::jsonb END) AS t
            UNION SELECT CAST(:tag AS text) WHERE :add
        ) tags WHERE :add OR t <> CAST(:tag AS text)
    )), updated_at = now()
    WHERE id = :id AND workspace_id = :ws
    RETURNING id
    """
)

_NUMBER = text(
    """
    UPDATE profiles SET properties = jsonb_set(properties, CAST(:path AS text[]), to_jsonb(
        coalesce(CASE WHEN jsonb_typeof(properties->:name) = 'number'
                      THEN (properties->>:name)::numeric END, 0) + CAST(:delta AS numeric))),
        updated_at = now()
    WHERE id = :id AND workspace_id = :ws
    """
)


class JourneyActivities:
    def __init__(self, engine: AsyncEngine, settings: Any) -> None:
        self.engine = engine
        self.settings = settings

    def all(self) -> list[Any]:
        """Every journey activity, bound (what the worker registers)."""
        return [
            self.load_flow_version, self.evaluate, self.register_journey, self.end_journey,
            self.record_step, self.update_profile, self.list_action, self.tag_action,
            self.send_webhook, self.send_alert, self.resolve_delay,
        ]  # fmt: skip

    @activity.defn
    async def load_flow_version(self, input: LoadFlowVersionInput) -> LoadFlowVersionResult:
        from core.db import session_scope

        async with session_scope(self.engine) as session:
            row = (
                await session.execute(
                    text(
                        "SELECT v.definition, f.name, f.status, f.live_version "
                        "FROM flow_versions v LEFT JOIN flows f ON f.id = v.flow_id "
                        "WHERE v.flow_id = :flow AND v.version = :version"
                    ),
                    {"flow": input.flow_id, "version": input.version},
                )
            ).one_or_none()
        if row is None:
            raise ApplicationError(
                f"flow {input.flow_id} has no version {input.version}",
                type="FlowVersionMissing",
                non_retryable=True,
            )
        return LoadFlowVersionResult(
            definition=row.definition,
            flow_name=row.name or "",
            status=row.status,
            live_version=row.live_version,
        )

    @activity.defn
    async def evaluate(self, input: EvaluateInput) -> EvaluateResult:
        from core.db import session_scope
        from segments import condition_adapter, evaluate_profile

        condition = condition_adapter.validate_python(input.condition)
        async with session_scope(self.engine) as session:
            now = (await session.execute(text("SELECT now()"))).scalar_one()
            matches = await evaluate_profile(
                session, input.workspace_id, condition, input.profile_id, now=now, since=input.since
            )
        return EvaluateResult(matches=matches)

    @activity.defn
    async def register_journey(self, input: RegisterJourneyInput) -> RegisterJourneyResult:
        from core.db import session_scope

        async with session_scope(self.engine) as session:
            await session.execute(
                text(
                    "INSERT INTO journeys (id, workspace_id, flow_id, flow_version, profile_id, "
                    "workflow_id, status, started_at) VALUES (:id, :ws, :flow, :version, "
                    ":profile, :wf, 'active', :started) ON CONFLICT (id) DO NOTHING"
                ),
                {
                    "id": input.journey_id,
                    "ws": input.workspace_id,
                    "flow": input.flow_id,
                    "version": input.version,
                    "profile": input.profile_id,
                    "wf": input.workflow_id,
                    "started": input.started_at,
                },
            )
            status = (
                await session.execute(
                    text("SELECT status FROM journeys WHERE id = :id"), {"id": input.journey_id}
                )
            ).scalar_one()
        return RegisterJourneyResult(status=status)

    @activity.defn
    async def end_journey(self, input: EndJourneyInput) -> None:
        from core.db import session_scope

        async with session_scope(self.engine) as session:
            await session.execute(
                text(
                    "UPDATE journeys SET status = :status, end_reason = :reason, "
                    "ended_at = :ended WHERE id = :id AND status = 'active'"
                ),
                {
                    "id": input.journey_id,
                    "status": input.status,
                    "reason": (input.reason or None) and input.reason[:255],
                    "ended": input.ended_at,
                },
            )

    @activity.defn
    async def record_step(self, input: RecordStepInput) -> None:
        from core.db import session_scope

        params = {
            "journey": input.journey_id,
            "ws": input.workspace_id,
            "flow": input.flow_id,
            "version": input.version,
            "step": input.step_id,
            "outcome": input.outcome,
            "reason": input.reason and input.reason[:255],
            "key": input.key[:255],
            "at": input.occurred_at,
        }
        async with session_scope(self.engine) as session:
            await session.execute(
                text(
                    "INSERT INTO journey_steps (journey_id, workspace_id, flow_id, flow_version, "
                    "step_id, outcome, reason, key, occurred_at) VALUES (:journey, :ws, :flow, "
                    ":version, :step, :outcome, :reason, :key, :at) "
                    "ON CONFLICT (journey_id, key) DO NOTHING"
                ),
                params,
            )
            if input.outcome == "entered":
                await session.execute(
                    text(
                        "UPDATE journeys SET current_step = :step, flow_version = :version "
                        "WHERE id = :journey"
                    ),
                    params,
                )

    async def _first_time(self, session: Any, workspace_id: uuid.UUID, key: str) -> bool:
        """Marks `key` done (in the caller's transaction); False when it already was."""
        done = await session.execute(
            text(
                "INSERT INTO processed_calls (workspace_id, message_id) VALUES (:ws, :key) "
                "ON CONFLICT DO NOTHING RETURNING message_id"
            ),
            {"ws": workspace_id, "key": key[:255]},
        )
        return done.first() is not None

    @activity.defn
    async def update_profile(self, input: UpdateProfileInput) -> StepActionResult:
        from core.db import session_scope
        from ingest.consents import ConsentUpdate, apply_consents
        from ingest.profiles import ProfileDataError, write_profile
        from models import Channel, ConsentSource, ConsentState

        async with session_scope(self.engine) as session:
            exists = (
                await session.execute(
                    text("SELECT 1 FROM profiles WHERE id = :id AND workspace_id = :ws"),
                    {"id": input.profile_id, "ws": input.workspace_id},
                )
            ).first()
            if exists is None:
                return StepActionResult(changed=False, reason="profile_deleted")
            if not await self._first_time(session, input.workspace_id, input.key):
                return StepActionResult(changed=False, reason="already_applied")
            data: dict[str, Any] = {}
            for update in input.properties:
                name, op, value = update["property"], update.get("op", "set"), update.get("value")
                if op == "set":
                    data[name] = value
                elif op == "clear":
                    data[name] = None
                elif op == "set_now":
                    data[name] = input.now.isoformat()
                else:
                    delta = value if value is not None else 1
                    await session.execute(
                        _NUMBER,
                        {
                            "path": [name],
                            "name": name,
                            "delta": -delta if op == "decrement" else delta,
                            "id": input.profile_id,
                            "ws": input.workspace_id,
                        },
                    )
            if data:
                try:
                    await write_profile(
                        session, input.workspace_id, data, profile_id=input.profile_id
                    )
                except ProfileDataError as exc:
                    raise ApplicationError(
                        f"profile update refused: {exc}",
                        type="ProfileDataError",
                        non_retryable=True,
                    ) from None
            consents = [
                ConsentUpdate(
                    input.profile_id,
                    Channel(c["channel"]),
                    ConsentState.subscribed
                    if c["action"] == "grant"
                    else ConsentState.unsubscribed,
                    ConsentSource.flow,
                )
                for c in input.consents
            ]
            await apply_consents(session, input.workspace_id, consents)
        return StepActionResult()

    @activity.defn
    async def list_action(self, input: ListActionInput) -> StepActionResult:
        from core.db import session_scope
        from ingest.lists import add_members, remove_members

        act = add_members if input.action == "add" else remove_members
        async with session_scope(self.engine) as session:
            changed = await act(
                session, input.workspace_id, input.list_id, [input.profile_id], "flow"
            )
        return StepActionResult(changed=bool(changed), reason=None if changed else "no_change")

    @activity.defn
    async def tag_action(self, input: TagActionInput) -> StepActionResult:
        from core.db import session_scope

        async with session_scope(self.engine) as session:
            row = await session.execute(
                _TAGS,
                {
                    "tag": input.tag,
                    "add": input.action == "add",
                    "id": input.profile_id,
                    "ws": input.workspace_id,
                },
            )
            found = row.first() is not None
        return StepActionResult(changed=found, reason=None if found else "profile_deleted")

    async def _post(
        self, workspace_id: uuid.UUID, url: str, payload: Any, headers: dict, timeout: float
    ) -> int:
        import httpx

        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        secret = webhook_secret(self.settings.secret_key, workspace_id)
        signed = {
            **headers,
            "Content-Type": "application/json",
            "User-Agent": "Waymark-Webhook/1",
            "X-Waymark-Signature": sign_webhook(secret, body, int(time.time())),
        }
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
                response = await http.post(url, content=body, headers=signed)
        except httpx.HTTPError as exc:
            raise ApplicationError(
                f"webhook {url}: {type(exc).__name__}: {exc}", type="WebhookError"
            ) from exc
        if not 200 <= response.status_code < 300:
            raise ApplicationError(
                f"webhook {url} answered {response.status_code}",
                type="WebhookError",
                non_retryable=400 <= response.status_code < 500
                and response.status_code not in (408, 429),
            )
        return response.status_code

    @activity.defn
    async def send_webhook(self, input: SendWebhookInput) -> SendWebhookResult:
        payload = (
            input.body
            if input.body is not None
            else {
                "profile_id": str(input.profile_id),
                "flow_id": str(input.flow_id),
                "journey_id": str(input.journey_id),
                "step_id": input.step_id,
                "event": input.event,
            }
        )
        status = await self._post(
            input.workspace_id, input.url, payload, input.headers, input.timeout_seconds
        )
        return SendWebhookResult(status_code=status)

    @activity.defn
    async def send_alert(self, input: SendAlertInput) -> StepActionResult:
        """`webhook`: a signed POST of the alert to `to`. `email`: logged as a staff alert
        (structured log `flow alert`, picked up by log-based alerting) — staff email delivery
        through the channel providers is not wired yet."""
        alert = {
            "type": "flow_alert",
            "message": input.message,
            "workspace_id": str(input.workspace_id),
            "flow_id": str(input.flow_id),
            "journey_id": str(input.journey_id),
            "profile_id": str(input.profile_id),
            "step_id": input.step_id,
        }
        if input.channel == "webhook":
            await self._post(input.workspace_id, input.to, alert, {}, 10)
        else:
            log.warning("flow alert", to=input.to, **alert)
        return StepActionResult()

    @activity.defn
    async def resolve_delay(self, input: ResolveDelayInput) -> ResolveDelayResult:
        from core.db import session_scope
        from flows import runtime_time as rt

        async with session_scope(self.engine) as session:
            row = (
                await session.execute(
                    text(
                        "SELECT p.timezone, p.properties, w.timezone AS ws_tz FROM workspaces w "
                        "LEFT JOIN profiles p ON p.id = :id AND p.workspace_id = w.id "
                        "WHERE w.id = :ws"
                    ),
                    {"id": input.profile_id, "ws": input.workspace_id},
                )
            ).one()
        if (spec := input.until_time) is not None:
            name = row.timezone if spec.get("timezone", "profile") == "profile" else row.ws_tz
            tz = rt.zone(name, row.ws_tz or "UTC")
            wake = rt.next_time_of_day(input.entered_at, spec["time"], spec.get("weekdays"), tz)
            return ResolveDelayResult(wake_at=wake)
        spec = input.until_date or {}
        tz = rt.zone(row.timezone, row.ws_tz or "UTC")
        value = (row.properties or {}).get(spec.get("property", ""))
        wake = rt.date_property_time(
            value, spec.get("offset_days", 0), spec.get("time", "09:00"), tz
        )
        if wake is None:
            return ResolveDelayResult(reason="date_property_missing")
        return ResolveDelayResult(wake_at=wake)
