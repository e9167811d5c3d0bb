"""`waymark dev`: the whole stack on one machine, no Docker, nothing to install by hand.

Starts (or reuses) embedded PostgreSQL and the Temporal dev server under the data dir, applies
migrations, makes a demo workspace on first start, then runs the worker and the API as child
processes — the same commands production runs. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from core import migrate, temporal
from core.db import create_engine, session_scope
from core.embedded import TemporalDevServer, start_postgres
from core.logging import configure_logging
from core.settings import Settings
from core.tenancy import authenticate_private, create_workspace

console = Console(soft_wrap=True)
DEMO_FILE = "demo-workspace.json"


def dev(
    api_port: Annotated[int | None, typer.Option(help="API port (WAYMARK_API_PORT)")] = None,
    temporal_port: Annotated[int | None, typer.Option(help="Temporal gRPC port")] = None,
    ui_port: Annotated[int | None, typer.Option(help="Temporal Web UI port")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where embedded data lives")] = None,
) -> None:
    """Run everything locally: PostgreSQL, Temporal (+ Web UI), migrations, worker and API."""
    overrides = {
        "api_port": api_port,
        "temporal_port": temporal_port,
        "temporal_ui_port": ui_port,
        "data_dir": data_dir,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings)
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WAYMARK_API_PORT": str(settings.api_port),
        "WAYMARK_API_HOST": settings.api_host,
        "WAYMARK_DATA_DIR": str(data),
    }
    temporal_server: TemporalDevServer | None = None
    children: list[subprocess.Popen] = []
    try:
        if not settings.database_url:
            console.print(f"starting embedded PostgreSQL in {data / 'postgres'} …")
            _server, url = start_postgres(data / "postgres", "waymark")
            settings.database_url = env["DATABASE_URL"] = url
        if not settings.temporal_address:
            console.print(f"starting the Temporal dev server (state in {data / 'temporal.db'}) …")
            temporal_server = TemporalDevServer(
                data / "temporal.db",
                port=settings.temporal_port,
                ui_port=settings.temporal_ui_port,
                namespace=settings.temporal_namespace,
            )
            temporal_server.start(data / "temporal.log")
            settings.temporal_address = env["TEMPORAL_ADDRESS"] = temporal_server.address
        added = asyncio.run(_register_search_attributes(settings))
        if added:
            console.print(f"registered search attributes: {', '.join(added)}")
        console.print("applying database migrations …")
        migrate.upgrade(settings.database_url)
        demo = _demo_workspace(settings, data / DEMO_FILE)

        for command in ("worker", "api"):
            children.append(subprocess.Popen([sys.executable, "-m", "cli", command], env=env))
        _wait_ready(settings, children)
        _banner(settings, demo, ui_running=temporal_server is not None)
        signal.signal(signal.SIGTERM, _interrupt)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        console.print("[red]a Waymark process exited; stopping the rest[/red]")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("\nstopping …")
    finally:
        _stop(children)
        if temporal_server:
            temporal_server.stop()
        # The embedded PostgreSQL stops when this process exits (pgserver's atexit hook).


async def _register_search_attributes(settings: Settings) -> list[str]:
    client = await temporal.connect(settings)
    return await temporal.ensure_search_attributes(client, settings.temporal_namespace)


def _demo_workspace(settings: Settings, path: Path) -> dict:
    """The demo workspace and its keys, made on first start and remembered in the data dir."""
    saved = json.loads(path.read_text()) if path.exists() else None
    demo = asyncio.run(_ensure_demo(settings, saved))
    if demo != saved:
        path.write_text(json.dumps(demo, indent=2))
        path.chmod(0o600)
    return demo


async def _ensure_demo(settings: Settings, saved: dict | None) -> dict:
    engine = create_engine(settings)
    try:
        async with session_scope(engine) as session:
            if saved and await authenticate_private(session, saved["admin_key"]):
                return saved
            workspace, admin = await create_workspace(session, "Demo shop")
        return {
            "workspace_id": str(workspace.id),
            "write_key": workspace.public_key,
            "admin_key": admin.secret,
        }
    finally:
        await engine.dispose()


def _wait_ready(settings: Settings, children: list[subprocess.Popen], timeout: float = 90) -> None:
    url = f"http://127.0.0.1:{settings.api_port}/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise RuntimeError("the worker or the API exited during start-up; see the log above")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API was not ready after {timeout}s ({url})")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _banner(settings: Settings, demo: dict, *, ui_running: bool) -> None:
    api = f"http://127.0.0.1:{settings.api_port}"
    ui = (
        f"http://127.0.0.1:{settings.temporal_ui_port}"
        if ui_running
        else f"(the UI of your Temporal server at {settings.temporal_address})"
    )
    console.print(
        "\n[bold green]Waymark is running[/bold green]\n"
        f"  API            {api}\n"
        f"  API docs       {api}/docs\n"
        f"  Temporal UI    {ui}\n"
        f"  Demo workspace {demo['workspace_id']}\n"
        f"    write key    {demo['write_key']}   (public, for tracking)\n"
        f"    admin key    {demo['admin_key']}   (private: Authorization: Bearer …)\n"
        "Press Ctrl-C to stop.\n"
    )


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
