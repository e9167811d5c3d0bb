"""Temporal workflows. Names and the task queue are constants here; the worker registers `ALL`."""

from workflows.campaign_message import CampaignMessageWorkflow
from workflows.constants import TASK_QUEUE
from workflows.import_profiles import ImportProfilesWorkflow
from workflows.journey import JourneyWorkflow
from workflows.segment_refresh import SegmentRefreshWorkflow

ALL: list[type] = [
    ImportProfilesWorkflow,
    SegmentRefreshWorkflow,
    JourneyWorkflow,
    CampaignMessageWorkflow,
]

__all__ = ["ALL", "TASK_QUEUE"]
