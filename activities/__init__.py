"""Temporal activities: methods on classes that hold their dependencies (engine, providers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.channels import SendActivities
from activities.imports import ImportActivities
from activities.journey_actions import JourneyActionActivities
from activities.journeys import JourneyActivities
from activities.segments import SegmentActivities
from campaigns.activities import CampaignActivities

if TYPE_CHECKING:  # core.settings imports the workflows package, which imports activities
    from core.settings import Settings


def build_activities(engine: AsyncEngine, settings: Settings) -> list[Callable]:
    """Every activity the worker registers, bound to this process's engine and settings."""
    imports = ImportActivities(engine)
    segments = SegmentActivities(engine)
    channels = SendActivities(engine, settings)
    return [
        imports.process_import,
        imports.fail_import,
        segments.list_segment_workspaces,
        segments.refresh_workspace_segments,
        channels.send_message,
        channels.send_messages,
        *JourneyActivities(engine, settings).all(),
        *JourneyActionActivities(engine, settings).all(),
        *CampaignActivities(engine, settings).all(),
    ]
