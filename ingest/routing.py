"""The routers the outbox dispatcher hands new events to.

Each router acts on a batch of newly stored events inside the dispatcher's transaction and must
be idempotent (a batch can be delivered again after a crash). The journey router (flows: start
journeys, signal exits and waits) and segment membership updates plug in here.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from core.settings import Settings
from flows.router import JourneyRouter
from ingest.outbox import EventRouter
from segments.updates import SegmentEventRouter


def build_routers(client: Client, settings: Settings, engine: AsyncEngine) -> list[EventRouter]:
    return [SegmentEventRouter(), JourneyRouter(client, settings, engine)]
