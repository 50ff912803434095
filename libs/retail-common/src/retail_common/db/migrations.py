"""Versioned SQL migrations: `NNNN_description.sql` files per source, applied once, in order, verified.

Design:
- One session-level advisory lock, held on a dedicated connection for the whole run, serialises
  concurrent starts (several replicas booting at once): the second runner waits, then finds nothing
  pending. Session-level (not transaction-level) because each migration commits on its own.
- Each migration runs in its own transaction together with its `schema_migrations` row, so a failed
  migration leaves no trace and the next start retries it.
- The sha256 of each applied file is recorded; an applied file that changed afterwards is refused
  (the database no longer matches the code that describes it), before anything new is applied.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

__all__ = [
    "AppliedMigration",
    "MigrationChecksumError",
    "MigrationError",
    "MigrationFile",
    "MigrationLayoutError",
    "MigrationSource",
    "migrate",
    "pending_migrations",
]

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[A-Za-z0-9][A-Za-z0-9_\-]*)\.sql$")
# Arbitrary but fixed: every runner of every service agrees on it ("retail" + "migr" in ASCII).
_LOCK_KEY = 0x72657461696C_6D69

_CREATE_TABLE = """
create table if not exists schema_migrations (
    source     text        not null,
    version    integer     not null,
    name       text        not null,
    checksum   text        not null,
    applied_at timestamptz not null default now(),
    primary key (source, version)
)
"""


class MigrationError(Exception):
    """Base of every migration failure."""


class MigrationLayoutError(MigrationError):
    """A source directory is malformed: bad file name, duplicate or missing version, missing file."""


class MigrationChecksumError(MigrationError):
    """An already-applied migration file has been edited since it was applied."""

    def __init__(self, path: Path, recorded: str, actual: str) -> None:
        super().__init__(
            f"migration {path} was changed after it was applied "
            f"(recorded sha256 {recorded}, file now {actual}); add a new migration instead of editing it"
        )
        self.path = path
        self.recorded = recorded
        self.actual = actual


@dataclass(frozen=True)
class MigrationFile:
    source: str
    version: int
    name: str
    path: Path
    sql: str
    checksum: str


@dataclass(frozen=True)
class AppliedMigration:
    source: str
    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True)
class MigrationSource:
    """A named directory of `NNNN_description.sql` files (versions 1..n without gaps)."""

    name: str
    directory: Path

    def files(self) -> list[MigrationFile]:
        """Parse and validate the directory; raises MigrationLayoutError naming the problem."""
        if not self.directory.is_dir():
            raise MigrationLayoutError(f"migration source {self.name!r}: {self.directory} is not a directory")
        by_version: dict[int, MigrationFile] = {}
        for path in sorted(self.directory.glob("*.sql")):
            match = _FILE_NAME.match(path.name)
            if match is None:
                raise MigrationLayoutError(
                    f"migration source {self.name!r}: {path.name} is not named NNNN_description.sql"
                )
            version = int(match["version"])
            if version in by_version:
                raise MigrationLayoutError(
                    f"migration source {self.name!r}: version {version:04d} is used by both "
                    f"{by_version[version].path.name} and {path.name}"
                )
            data = path.read_bytes()
            by_version[version] = MigrationFile(
                source=self.name,
                version=version,
                name=match["name"],
                path=path,
                sql=data.decode("utf-8"),
                checksum=hashlib.sha256(data).hexdigest(),
            )
        for expected, version in enumerate(sorted(by_version), start=1):
            if version != expected:
                raise MigrationLayoutError(
                    f"migration source {self.name!r}: version {expected:04d} is missing "
                    f"(next file is {by_version[version].path.name})"
                )
        return [by_version[v] for v in sorted(by_version)]


async def _recorded(conn: asyncpg.Connection[asyncpg.Record]) -> dict[tuple[str, int], str]:
    if await conn.fetchval("select to_regclass('schema_migrations')") is None:
        return {}
    rows = await conn.fetch("select source, version, checksum from schema_migrations")
    return {(r["source"], r["version"]): r["checksum"] for r in rows}


def _plan(sources: Sequence[MigrationSource], recorded: dict[tuple[str, int], str]) -> list[MigrationFile]:
    """Verify what was applied against the files; return what is still to apply, in order."""
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise MigrationLayoutError(f"migration source names must be unique, got {names}")
    pending: list[MigrationFile] = []
    for source in sources:
        files = source.files()
        known = {f.version for f in files}
        for src, version in recorded:
            if src == source.name and version not in known:
                raise MigrationLayoutError(
                    f"migration source {source.name!r}: version {version:04d} was applied "
                    f"but no file for it exists in {source.directory}"
                )
        for f in files:
            checksum = recorded.get((f.source, f.version))
            if checksum is None:
                pending.append(f)
            elif checksum != f.checksum:
                raise MigrationChecksumError(f.path, checksum, f.checksum)
    return pending


async def pending_migrations(dsn: str, sources: Sequence[MigrationSource]) -> list[MigrationFile]:
    """Migrations not yet applied (for a refuse-to-start mode); also verifies checksums of applied ones."""
    conn = await asyncpg.connect(dsn)
    try:
        return _plan(sources, await _recorded(conn))
    finally:
        await conn.close()


async def migrate(dsn: str, sources: Sequence[MigrationSource]) -> list[AppliedMigration]:
    """Apply every pending migration of `sources` (in the given order); return those applied now."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "retail-migrate"})
    try:
        # Released by closing the session below, also when a migration fails half-way.
        await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        applied: list[AppliedMigration] = []
        for f in _plan(sources, await _recorded(conn)):
            async with conn.transaction():
                await conn.execute(f.sql)
                applied_at = await conn.fetchval(
                    "insert into schema_migrations (source, version, name, checksum)"
                    " values ($1, $2, $3, $4) returning applied_at",
                    f.source,
                    f.version,
                    f.name,
                    f.checksum,
                )
            applied.append(AppliedMigration(f.source, f.version, f.name, f.checksum, applied_at))
        return applied
    finally:
        await conn.close()
