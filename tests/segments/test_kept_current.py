"""Segments follow profile changes that arrive by CSV import, not only by events and the API."""

from __future__ import annotations

from sqlalchemy import text

from cli.imports import import_file
from core.db import session_scope
from ingest.csv_rows import ImportOptions


async def members(engine, segment_id: str) -> set[str]:
    async with session_scope(engine) as session:
        rows = await session.execute(
            text(
                "SELECT lower(p.email) FROM segment_members m JOIN profiles p "
                "ON p.id = m.profile_id WHERE m.segment_id = :s"
            ),
            {"s": segment_id},
        )
        return set(rows.scalars())


async def test_an_import_moves_profiles_into_and_out_of_segments(
    client, workspaces, engine, tmp_path
):
    ws = await workspaces.create()
    first = tmp_path / "first.csv"
    first.write_text("email,email_consent,tier\nann@example.com,subscribed,silver\n")
    job = await import_file(engine, ws.id, first, ImportOptions())
    assert job.status == "succeeded", job.error

    definition = {
        "all": [
            {"type": "property", "property": "tier", "op": "eq", "value": "gold"},
            {"type": "consent", "channel": "email", "op": "can_receive"},
        ]
    }
    r = await client.post(
        "/v1/segments", headers=ws.admin, json={"name": "Gold", "definition": definition}
    )
    assert r.status_code == 201, r.text
    segment_id = r.json()["id"]
    assert await members(engine, segment_id) == set()

    second = tmp_path / "second.csv"
    second.write_text(
        "email,email_consent,tier\nann@example.com,,gold\nbob@example.com,subscribed,gold\n"
    )
    job = await import_file(engine, ws.id, second, ImportOptions())
    assert job.status == "succeeded", job.error
    assert await members(engine, segment_id) == {"ann@example.com", "bob@example.com"}

    third = tmp_path / "third.csv"
    third.write_text("email,email_consent\nbob@example.com,unsubscribed\n")
    job = await import_file(engine, ws.id, third, ImportOptions())
    assert job.status == "succeeded", job.error
    assert await members(engine, segment_id) == {"ann@example.com"}
