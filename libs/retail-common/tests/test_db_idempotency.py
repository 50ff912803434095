"""Idempotency keys: a retry gets the first response, a reused key is refused, duplicates race safely."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from retail.testing.v1 import probe_pb2
from retail_common.db import (
    IDEMPOTENCY_MIGRATIONS,
    claim_request,
    migrate,
    request_fingerprint,
    store_response,
    stored_response,
    transaction,
)
from retail_common.errors import InvalidArgument


@pytest.fixture
async def pool(database_url):
    await migrate(database_url, [IDEMPOTENCY_MIGRATIONS])
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    await pool.execute("create table effects (request_id text, amount bigint)")
    yield pool
    await pool.close()


async def record(pool, request: probe_pb2.RecordAmountRequest, hold: asyncio.Event | None = None):
    """A mutation done the shared way: claim, apply, store, all in one transaction."""
    async with transaction(pool) as conn:
        first = await claim_request(
            conn, scope="alice:RecordAmount", request_id=request.request_id,
            fingerprint=request_fingerprint(request),
        )  # fmt: skip
        if first is not None:
            return probe_pb2.RecordAmountResponse.FromString(first)
        await conn.execute("insert into effects values ($1, $2)", request.request_id, request.amount)
        if hold is not None:
            await hold.wait()
        response = probe_pb2.RecordAmountResponse(version=request.amount)
        await store_response(
            conn, scope="alice:RecordAmount", request_id=request.request_id, response=response
        )
        return response


def test_fingerprint_ignores_only_the_key() -> None:
    a = probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=5)
    b = probe_pb2.RecordAmountRequest(request_id="r2", account_id="x", amount=5)
    c = probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=6)
    assert request_fingerprint(a) == request_fingerprint(b) != request_fingerprint(c)


async def test_retry_returns_the_first_response_and_applies_once(pool):
    request = probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=5)
    assert (await record(pool, request)).version == 5
    assert (await record(pool, request)).version == 5
    assert await pool.fetchval("select count(*) from effects") == 1


async def test_reused_key_for_another_request_is_refused_naming_the_field(pool):
    await record(pool, probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=5))
    with pytest.raises(InvalidArgument) as caught:
        await record(pool, probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=6))
    assert [v.field for v in caught.value.violations] == ["request_id"]
    assert await pool.fetchval("select sum(amount) from effects") == 5


async def test_concurrent_duplicate_waits_for_the_first_and_gets_its_response(pool):
    request = probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=7)
    hold = asyncio.Event()
    first = asyncio.create_task(record(pool, request, hold))
    await asyncio.sleep(0.2)  # let the first claim the key and stop inside its transaction
    duplicate = asyncio.create_task(record(pool, request))
    await asyncio.sleep(0.2)
    assert not duplicate.done()  # blocked on the first one's key row
    hold.set()
    assert (await first).version == (await duplicate).version == 7
    assert await pool.fetchval("select count(*) from effects") == 1


async def test_a_rolled_back_first_call_frees_the_key(pool):
    request = probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=3)

    async def fail_inside() -> None:
        async with transaction(pool) as conn:
            await claim_request(conn, scope="s", request_id="r1", fingerprint=request_fingerprint(request))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fail_inside()
    assert (await record(pool, request)).version == 3


async def test_stored_response_looks_up_without_claiming(pool):
    request = probe_pb2.RecordAmountRequest(request_id="r1", account_id="x", amount=4)
    print_ = request_fingerprint(request)
    lookup = {"scope": "alice:RecordAmount", "request_id": "r1", "fingerprint": print_}
    async with pool.acquire() as conn:
        assert await stored_response(conn, **lookup) is None
        assert await conn.fetchval("select count(*) from request_idempotency") == 0  # nothing claimed
        await record(pool, request)
        first = await stored_response(conn, **lookup)
        assert first is not None
        assert probe_pb2.RecordAmountResponse.FromString(first).version == 4
        with pytest.raises(InvalidArgument) as caught:
            await stored_response(conn, **{**lookup, "fingerprint": "other"}, field="key")
        assert [v.field for v in caught.value.violations] == ["key"]
        assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
