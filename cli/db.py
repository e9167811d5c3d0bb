"""`waymark db …`: the schema."""

from __future__ import annotations

import typer

from core import migrate
from core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")


def database_url() -> str:
    url = get_settings().database_url
    if not url:
        typer.echo("DATABASE_URL is not set", err=True)
        raise typer.Exit(2)
    return url


@app.command()
def upgrade(revision: str = typer.Argument("heads", help="Target revision")) -> None:
    """Apply migrations up to REVISION (all by default)."""
    migrate.upgrade(database_url(), revision)
    typer.echo("database is up to date")
