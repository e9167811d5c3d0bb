"""`waymark …` — the entry point. Each group of commands lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import channels, db, dev, examples, flows, imports, segments, tenancy
from core.logging import configure_logging
from core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Waymark: marketing automation on Temporal.")
app.command("dev")(dev.dev)
app.add_typer(db.app, name="db")
app.add_typer(tenancy.workspaces, name="workspaces")
app.add_typer(tenancy.keys, name="keys")
app.add_typer(imports.app, name="import")
app.add_typer(segments.app, name="segments")
app.add_typer(channels.app, name="channels")
app.add_typer(flows.app, name="flows")
app.add_typer(examples.app, name="examples")


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (WAYMARK_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (WAYMARK_API_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from core.logging import uvicorn_log_config

    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=uvicorn_log_config(),
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


@app.command()
def worker() -> None:
    """Run the Temporal worker (all workflows and activities)."""
    import worker as worker_module

    worker_module.main()
