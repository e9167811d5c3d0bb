"""The event outbox dispatcher: hands every stored event to the router, at least once.

Ingestion writes an `event_outbox` row in the same transaction as each new event. The dispatcher
(run by every worker process) claims rows with `FOR UPDATE SKIP LOCKED`, so any number of workers
share the work, passes their events to the router, and deletes the rows in the same transaction.
It wakes on PostgreSQL NOTIFY (sent by a trigger on insert) for low latency and also polls, so
rows left by a process that died after committing are still delivered. If the router fails, the
transaction rolls back and the rows are delivered again later: routers must be idempotent (the
journey router uses deterministic workflow ids, so a re-delivered event starts nothing twice).

The same dispatcher drains `membership_outbox` (list joins and segment entries owed to list- and
segment-triggered flows, written by triggers in the change's transaction; see
`models/membership_outbox.py`) and hands them to the routers that take them
(`MembershipRouter`), in a transaction of their own right after the events: segment entries made
by routing a batch of events are delivered in the same `dispatch_once`. The running dispatcher
(`run`) drains the two outboxes as separate lanes with separate backoffs, so a failing membership
batch never delays event routing (and a failing event batch never delays list joins).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import psycopg
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import libpq_url, session_scope

CHANNEL = "waymark_event_outbox"
MAX_BACKOFF = 60.0  # seconds: the longest rest after failures
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoredEvent:
    id: int
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    metric: str
    occurred_at: datetime
    value: Decimal | None
    properties: dict[str, Any]


@dataclass(frozen=True)
class MembershipChange:
    """A list join or segment entry owed to one flow (a `membership_outbox` row)."""

    id: int
    workspace_id: uuid.UUID
    flow_id: uuid.UUID
    profile_id: uuid.UUID
    trigger_type: str  # list_joined | segment_entered
    list_id: uuid.UUID | None
    segment_id: uuid.UUID | None
    change_id: int
    source: str | None
    occurred_at: datetime


@runtime_checkable
class EventRouter(Protocol):
    async def route(self, session: AsyncSession, events: Sequence[StoredEvent]) -> None:
        """Act on newly stored events. Runs inside the claiming transaction."""


@runtime_checkable
class MembershipRouter(Protocol):
    async def route_memberships(
        self, session: AsyncSession, changes: Sequence[MembershipChange]
    ) -> None:
        """Act on list joins / segment entries. Runs inside the claiming transaction."""


_CLAIM = text(
    """
    WITH claimed AS (
        SELECT event_id FROM event_outbox ORDER BY event_id LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    SELECT claimed.event_id, e.workspace_id, e.profile_id, e.metric, e.occurred_at, e.value,
           e.properties
    -- An event deleted meanwhile (its workspace, an erasure racing the dispatch: the outbox
    -- has no foreign key) leaves a row with no event: deleted with the others, not routed.
    FROM claimed LEFT JOIN events e ON e.id = claimed.event_id
    ORDER BY claimed.event_id
    """
)
_DONE = text("DELETE FROM event_outbox WHERE event_id = ANY(CAST(:ids AS bigint[]))")
_CLAIM_MEMBERSHIPS = text(
    """
    SELECT id, workspace_id, flow_id, profile_id, trigger_type, list_id, segment_id, change_id,
           source, occurred_at
    FROM membership_outbox ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_DONE_MEMBERSHIPS = text("DELETE FROM membership_outbox WHERE id = ANY(CAST(:ids AS bigint[]))")


class OutboxDispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        routers: Sequence[EventRouter | MembershipRouter],
        *,
        batch_size: int = 500,
        poll_interval: float = 2.0,
    ) -> None:
        self.engine = engine
        self.database_url = database_url
        self.routers = [r for r in routers if isinstance(r, EventRouter)]
        self.membership_routers = [r for r in routers if isinstance(r, MembershipRouter)]
        self.batch_size = batch_size
        self.poll_interval = poll_interval

    async def dispatch_once(self) -> int:
        """Deliver up to one batch of events, then of membership changes; returns how many
        outbox rows were handled (events delivered, or dropped when gone, and changes)."""
        delivered = await self._dispatch_events()
        return delivered + await self._dispatch_memberships()

    async def _dispatch_events(self) -> int:
        async with session_scope(self.engine) as session:
            rows = (await session.execute(_CLAIM, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            events = [StoredEvent(*row) for row in rows if row.profile_id is not None]
            if events:
                for router in self.routers:
                    await router.route(session, events)
            await session.execute(_DONE, {"ids": [row.event_id for row in rows]})
        return len(rows)

    async def _dispatch_memberships(self) -> int:
        if not self.membership_routers:
            return 0  # a dispatcher without such routers leaves the rows to one that has them
        async with session_scope(self.engine) as session:
            rows = (await session.execute(_CLAIM_MEMBERSHIPS, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            changes = [MembershipChange(*row) for row in rows]
            for router in self.membership_routers:
                await router.route_memberships(session, changes)
            await session.execute(_DONE_MEMBERSHIPS, {"ids": [c.id for c in changes]})
        return len(changes)

    async def drain(self) -> int:
        delivered = 0
        while (count := await self.dispatch_once()) > 0:
            delivered += count
        return delivered

    async def _idle(self, listener: psycopg.AsyncConnection, stop: asyncio.Event) -> None:
        """Wait for a NOTIFY, the poll interval, or `stop`, whichever comes first."""

        async def notified() -> None:
            async for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
                pass

        waits = {asyncio.ensure_future(notified()), asyncio.ensure_future(stop.wait())}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: on every NOTIFY, and every `poll_interval` seconds.

        Events and membership changes are two lanes, each with its own backoff: a failing
        membership batch (a poison row, Temporal unreachable for the list-triggered flows) does
        not hold back event triggers, exits and waits, nor the other way round."""
        lanes = [
            _Lane("events", self._dispatch_events, self.poll_interval),
            _Lane("memberships", self._dispatch_memberships, self.poll_interval),
        ]
        backoff = self.poll_interval
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    libpq_url(self.database_url), autocommit=True
                ) as listener:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    backoff = self.poll_interval
                    while not stop.is_set():
                        # A batch of each in turn (events first: the segment entries a batch
                        # makes go out right after it); idle once both are empty or resting.
                        delivered = 0
                        for lane in lanes:
                            delivered += await lane.once()
                        if not delivered:
                            await self._idle(listener, stop)
            except Exception as exc:  # noqa: BLE001 - a dispatcher never gives up
                if stop.is_set():
                    break
                log.warning("outbox dispatcher error; retrying", error=str(exc), retry_in=backoff)
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, MAX_BACKOFF)


class _Lane:
    """One outbox drained on its own: after a failure it rests (doubling, up to MAX_BACKOFF)
    while the other lane goes on; the rows stay and are delivered again."""

    def __init__(self, name: str, dispatch: Callable[[], Awaitable[int]], base: float) -> None:
        self.name, self.dispatch, self.base = name, dispatch, base
        self.delay = 0.0
        self.resume_at = 0.0

    async def once(self) -> int:
        """One batch, unless resting after a failure; how many rows it delivered."""
        loop = asyncio.get_running_loop()
        if loop.time() < self.resume_at:
            return 0
        try:
            delivered = await self.dispatch()
        except Exception as exc:  # noqa: BLE001 - rolled back; the rows are delivered again
            self.delay = min(self.delay * 2, MAX_BACKOFF) if self.delay else self.base
            self.resume_at = loop.time() + self.delay
            log.warning(
                "outbox batch failed; retrying",
                outbox=self.name,
                error=str(exc)[:500],
                retry_in=self.delay,
            )
            return 0
        self.delay = 0.0
        return delivered
