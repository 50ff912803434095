"""Postgres for tests and the dev loop: DATABASE_URL, else local 127.0.0.1:5432, else embedded pgserver.

Each test gets its own freshly created database, dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = ["PostgresServer", "TestDatabase", "locate_postgres"]

_LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass
class PostgresServer:
    """A reachable Postgres server and the admin DSN used to create and drop databases."""

    admin_dsn: str
    embedded: Any = None  # the pgserver handle when we started one

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
    """DATABASE_URL if set; else the local server on 127.0.0.1:5432; else start an embedded one."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return PostgresServer(admin_dsn=configured)
    if await _reachable(_LOCAL_DSN):
        return PostgresServer(admin_dsn=_LOCAL_DSN)
    from pgserver.postgres_server import get_server  # lazily: only the fallback

    directory = data_dir or tempfile.mkdtemp(prefix="retail-pg-")
    handle = get_server(directory, cleanup_mode="stop")
    return PostgresServer(admin_dsn=handle.get_uri(), embedded=handle)
