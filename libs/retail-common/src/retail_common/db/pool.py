"""Connection pools and transactions: the one way services talk to Postgres."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from opentelemetry.instrumentation.utils import suppress_instrumentation

__all__ = ["CONNECTION_ERRORS", "DATABASE_ERRORS", "Connection", "Isolation", "create_pool", "transaction"]

# The database did not answer (down, restarting, connection cut or left in a broken state): retry later,
# never crash a loop or blame the request. InternalClientError is what asyncpg raises when a connection
# was cut mid-operation and then reused.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
    OSError,
    TimeoutError,
)
# Any failure of a statement, for loops that must outlive every database error (relay, leases).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *CONNECTION_ERRORS)

Isolation: TypeAlias = Literal["read_committed", "repeatable_read", "serializable"]
# What repositories receive: a plain connection or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    # asyncpg returns json/jsonb as text by default; decode once here so repositories see Python values.
    # Pool housekeeping is kept out of traces (it would be a span per connect/release, not per query).
    with suppress_instrumentation():
        for type_name in ("json", "jsonb"):
            await conn.set_type_codec(
                type_name, schema="pg_catalog", encoder=json.dumps, decoder=json.loads, format="text"
            )


class _PooledConnection(asyncpg.Connection):
    """Remembers whether LISTEN was sent on it, so its release knows whether to UNLISTEN."""

    listened = False

    async def add_listener(self, channel: str, callback: Any) -> None:
        self.listened = True
        await super().add_listener(channel, callback)


async def _reset_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Run on release, after asyncpg's own client-side reset (which rolls back a transaction left open
    and drops listener callbacks): UNLISTEN if the borrower listened, else nothing.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release: one more round trip per borrow, which cut a one-query borrow from ~9,500 to
    ~3,500/s. Pooled sessions here hold no other session-level state, by rule (docs/ARCHITECTURE.md,
    retail_common.db): locks are transaction-scoped (pg_advisory_xact_lock, SELECT ... FOR UPDATE),
    settings are SET LOCAL, no cursor is declared WITH HOLD; long-lived LISTEN runs on dedicated
    connections (the auth and registry caches).
    """
    if isinstance(conn, _PooledConnection) and conn.listened:
        conn.listened = False
        with suppress_instrumentation():
            await conn.execute("UNLISTEN *")


async def create_pool(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    command_timeout: float | None = None,
    application_name: str | None = None,
) -> asyncpg.Pool[asyncpg.Record]:
    """A pool whose sessions run in UTC with json/jsonb decoded to Python values.

    `application_name` (shown in pg_stat_activity) defaults to OTEL_SERVICE_NAME, the same name the
    service's traces carry, so a slow query can be matched to its service.
    """
    name = application_name or os.environ.get("OTEL_SERVICE_NAME") or "retail"
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        reset=_reset_connection,
        connection_class=_PooledConnection,
        server_settings={"application_name": name, "timezone": "UTC"},
    )


@asynccontextmanager
async def transaction(
    pool_or_conn: asyncpg.Pool[asyncpg.Record] | Connection,
    *,
    isolation: Isolation = "read_committed",
    readonly: bool = False,
) -> AsyncIterator[Connection]:
    """Yield a connection inside a transaction: commit on success, roll back on any exception.

    Given a pool, a connection is borrowed for the transaction's lifetime and returned afterwards.
    Given a connection already in a transaction, this becomes a savepoint (asyncpg's nesting rule).
    """
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn, conn.transaction(isolation=isolation, readonly=readonly):
            yield conn
    else:
        # A savepoint inherits the outer isolation; asyncpg refuses a different one, so only pass
        # an explicit (non-default) request through and let asyncpg report a real conflict.
        nested = pool_or_conn.is_in_transaction() and isolation == "read_committed"
        async with pool_or_conn.transaction(isolation=None if nested else isolation, readonly=readonly):
            yield pool_or_conn
