"""Alembic migrations: the only way the schema changes. Applied by `waymark db upgrade`."""
