"""Every workflow the worker registers. Kept out of `workflows/__init__.py`, so importing a
constant (`workflows.constants`, `workflows.search_attributes`) never loads every workflow and the
activities they reference."""

from workflows.campaign_message import CampaignMessageWorkflow
from workflows.import_profiles import ImportProfilesWorkflow
from workflows.journey import JourneyWorkflow
from workflows.segment_refresh import SegmentRefreshWorkflow

ALL: list[type] = [
    ImportProfilesWorkflow,
    SegmentRefreshWorkflow,
    JourneyWorkflow,
    CampaignMessageWorkflow,
]
