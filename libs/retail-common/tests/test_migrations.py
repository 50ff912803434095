"""Migration runner: order, checksums, idempotence, concurrent starts, layout errors, CLI."""

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from retail_common.db import (
    MigrationChecksumError,
    MigrationLayoutError,
    MigrationSource,
    migrate,
    pending_migrations,
)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


@pytest.fixture
def source(tmp_path: Path) -> MigrationSource:
    directory = write(
        tmp_path / "svc",
        {
            # Deliberately created in reverse name order: application order is by version.
            "0002_add_total.sql": "alter table orders add column total numeric; insert into log values (2);",
            "0001_orders.sql": "create table orders (id int primary key); create table log (v int);"
            " insert into log values (1);",
        },
    )
    return MigrationSource("svc", directory)


async def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_applies_in_version_order_and_records_checksums(
    database_url: str, source: MigrationSource
) -> None:
    applied = await migrate(database_url, [source])

    assert [(m.source, m.version, m.name) for m in applied] == [("svc", 1, "orders"), ("svc", 2, "add_total")]
    rows = await fetch(database_url, "select version, name, checksum from schema_migrations order by version")
    expected = {f.version: f.checksum for f in source.files()}
    assert [(r["version"], r["checksum"]) for r in rows] == sorted(expected.items())
    assert all(len(r["checksum"]) == 64 for r in rows)
    assert [r["v"] for r in await fetch(database_url, "select v from log")] == [1, 2]


async def test_rerun_is_a_no_op(database_url: str, source: MigrationSource) -> None:
    await migrate(database_url, [source])
    assert await migrate(database_url, [source]) == []
    assert len(await fetch(database_url, "select v from log")) == 2


async def test_edited_applied_migration_is_refused_naming_the_file(
    database_url: str, source: MigrationSource
) -> None:
    await migrate(database_url, [source])
    edited = source.directory / "0001_orders.sql"
    edited.write_text(edited.read_text() + "\n-- tweak\n")
    write(source.directory, {"0003_more.sql": "insert into log values (3);"})

    with pytest.raises(MigrationChecksumError, match=r"0001_orders\.sql") as info:
        await migrate(database_url, [source])
    assert info.value.path == edited
    with pytest.raises(MigrationChecksumError):
        await pending_migrations(database_url, [source])
    # Refused before anything new was applied.
    assert len(await fetch(database_url, "select v from log")) == 2


async def test_pending_migrations_lists_unapplied_ones(
    database_url: str, source: MigrationSource, tmp_path: Path
) -> None:
    pending = await pending_migrations(database_url, [source])
    assert [(f.version, f.name) for f in pending] == [(1, "orders"), (2, "add_total")]

    await migrate(database_url, [source])
    write(source.directory, {"0003_more.sql": "insert into log values (3);"})
    pending = await pending_migrations(database_url, [source])
    assert [(f.source, f.version, f.path.name) for f in pending] == [("svc", 3, "0003_more.sql")]


async def test_sources_are_tracked_separately(
    database_url: str, source: MigrationSource, tmp_path: Path
) -> None:
    other = MigrationSource("other", write(tmp_path / "other", {"0001_x.sql": "create table x (i int);"}))
    applied = await migrate(database_url, [source, other])
    assert [(m.source, m.version) for m in applied] == [("svc", 1), ("svc", 2), ("other", 1)]


async def test_failed_migration_is_rolled_back_and_retried_next_time(
    database_url: str, tmp_path: Path
) -> None:
    directory = write(tmp_path / "f", {"0001_bad.sql": "create table a (i int); select 1/0;"})
    src = MigrationSource("f", directory)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(database_url, [src])
    assert [r["t"] for r in await fetch(database_url, "select to_regclass('a') as t")] == [None]

    write(directory, {"0001_bad.sql": "create table a (i int);"})
    assert [m.version for m in await migrate(database_url, [src])] == [1]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "", "0003_c.sql": ""}, "version 0002 is missing"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "version 0001 is used by both 0001_a.sql and 0001_b.sql"),
        ({"0002_b.sql": ""}, "version 0001 is missing"),
        ({"1_a.sql": ""}, "1_a.sql is not named NNNN_description.sql"),
    ],
)
def test_layout_errors_are_explicit(tmp_path: Path, files: dict[str, str], message: str) -> None:
    src = MigrationSource("bad", write(tmp_path / "bad", files))
    with pytest.raises(MigrationLayoutError, match=message):
        src.files()


async def test_applied_version_without_file_is_refused(database_url: str, source: MigrationSource) -> None:
    await migrate(database_url, [source])
    (source.directory / "0002_add_total.sql").unlink()
    with pytest.raises(MigrationLayoutError, match="version 0002 was applied but no file"):
        await migrate(database_url, [source])


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "retail_common.db.migrate_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_two_processes_starting_at_once_apply_each_migration_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    # Slow migrations make the runs overlap: without the lock both would see them pending.
    directory = write(
        tmp_path / "race",
        {
            "0001_counter.sql": "create table effects (n int); select pg_sleep(0.5);"
            " insert into effects values (1);",
            "0002_more.sql": "select pg_sleep(0.5); insert into effects values (2);",
        },
    )
    args = ("--database-url", database_url, "--source", f"race={directory}", "--with-audit")
    procs = [run_cli(*args), run_cli(*args)]
    results = await asyncio.gather(*(asyncio.to_thread(p.communicate, timeout=60) for p in procs))

    assert [p.returncode for p in procs] == [0, 0], results
    applied_lines = [
        line for out, _ in results for line in out.splitlines() if line.startswith("applied race")
    ]
    assert sorted(applied_lines)[0].startswith("applied race 0001_counter")
    assert len(applied_lines) == 2  # each migration reported by exactly one of the processes
    assert [r["n"] for r in await fetch(database_url, "select n from effects order by n")] == [1, 2]
    rows = await fetch(database_url, "select source, version from schema_migrations order by source, version")
    assert [(r["source"], r["version"]) for r in rows] == [
        ("race", 1),
        ("race", 2),
        ("retail_common.audit", 1),
    ]


def test_cli_check_lists_pending_and_exits_1_then_0_after_applying(
    database_url: str, source: MigrationSource
) -> None:
    args = ("--database-url", database_url, "--source", f"svc={source.directory}")
    out, _ = (proc := run_cli(*args, "--check")).communicate(timeout=60)
    assert proc.returncode == 1
    assert "pending svc 0001" in out
    assert "pending svc 0002" in out

    assert run_cli(*args).wait(timeout=60) == 0
    out, _ = (proc := run_cli(*args, "--check")).communicate(timeout=60)
    assert (proc.returncode, out) == (0, "")


def test_cli_reports_a_changed_file_with_exit_2(database_url: str, source: MigrationSource) -> None:
    args = ("--database-url", database_url, "--source", f"svc={source.directory}")
    assert run_cli(*args).wait(timeout=60) == 0
    (source.directory / "0002_add_total.sql").write_text("-- changed")
    _, err = (proc := run_cli(*args)).communicate(timeout=60)
    assert proc.returncode == 2
    assert "0002_add_total.sql was changed after it was applied" in err
