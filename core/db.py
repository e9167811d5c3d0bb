"""The database engine: SQLAlchemy async over psycopg 3, one engine per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from core.settings import Settings


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL (`postgres://`, `postgresql://`, ...) as a psycopg 3 SQLAlchemy URL."""
    for prefix in (
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('://', 1)[0]}://…")


def libpq_url(url: str) -> str:
    """The same URL as libpq (and so raw psycopg) takes it."""
    return "postgresql://" + sqlalchemy_url(url).removeprefix("postgresql+psycopg://")


def create_engine(settings: Settings) -> AsyncEngine:
    if not settings.database_url:
        raise RuntimeError(
            "DATABASE_URL is not set (`waymark dev` sets it for the embedded server)"
        )
    return create_async_engine(
        sqlalchemy_url(settings.database_url),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Fail fast when the server is gone, so /readyz answers instead of hanging.
        connect_args={"connect_timeout": 5},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session in one transaction: committed on success, rolled back on any error."""
    async with session_factory(engine)() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
