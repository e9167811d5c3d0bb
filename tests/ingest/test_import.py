"""CSV import through the CLI's code path: create/update, consents, list, bad rows, idempotence."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from cli.imports import import_file, write_report
from core.db import session_scope
from ingest.csv_rows import ImportOptions

CSV = """\
email,Phone,first_name,country,email_consent,sms_consent,Orders,VIP,Signed Up,Loyalty Tier
anna@example.com,600 100 200,Anna,PL,subscribed,yes,3,true,2024-01-02,gold
bad-email,,Bob,PL,,,1,false,2024-01-03,
carl@example.com,12,Carl,PL,,,1,false,2024-01-03,
dora@example.com,+48600100300,Dora,PL,unsubscribed,,0,false,,silver
frank@example.com,+48 600 100 400,Frank,PL,,never,,,,
eve@example.com,,Eve,XX,maybe,,,,,
"""


async def _rows(engine, sql: str, **params):
    async with session_scope(engine) as session:
        return (await session.execute(text(sql), params)).all()


def _write(tmp_path: Path, body: str, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


async def test_import_creates_updates_consents_list_and_reports(engine, workspaces, tmp_path):
    ws = await workspaces.create()
    path = _write(tmp_path, CSV)
    job = await import_file(engine, ws.id, path, ImportOptions(), list_name="Imported")
    assert job.status == "succeeded", job.error
    assert (job.total_rows, job.created_rows, job.failed_rows) == (6, 3, 3)

    anna = (
        await _rows(
            engine,
            "SELECT id, phone, first_name, country, properties FROM profiles "
            "WHERE workspace_id = :ws AND lower(email) = 'anna@example.com'",
            ws=ws.id,
        )
    )[0]
    assert anna.phone == "+48600100200" and anna.first_name == "Anna"
    assert anna.country == "PL"
    assert anna.properties == {
        "Orders": 3,
        "VIP": True,
        "Signed Up": "2024-01-02",
        "Loyalty Tier": "gold",
    }
    consents = await _rows(
        engine,
        "SELECT p.email, c.channel, c.state, c.source FROM consents c "
        "JOIN profiles p ON p.id = c.profile_id WHERE c.workspace_id = :ws ORDER BY 1, 2",
        ws=ws.id,
    )
    assert [tuple(c) for c in consents] == [
        ("anna@example.com", "email", "subscribed", "import"),
        ("anna@example.com", "sms", "subscribed", "import"),
        ("dora@example.com", "email", "unsubscribed", "import"),
        ("frank@example.com", "sms", "never", "import"),
    ]
    history = await _rows(
        engine, "SELECT count(*) FROM consent_changes WHERE workspace_id = :ws", ws=ws.id
    )
    assert history[0][0] == 4
    members = await _rows(
        engine,
        "SELECT m.source FROM list_members m JOIN lists l ON l.id = m.list_id "
        "WHERE l.workspace_id = :ws AND l.name = 'Imported'",
        ws=ws.id,
    )
    assert [m.source for m in members] == ["import"] * 3

    report = tmp_path / "errors.csv"
    assert await write_report(engine, job.id, report) == 4
    with report.open() as f:
        errors = [(int(r["row"]), r["column"], r["value"]) for r in csv.DictReader(f)]
    assert errors == [
        (3, "email", "bad-email"),
        (4, "Phone", "12"),
        (7, "email_consent", "maybe"),
        (7, "country", "XX"),
    ]
    # Staging is gone once the job ends.
    assert (await _rows(engine, "SELECT count(*) FROM import_rows"))[0][0] == 0

    # The same file again changes nothing.
    again = await import_file(engine, ws.id, path, ImportOptions(), list_name="Imported")
    assert (again.created_rows, again.updated_rows, again.unchanged_rows) == (0, 0, 3)
    assert again.failed_rows == 3
    history = await _rows(
        engine, "SELECT count(*) FROM consent_changes WHERE workspace_id = :ws", ws=ws.id
    )
    assert history[0][0] == 4


async def test_conflicting_identifiers_and_mapping(engine, workspaces, tmp_path):
    ws = await workspaces.create()
    first = _write(tmp_path, "Customer ID,E-mail\nc1,a@example.com\nc2,b@example.com\n", "a.csv")
    options = ImportOptions(mapping={"Customer ID": "external_id", "E-mail": "email"})
    job = await import_file(engine, ws.id, first, options)
    assert (job.created_rows, job.failed_rows) == (2, 0)

    # c1 with b's email: two different profiles. c3 with a's email: a already has c1.
    body = "Customer ID,E-mail,Notes\nc1,b@example.com,x\nc3,a@example.com,y\nc2,,z\n"
    second = _write(tmp_path, body, "b.csv")
    job = await import_file(
        engine, ws.id, second, ImportOptions(mapping=options.mapping, skip=["Notes"])
    )
    assert (job.created_rows, job.updated_rows, job.unchanged_rows, job.failed_rows) == (0, 0, 1, 2)
    errors = await _rows(
        engine,
        'SELECT row_no, "column", reason FROM import_row_errors WHERE job_id = :j ORDER BY 1',
        j=job.id,
    )
    assert [(e.row_no, e.column) for e in errors] == [(2, "external_id, email"), (3, "external_id")]
    assert "different" in errors[0].reason


async def test_rows_repeating_a_person_update_the_profile_made_above(engine, workspaces, tmp_path):
    ws = await workspaces.create()
    body = (
        "email,phone,first_name,tier\n"
        "a@example.com,+48600100200,Ann,1\n"
        "A@EXAMPLE.com,,Anna,2\n"
        "b@example.com,+48600100200,,\n"
    )
    job = await import_file(engine, ws.id, _write(tmp_path, body), ImportOptions())
    assert (job.created_rows, job.updated_rows, job.failed_rows) == (1, 2, 0)
    profiles = await _rows(
        engine,
        "SELECT email, first_name, properties FROM profiles WHERE workspace_id = :ws",
        ws=ws.id,
    )
    # Row 4 reaches the same profile by phone and gives it a new email (the last row wins).
    assert [tuple(p) for p in profiles] == [("b@example.com", "Anna", {"tier": 2})]


async def test_bad_files_fail_the_job_with_a_message(engine, workspaces, tmp_path):
    ws = await workspaces.create()
    job = await import_file(engine, ws.id, _write(tmp_path, "name,city\nA,B\n"), ImportOptions())
    assert job.status == "failed" and "email, phone or external_id" in job.error
    job = await import_file(engine, ws.id, _write(tmp_path, ""), ImportOptions())
    assert job.status == "failed" and "empty" in job.error
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,city\na@example.com,Kraków\n".encode("latin-1"))
    job = await import_file(engine, ws.id, path, ImportOptions())
    assert job.status == "failed" and "UTF-8" in job.error


def test_cli_prints_counts_and_writes_report(database_url, tmp_path, engine):
    """`waymark import profiles` end to end, as a user runs it."""
    env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    made = subprocess.run(
        [sys.executable, "-m", "cli", "workspaces", "create", "CLI shop"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        check=True,
    )
    workspace_id = made.stdout.split()[1]
    path = _write(tmp_path, CSV)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "import",
            "profiles",
            str(path),
            "-w",
            workspace_id,
            "--list",
            "From CLI",
            "--report",
            str(tmp_path / "report.csv"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 created" in out.stdout and "3 failed" in out.stdout
    assert (tmp_path / "report.csv").read_text().startswith("row,column,value,reason")
