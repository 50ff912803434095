"""Postgres for tests and the dev loop: DATABASE_URL, else local 127.0.0.1:5432, else an embedded one.

Each test gets its own freshly created database, dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from retail_common.testing.embedded_postgres import EmbeddedPostgres, start_embedded

__all__ = ["PostgresServer", "TestDatabase", "locate_postgres"]

_LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass
class PostgresServer:
    """A reachable Postgres server and the admin DSN used to create and drop databases."""

    admin_dsn: str
    embedded: EmbeddedPostgres | None = None  # the server we started, when we started one

    def dsn_for(self, database: str) -> str:
        return _with_database(self.admin_dsn, database)

    async def create_database(self, prefix: str = "t") -> TestDatabase:
        name = f"{prefix}_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return TestDatabase(server=self, name=name, dsn=self.dsn_for(name))

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@dataclass
class TestDatabase:
    __test__ = False  # a fixture value, not a pytest test class

    server: PostgresServer
    name: str
    dsn: str

    async def drop(self) -> None:
        await self.server.drop_database(self.name)


async def _reachable(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def locate_postgres(data_dir: str | None = None) -> PostgresServer:
    """DATABASE_URL if set; else the local server on 127.0.0.1:5432; else start an embedded one.

    RETAIL_POSTGRES_EMBEDDED=1 skips the first two, so the embedded path can be run (and tested) on a
    machine that has a Postgres of its own.
    """
    forced = os.environ.get("RETAIL_POSTGRES_EMBEDDED", "") not in ("", "0")
    configured = os.environ.get("DATABASE_URL")
    if configured and not forced:
        return PostgresServer(admin_dsn=configured)
    if not forced and await _reachable(_LOCAL_DSN):
        return PostgresServer(admin_dsn=_LOCAL_DSN)
    directory = data_dir or tempfile.mkdtemp(prefix="retail-pg-")
    embedded = await asyncio.to_thread(start_embedded, directory)
    return PostgresServer(admin_dsn=embedded.dsn, embedded=embedded)
