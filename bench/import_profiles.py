"""Benchmark: import a 1,000,000-row CSV of profiles through the CLI's code path.

    .venv/bin/python -m bench.import_profiles [--rows 1000000] [--keep FILE]

Uses DATABASE_URL when set (a fresh database is created next to it), else an embedded
PostgreSQL (pgserver) in a temporary directory. Prints rows/s and total seconds, and the time of
a raw `COPY` of the same file into a plain table (the floor any import is measured against).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import fresh_database, postgres
from cli.imports import import_file
from core.db import create_async_engine, libpq_url, session_scope, sqlalchemy_url
from core.tenancy import create_workspace
from ingest import csv_upsert
from ingest.csv_rows import ImportOptions

FIRST = ["Anna", "Jan", "Maria", "Piotr", "Kasia", "Tomasz", "Ewa", "Paweł", "Zofia", "Marek"]
LAST = ["Nowak", "Kowalski", "Wiśniewska", "Wójcik", "Kamiński", "Lewandowska", "Zieliński"]
PLACES = [
    ("PL", "Warszawa", "Europe/Warsaw"),
    ("DE", "Berlin", "Europe/Berlin"),
    ("GB", "London", "Europe/London"),
    ("FR", "Paris", "Europe/Paris"),
]
PREFIX = {"PL": "+48 6", "DE": "+49 151", "GB": "+44 79", "FR": "+33 6"}
CONSENTS = ["subscribed", "subscribed", "unsubscribed", "never", ""]
HEADER = [
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "city",
    "timezone",
    "email_consent",
    "sms_consent",
    "orders",
    "lifetime_value",
    "vip",
    "signed_up",
    "favourite_category",
]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for i in range(rows):
            country, city, tz = rnd.choice(PLACES)
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            digits = 8
            phone = PREFIX[country] + "".join(rnd.choices("0123456789", k=digits))
            out.writerow(
                [
                    f"cust-{i}",
                    f"{first.lower()}.{last.lower()}.{i}@example{i % 50}.com",
                    phone if rnd.random() < 0.8 else "",
                    first,
                    last,
                    country,
                    city,
                    tz,
                    rnd.choice(CONSENTS),
                    rnd.choice(CONSENTS),
                    rnd.randint(0, 40),
                    f"{rnd.uniform(0, 5000):.2f}",
                    rnd.choice(["true", "false"]),
                    f"20{rnd.randint(15, 24)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
                    rnd.choice(["shoes", "bags", "coats", "hats"]),
                ]
            )


# A bulk-load configuration for the embedded server (pgserver's defaults are 128 MB of shared
# buffers and 1 GB of WAL between checkpoints: a 1M-row import then spends its time in the
# kernel, evicting index pages and writing full-page images). Production servers are tuned so.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "max_wal_size": "8GB",
    "wal_compression": "on",
    "checkpoint_timeout": "30min",
}


def raw_copy_seconds(url: str, path: Path) -> float:
    """`COPY` of the same file into a plain table of text columns: the floor."""
    columns = ", ".join(f"c{i} text" for i in range(len(HEADER)))
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(f"CREATE TABLE bench_raw ({columns})")
        start = time.perf_counter()
        with conn.cursor().copy("COPY bench_raw FROM STDIN (FORMAT csv, HEADER)") as copy:
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    copy.write(block)
        conn.commit()
        return time.perf_counter() - start


async def run_import(url: str, path: Path) -> tuple[float, object]:
    engine = create_async_engine(sqlalchemy_url(url), pool_size=4)
    try:
        async with session_scope(engine) as session:
            workspace, _ = await create_workspace(session, "Bench shop")
        start = time.perf_counter()
        job = await import_file(engine, workspace.id, path, ImportOptions(), list_name="Imported")
        return time.perf_counter() - start, job
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Keep the generated CSV at this path")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres(Path(tmp), server_settings=SERVER_SETTINGS) as pg,
        fresh_database(pg.admin_url) as url,
    ):
        path = args.keep or Path(tmp) / "profiles.csv"
        start = time.perf_counter()
        generate(path, args.rows)
        size, took = path.stat().st_size / 1e6, time.perf_counter() - start
        print(f"generated {args.rows:,} rows ({size:.0f} MB) in {took:.1f} s")
        load = os.getloadavg()[0]
        seconds, job = asyncio.run(run_import(url, path))
        load = max(load, os.getloadavg()[0])
        print(
            f"import: {seconds:.1f} s, {args.rows / seconds:,.0f} rows/s — "
            f"{job.created_rows:,} created, {job.updated_rows:,} updated, "
            f"{job.failed_rows:,} failed ({job.status}); load average {load:.1f} "
            f"on {os.cpu_count()} CPUs"
        )
        print("database time by phase (seconds, summed over connections):")
        for name, took in sorted(csv_upsert.PHASES.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<36} {took:6.1f}")
        raw = raw_copy_seconds(url, path)
        print(f"raw COPY of the same file: {raw:.1f} s — import/COPY ratio {seconds / raw:.1f}x")


if __name__ == "__main__":
    main()
