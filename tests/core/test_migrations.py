"""The schema has one head, and the models match what the migrations build."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import models
from core.db import sqlalchemy_url
from core.migrate import current_heads


def test_one_head(database_url):
    assert len(current_heads(database_url)) == 1


def test_models_match_the_migrated_schema(database_url):
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), models.metadata
            )
    finally:
        engine.dispose()
    assert diff == [], "models and migrations disagree; add a migration:\n" + "\n".join(
        map(str, diff)
    )
