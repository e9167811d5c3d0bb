"""Waymark's tables (SQLModel). Every table that holds customer data has `workspace_id`.

Importing this package registers every table on `SQLModel.metadata` (Alembic's target).
"""

from sqlmodel import SQLModel

from models.campaign_recipients import CampaignRecipient, RecipientStatus  # noqa: F401
from models.campaigns import Campaign, CampaignMessage, CampaignPath  # noqa: F401
from models.channels import ChannelCredential, LocalOutboxMessage, VapidKey
from models.event import Event, EventOutbox, Metric, ProcessedCall
from models.flows import Flow, FlowStatus, FlowStatusChange, FlowVersion
from models.imports import ImportFileChunk, ImportJob, ImportRow, ImportRowError, ImportStatus
from models.journey_reviews import JourneyReview, ReviewStatus  # noqa: F401
from models.journeys import Journey, JourneyStatus, JourneyStep, StepOutcome  # noqa: F401
from models.lists import ListAction, ListMember, ListMembershipChange, ProfileList
from models.membership_outbox import MembershipOutbox  # noqa: F401
from models.messages import Message, MessageContent, MessageEvent, MessageStatus, SourceType
from models.profile import (
    Channel,
    Consent,
    ConsentChange,
    ConsentSource,
    ConsentState,
    Profile,
    ProfileAlias,
    PropertyDefinition,
    PropertyType,
    PushSubscription,
    Suppression,
)
from models.segments import Segment, SegmentAction, SegmentMember, SegmentMembershipChange
from models.templates import Template
from models.workspace import ApiKey, Scope, Workspace

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "Channel",
    "ChannelCredential",
    "Consent",
    "ConsentChange",
    "ConsentSource",
    "ConsentState",
    "Event",
    "EventOutbox",
    "Flow",
    "FlowStatus",
    "FlowStatusChange",
    "FlowVersion",
    "ImportFileChunk",
    "ImportJob",
    "ImportRow",
    "ImportRowError",
    "ImportStatus",
    "ListAction",
    "ListMember",
    "ListMembershipChange",
    "LocalOutboxMessage",
    "Message",
    "MessageContent",
    "MessageEvent",
    "MessageStatus",
    "Metric",
    "Profile",
    "ProfileAlias",
    "ProfileList",
    "ProcessedCall",
    "PropertyDefinition",
    "PropertyType",
    "PushSubscription",
    "Scope",
    "Segment",
    "SegmentAction",
    "SegmentMember",
    "SegmentMembershipChange",
    "SourceType",
    "Suppression",
    "VapidKey",
    "Template",
    "Workspace",
    "metadata",
    "SQLModel",
]
