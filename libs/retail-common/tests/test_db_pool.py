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
