"""Journey activities: everything a journey does outside its workflow (definitions, filters,
the journeys index, step outcomes, profile/list/tag changes, delay times, the review queue of
manual flows). Webhooks and staff alerts are in `activities.journey_actions`.

Each is safe to retry: writes are keyed (`journeys.id`, `journey_steps (journey_id, key)`, the
step's key in `processed_calls` for profile changes, `journey_reviews (journey_id, step_id)`) or
idempotent by nature (list add/remove, tag add/remove are set operations). Heavy modules are
imported when an activity runs: the workflow sandbox imports this module for its method
references.

Tags: `profiles.properties["tags"]`, a JSON list of distinct strings, changed with one set-based
UPDATE (so segments read them as any list property: `tags contains "vip"`).

Review queue (flow status `manual`): `register_review` writes a `waiting` row for a send step
only if the flow is manual *now*, reading the flow row `FOR SHARE`, so it serializes with a
status change (which updates that row): a flow switched to live in the same instant either sees
the row and releases it in its own transaction, or the journey sees `live` and sends at once. It
answers the flow's status (`flow_status`): a journey that got no row sends only when that is
`live` (deleted or draft: it leaves; paused: it holds).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

# Re-exported: webhooks moved to activities.journey_actions.
from activities.journey_actions import sign_webhook, webhook_secret  # noqa: E402, F401

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
    # The flow as read after the journey's row was committed (see `FlowState`).
    live_version: int | None = None
    flow_status: str | None = None


class FlowState(BaseModel):
    """The flow's live version and status as an activity read them: how a journey learns of a
    publish or status change whose signal it missed (`flows.hooks` finds journeys by their
    `journeys` row, so one registered after the hook's query gets no signal)."""

    live_version: int | None = None
    flow_status: str | None = None


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


class RegisterReviewInput(BaseModel):
    workspace_id: uuid.UUID
    flow_id: uuid.UUID
    version: int
    step_id: str
    journey_id: uuid.UUID
    profile_id: uuid.UUID
    channel: str
    template_id: uuid.UUID


class RegisterReviewResult(BaseModel):
    # "send": the flow is not manual (no row); else the row's status: waiting | released |
    # discarded.
    status: str
    review_id: uuid.UUID | None = None
    reason: str | None = None
    # The flow's status, read `FOR SHARE` in the same transaction (None: no such flow): a
    # journey that got no row follows it (deleted/draft: it leaves; paused: it holds; it sends
    # only when live).
    flow_status: str | None = None


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


class ResolveDelayInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    entered_at: datetime
    until_time: dict[str, Any] | None = None  # UntilTime dump
    until_date: dict[str, Any] | None = None  # UntilDate dump


class ResolveDelayResult(BaseModel):
    wake_at: datetime | None = None
    reason: str | None = None  # when there is no wake-up time (e.g. the date is missing)


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
            self.resolve_delay, self.register_review,
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

    async def _flow_state(self, session: Any, flow_id: uuid.UUID) -> FlowState:
        row = (
            await session.execute(
                text("SELECT live_version, status FROM flows WHERE id = :id"), {"id": flow_id}
            )
        ).one_or_none()
        return FlowState(live_version=row[0], flow_status=row[1]) if row else FlowState()

    @activity.defn
    async def register_journey(self, input: RegisterJourneyInput) -> RegisterJourneyResult:
        """Registers the journey, then (after the commit) reads the flow: a publish or status
        change whose hook did not see this row yet committed before this read, so the journey
        learns of it here."""
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
        async with session_scope(self.engine) as session:
            flow = await self._flow_state(session, input.flow_id)
        return RegisterJourneyResult(status=status, **flow.model_dump())

    @activity.defn
    async def end_journey(self, input: EndJourneyInput) -> None:
        """Close the journey's row; a send of it still waiting for review is discarded with
        the journey's reason (it left: exit, flow deleted, step removed)."""
        from core.db import session_scope

        params = {
            "id": input.journey_id,
            "status": input.status,
            "reason": (input.reason or None) and input.reason[:255],
            "ended": input.ended_at,
        }
        async with session_scope(self.engine) as session:
            await session.execute(
                text(
                    "UPDATE journeys SET status = :status, end_reason = :reason, "
                    "ended_at = :ended WHERE id = :id AND status = 'active'"
                ),
                params,
            )
            await session.execute(
                text(
                    "UPDATE journey_reviews SET status = 'discarded', decided_at = :ended, "
                    "reason = coalesce(CAST(:reason AS varchar), CAST(:status AS varchar)) "
                    "WHERE journey_id = :id AND status = 'waiting'"
                ),
                params,
            )

    @activity.defn
    async def register_review(self, input: RegisterReviewInput) -> RegisterReviewResult:
        """Put a send step of a manual flow in the review queue (or find it there again: a
        journey re-reads its row this way); answers the row and the flow's status."""
        from core.db import session_scope

        params = input.model_dump()
        params["id"] = uuid.uuid4()
        async with session_scope(self.engine) as session:
            await session.execute(
                text(
                    "INSERT INTO journey_reviews (id, workspace_id, flow_id, flow_version, "
                    "step_id, journey_id, profile_id, channel, template_id, status) "
                    "SELECT :id, :workspace_id, f.id, :version, :step_id, :journey_id, "
                    ":profile_id, :channel, :template_id, 'waiting' FROM flows f "
                    "WHERE f.id = :flow_id AND f.workspace_id = :workspace_id "
                    "AND f.status = 'manual' FOR SHARE OF f "
                    "ON CONFLICT (journey_id, step_id) DO NOTHING"
                ),
                params,
            )
            # Locked already when the row went in (the flow is manual); else read now, after
            # any status change that held the row has committed.
            flow_status = (
                await session.execute(
                    text(
                        "SELECT status FROM flows WHERE id = :flow_id "
                        "AND workspace_id = :workspace_id FOR SHARE"
                    ),
                    params,
                )
            ).scalar_one_or_none()
            row = (
                await session.execute(
                    text(
                        "SELECT id, status, reason FROM journey_reviews "
                        "WHERE journey_id = :journey_id AND step_id = :step_id"
                    ),
                    params,
                )
            ).one_or_none()
        if row is None:
            return RegisterReviewResult(status="send", flow_status=flow_status)
        return RegisterReviewResult(
            status=row.status, review_id=row.id, reason=row.reason, flow_status=flow_status
        )

    @activity.defn
    async def record_step(self, input: RecordStepInput) -> FlowState:
        """Writes the outcome; answers the flow's live version and status (a journey that
        missed a signal follows them from its next step)."""
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
            return await self._flow_state(session, input.flow_id)

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
