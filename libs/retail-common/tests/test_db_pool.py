"""create_pool and transaction against a real Postgres database."""

from collections.abc import AsyncIterator
from typing import TypeAlias

import asyncpg
import pytest

from retail_common.db import Connection, create_pool, transaction

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=2, application_name="pool-test")
    await pool.execute("create table t (id int primary key, doc jsonb)")
    try:
        yield pool
    finally:
        await pool.close()


async def test_sessions_run_in_utc_with_application_name_and_json_codecs(
    pool: Pool,
) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("show timezone") == "UTC"
        assert await conn.fetchval("show application_name") == "pool-test"
        await conn.execute("insert into t values (1, $1)", {"a": [1, "x"], "b": None})
        assert await conn.fetchval("select doc from t where id = 1") == {"a": [1, "x"], "b": None}
        assert await conn.fetchval("select '{\"k\": 2}'::json") == {"k": 2}


async def test_transaction_commits_on_success(pool: Pool) -> None:
    async with transaction(pool) as conn:
        await conn.execute("insert into t values (1, null)")
    assert await pool.fetchval("select count(*) from t") == 1


async def test_transaction_rolls_back_on_exception(pool: Pool) -> None:
    async def failing_unit_of_work() -> None:
        async with transaction(pool) as conn:
            await conn.execute("insert into t values (1, null)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_unit_of_work()
    assert await pool.fetchval("select count(*) from t") == 0


async def insert_twice(conn: Connection) -> None:
    async with transaction(conn) as inner:
        await inner.execute("insert into t values (1, null)")
        await inner.execute("insert into t values (1, null)")


async def test_transaction_uses_requested_isolation_and_accepts_a_connection(
    pool: Pool,
) -> None:
    async with pool.acquire() as conn, transaction(conn, isolation="serializable") as tx:
        assert tx is conn
        assert await tx.fetchval("show transaction_isolation") == "serializable"
        # Nested default-isolation block is a savepoint: its failure leaves the outer work intact.
        with pytest.raises(asyncpg.UniqueViolationError):
            await insert_twice(tx)
        await tx.execute("insert into t values (2, null)")
    assert await pool.fetchval("select array_agg(id) from t") == [2]


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    await pool.execute("create table t (id int primary key, doc jsonb)")
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(one_connection: Pool) -> None:
    async with one_connection.acquire() as conn:
        backend = await conn.fetchval("select pg_backend_pid()")
        await conn.execute("begin")
        await conn.execute("insert into t values (1, null)")
    async with one_connection.acquire() as conn:
        assert await conn.fetchval("select pg_backend_pid()") == backend  # the same session, reused
        assert not conn.is_in_transaction()
        assert await conn.fetchval("select count(*) from t") == 0


# asyncpg warns of the listener left on release; that leftover is exactly what this test provokes.
@pytest.mark.filterwarnings("ignore:.*active notification listener:asyncpg.InterfaceWarning")
async def test_listeners_added_on_a_pooled_connection_are_removed_on_release(one_connection: Pool) -> None:
    async with one_connection.acquire() as conn:
        await conn.add_listener("pool_test_channel", lambda *_: None)
        assert await conn.fetchval("select count(*) from pg_listening_channels()") == 1
    async with one_connection.acquire() as conn:
        assert await conn.fetchval("select count(*) from pg_listening_channels()") == 0


async def test_a_clean_release_sends_nothing(one_connection: Pool, database_url: str) -> None:
    async with one_connection.acquire() as conn:
        backend = await conn.fetchval("select pg_backend_pid()")
        await conn.fetchval("select 42 as marker")
    admin = await asyncpg.connect(database_url)
    try:
        last = await admin.fetchval("select query from pg_stat_activity where pid = $1", backend)
    finally:
        await admin.close()
    assert last == "select 42 as marker"  # not asyncpg's reset script (SELECT pg_advisory_unlock_all(); ...)
