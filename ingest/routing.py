"""The routers the outbox dispatcher hands new events and membership changes to.

Each router acts on a batch inside the dispatcher's transaction and must be idempotent (a batch
can be delivered again after a crash). `SegmentEventRouter` keeps event-based segments current
(its entries queue `membership_outbox` rows in the same transaction); `JourneyRouter` starts
journeys for event triggers and signals exits and waits (`route`), and starts journeys for list
and segment triggers from `membership_outbox` (`route_memberships`).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from core.settings import Settings
from flows.router import JourneyRouter
from ingest.outbox import EventRouter, MembershipRouter
from segments.updates import SegmentEventRouter


def build_routers(
    client: Client, settings: Settings, engine: AsyncEngine
) -> list[EventRouter | MembershipRouter]:
    return [SegmentEventRouter(), JourneyRouter(client, settings, engine)]
