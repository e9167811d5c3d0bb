"""`waymark channels …`: VAPID keys, provider credentials, re-encryption after a key change."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from channels import credentials, vapid
from cli.tenancy import WorkspaceOpt, _workspace, run_in_session
from core.settings import get_settings
from models import Channel

app = typer.Typer(no_args_is_help=True, help="Channels: provider credentials and VAPID keys.")
console = Console()


def _box() -> credentials.SecretBox:
    return credentials.SecretBox.from_settings(get_settings())


@app.command("vapid")
def vapid_keys(
    workspace: WorkspaceOpt,
    rotate: Annotated[
        bool, typer.Option(help="Make a new pair; deletes the workspace's push subscriptions")
    ] = False,
) -> None:
    """Print the workspace's VAPID public key, generating the pair if it has none."""

    async def work(session) -> str:
        await _workspace(session, workspace)
        return await vapid.ensure_keys(session, _box(), workspace, rotate=rotate)

    console.print(run_in_session(work))


@app.command("set-credentials")
def set_credentials(
    workspace: WorkspaceOpt,
    channel: Annotated[Channel, typer.Argument(help="email | sms | whatsapp | push")],
    values: Annotated[
        str, typer.Argument(help='JSON, e.g. \'{"api_key": "SG.…", "from_email": "…"}\'')
    ],
) -> None:
    """Send a channel through a provider account (the same fields as the API's PUT)."""
    try:
        given = credentials.SHAPES[channel].model_validate(json.loads(values))
    except (ValueError, ValidationError) as exc:
        console.print(f"[red]invalid {channel.value} credentials:[/red] {exc}")
        raise typer.Exit(2) from None

    async def work(session) -> None:
        await _workspace(session, workspace)
        await credentials.save(session, _box(), workspace, channel, given)
        if channel is Channel.push:
            await vapid.ensure_keys(session, _box(), workspace)

    run_in_session(work)
    console.print(f"{channel.value}: sending through {given.provider}")


@app.command("reencrypt")
def reencrypt() -> None:
    """Rewrite every stored secret under the current WAYMARK_SECRET_KEY (after a rotation)."""
    count = run_in_session(lambda session: credentials.reencrypt_all(session, _box()))
    console.print(f"re-encrypted {count} secrets; WAYMARK_PREVIOUS_SECRET_KEYS can now be emptied")
