"""VAPID key pairs (RFC 8292): one per workspace.

Made on first use (the public-key endpoint, the first push) or by `waymark channels vapid`.
Browsers subscribe with the public key (base64url of the uncompressed P-256 point, what
`pushManager.subscribe({applicationServerKey})` takes); pushes are signed with the private key,
stored as a PEM encrypted like provider credentials. Rotating the pair orphans every existing
browser subscription (they are bound to the old public key), so it is deleted with them.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models import PushSubscription, VapidKey
from models.base import utcnow

if TYPE_CHECKING:
    from channels.credentials import SecretBox


@dataclass(frozen=True)
class VapidPair:
    public_key: str  # base64url, no padding, 65-byte uncompressed point
    private_pem: str


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def public_key_of(private_key: ec.EllipticCurvePrivateKey) -> str:
    point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def generate() -> VapidPair:
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return VapidPair(public_key=public_key_of(private_key), private_pem=pem)


def _aad(workspace_id: uuid.UUID) -> str:
    return f"vapid:{workspace_id}"


async def ensure_keys(
    session: AsyncSession, box: SecretBox, workspace_id: uuid.UUID, *, rotate: bool = False
) -> str:
    """The workspace's VAPID public key, generating the pair when it has none (or `rotate`).

    Rotating deletes the workspace's push subscriptions: they can no longer be pushed to."""
    if not rotate:
        existing = await public_key(session, workspace_id)
        if existing is not None:
            return existing
    pair = generate()
    secret = box.encrypt(_aad(workspace_id), {"private_pem": pair.private_pem})
    values = {"public_key": pair.public_key, "private_key": secret}
    stmt = insert(VapidKey).values(workspace_id=workspace_id, **values)
    if rotate:
        stmt = stmt.on_conflict_do_update(
            index_elements=[VapidKey.workspace_id], set_={**values, "rotated_at": utcnow()}
        )
        await session.execute(
            delete(PushSubscription).where(PushSubscription.workspace_id == workspace_id)
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[VapidKey.workspace_id])
    await session.execute(stmt)
    return await public_key(session, workspace_id)  # type: ignore[return-value]


async def public_key(session: AsyncSession, workspace_id: uuid.UUID) -> str | None:
    return (
        await session.execute(
            select(VapidKey.public_key).where(VapidKey.workspace_id == workspace_id)
        )
    ).scalar_one_or_none()


async def private_pem(session: AsyncSession, box: SecretBox, workspace_id: uuid.UUID) -> str | None:
    blob = (
        await session.execute(
            select(VapidKey.private_key).where(VapidKey.workspace_id == workspace_id)
        )
    ).scalar_one_or_none()
    if blob is None:
        return None
    return box.decrypt(_aad(workspace_id), blob)["private_pem"]
