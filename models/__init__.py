"""Waymark's tables (SQLModel). Every table that holds customer data has `workspace_id`.

Importing this package registers every table on `SQLModel.metadata` (Alembic's target).
"""

from sqlmodel import SQLModel

from models.event import Event, EventOutbox, Metric, ProcessedCall
from models.imports import ImportFileChunk, ImportJob, ImportRow, ImportRowError, ImportStatus
from models.lists import ListAction, ListMember, ListMembershipChange, ProfileList
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
from models.workspace import ApiKey, Scope, Workspace

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "Channel",
    "Consent",
    "ConsentChange",
    "ConsentSource",
    "ConsentState",
    "Event",
    "EventOutbox",
    "ImportFileChunk",
    "ImportJob",
    "ImportRow",
    "ImportRowError",
    "ImportStatus",
    "ListAction",
    "ListMember",
    "ListMembershipChange",
    "Metric",
    "Profile",
    "ProfileAlias",
    "ProfileList",
    "ProcessedCall",
    "PropertyDefinition",
    "PropertyType",
    "PushSubscription",
    "Scope",
    "Suppression",
    "Workspace",
    "metadata",
    "SQLModel",
]
