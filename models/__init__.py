"""Waymark's tables (SQLModel). Every table that holds customer data has `workspace_id`.

Importing this package registers every table on `SQLModel.metadata` (Alembic's target).
"""

from sqlmodel import SQLModel

from models.workspace import ApiKey, Scope, Workspace

metadata = SQLModel.metadata

__all__ = ["ApiKey", "Scope", "Workspace", "metadata"]
