"""OutboxWriter: versions per aggregate, batches, and concurrent writers (real Postgres)."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest

from retail_common.db import transaction
from retail_common.messaging import OutboxEvent, OutboxWriter
from retail_common.messaging.testing import migrate_messaging

WRITER = OutboxWriter()


def event(key: str, body: bytes = b"x") -> OutboxEvent:
    return OutboxEvent("retail.testing.v1.t", "T", "account", key, body)


@pytest.fixture
async def pool(database_url):
    await migrate_messaging(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


async def test_a_batch_gets_consecutive_versions_per_aggregate_in_list_order(pool):
    async with transaction(pool) as conn:
        await WRITER.append(conn, subject="s", event_type="T", aggregate_type="account", aggregate_key="a",
                            payload=b"0")  # fmt: skip
    async with transaction(pool) as conn:
        results = await WRITER.append_many(
            conn,
            [event("a"), event("b"), event("a"), OutboxEvent("s", "T", "account", "b", lambda v: b"%d" % v)],
        )
    assert [version for _, version in results] == [2, 1, 3, 2]
    rows = await pool.fetch("select aggregate_key, aggregate_version, payload from outbox order by id")
    assert [(r["aggregate_key"], r["aggregate_version"]) for r in rows] == [
        ("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2),
    ]  # fmt: skip
    assert rows[-1]["payload"] == b"2"  # a callable payload sees its own version
    assert len({event_id for event_id, _ in results}) == 4


async def test_rolled_back_batch_leaves_no_version_gap(pool):
    async def write_then_fail() -> None:
        async with transaction(pool) as conn:
            await WRITER.append_many(conn, [event("a"), event("a")])
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    async with transaction(pool) as conn:
        assert [v for _, v in await WRITER.append_many(conn, [event("a")])] == [1]
    assert await pool.fetchval("select count(*) from outbox") == 1


async def test_concurrent_batches_over_shared_aggregates_never_deadlock_or_skip(pool):
    keys = [f"k{i}" for i in range(8)]

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(10):
            batch = [
                event(rng.choice(keys)) for _ in range(6)
            ]  # random order: lock order is the writer's job
            async with transaction(pool) as conn:
                await WRITER.append_many(conn, batch)

    await asyncio.gather(*(writer(seed) for seed in range(6)))
    rows = await pool.fetch("select aggregate_key, aggregate_version from outbox order by id")
    assert len(rows) == 6 * 10 * 6
    by_key: dict[str, list[int]] = {}
    for row in rows:
        by_key.setdefault(row["aggregate_key"], []).append(row["aggregate_version"])
    for versions in by_key.values():
        assert versions == list(range(1, len(versions) + 1))  # gap-free, in id order


async def test_append_outside_a_transaction_is_refused(pool):
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the caller's transaction"):
            await WRITER.append_many(conn, [event("a")])


_SELECT_SOURCE = "select k as aggregate_key, 'retail.testing.v1.t.' || k as subject from unnest($1::text[]) k"


async def test_append_select_writes_one_event_per_row_continuing_each_aggregates_versions(pool):
    async with transaction(pool) as conn:
        await WRITER.append_many(conn, [event("a"), event("a")])
    async with transaction(pool) as conn:
        written = await WRITER.append_select(
            conn,
            source=_SELECT_SOURCE,
            payload="convert_to(s.aggregate_key || ':' || b.aggregate_version, 'UTF8')",
            event_type="T",
            aggregate_type="account",
            args=[["b", "a", "c"]],
            schema_version=2,
        )
    assert written == 3
    rows = await pool.fetch("select * from outbox order by id")
    assert [(r["aggregate_key"], r["aggregate_version"], r["payload"]) for r in rows[2:]] == [
        ("a", 3, b"a:3"), ("b", 1, b"b:1"), ("c", 1, b"c:1"),
    ]  # fmt: skip
    assert {(r["subject"], r["event_type"], r["schema_version"], r["aggregate_type"]) for r in rows[2:]} == {
        (f"retail.testing.v1.t.{k}", "T", 2, "account") for k in "abc"
    }
    ids = [r["event_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids[2:])
    occurred = rows[2]["occurred_at"]
    assert all(r["occurred_at"] == occurred for r in rows[2:])
    # the timestamp prefix of the ids is the call's occurred_at (milliseconds)
    assert int.from_bytes(ids[2].bytes[:6], "big") == int(occurred.timestamp() * 1000)
    async with transaction(pool) as conn:  # append_many carries on after it
        assert [v for _, v in await WRITER.append_many(conn, [event("c")])] == [2]


async def test_append_select_with_no_rows_writes_nothing_and_a_repeated_key_is_refused(pool):
    async with transaction(pool) as conn:
        args = [[]]
        assert await WRITER.append_select(
            conn, source=_SELECT_SOURCE, payload="'\\x00'::bytea", event_type="T",
            aggregate_type="account", args=args,
        ) == 0  # fmt: skip
    with pytest.raises(asyncpg.CardinalityViolationError):
        async with transaction(pool) as conn:
            await WRITER.append_select(
                conn, source=_SELECT_SOURCE, payload="'\\x00'::bytea", event_type="T",
                aggregate_type="account", args=[["a", "a"]],
            )  # fmt: skip
    assert await pool.fetchval("select count(*) from outbox") == 0
    assert await pool.fetchval("select count(*) from aggregate_versions") == 0


async def test_append_select_outside_a_transaction_is_refused(pool):
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await WRITER.append_select(
                conn, source=_SELECT_SOURCE, payload="'\\x00'::bytea", event_type="T",
                aggregate_type="account", args=[["a"]],
            )  # fmt: skip


async def test_concurrent_append_select_and_append_many_over_shared_aggregates_stay_gap_free(pool):
    keys = [f"k{i}" for i in range(8)]

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(10):
            async with transaction(pool) as conn:
                if seed % 2:
                    await WRITER.append_many(conn, [event(rng.choice(keys)) for _ in range(4)])
                else:
                    await WRITER.append_select(
                        conn, source=_SELECT_SOURCE, payload="'\\x00'::bytea", event_type="T",
                        aggregate_type="account", args=[rng.sample(keys, 4)],
                    )  # fmt: skip

    await asyncio.gather(*(writer(seed) for seed in range(6)))
    rows = await pool.fetch("select aggregate_key, aggregate_version from outbox order by id")
    assert len(rows) == 6 * 10 * 4
    by_key: dict[str, list[int]] = {}
    for row in rows:
        by_key.setdefault(row["aggregate_key"], []).append(row["aggregate_version"])
    for versions in by_key.values():
        assert versions == list(range(1, len(versions) + 1))  # gap-free, in id order


async def test_append_select_with_types_per_row_and_a_data_modifying_cte(pool):
    await pool.execute("create table counters (k text primary key, n int not null)")
    await pool.execute("insert into counters values ('a', 1), ('b', 1)")
    async with transaction(pool) as conn:
        await WRITER.append_many(conn, [OutboxEvent("s", "T", "zeta", "a", b"")])
        written = await WRITER.append_select(
            conn,
            ctes="counted as (update counters set n = n + 1 where k = any($1::text[]) returning k, n)",
            source=(
                "select 'zeta' as aggregate_type, 'Z' as event_type, k as aggregate_key,"
                " 'z.' || k as subject, n from counted"
                " union all select 'alpha', 'A', 'a', 'a.a', null"
            ),
            payload="convert_to(s.event_type || coalesce(s.n::text, '-') || b.aggregate_version, 'UTF8')",
            args=[["a", "b"]],
        )
    assert written == 3
    rows = await pool.fetch("select * from outbox order by id")
    assert [(r["aggregate_type"], r["event_type"], r["aggregate_key"], r["payload"]) for r in rows[1:]] == [
        ("alpha", "A", "a", b"A-1"), ("zeta", "Z", "a", b"Z22"), ("zeta", "Z", "b", b"Z21"),
    ]  # fmt: skip
    assert await pool.fetchval("select sum(n) from counters") == 4


async def test_append_select_returning_outside_a_transaction_is_one_atomic_statement(pool):
    await pool.execute("create table items (k text primary key)")
    source = (
        "select 'item' as aggregate_type, 'I' as event_type, k as aggregate_key, 'i.' || k as subject"
        " from added"
    )
    async with pool.acquire() as conn:
        rows = await WRITER.append_select_returning(
            conn,
            ctes="added as (insert into items select unnest($1::text[]) returning k)",
            source=source,
            payload="convert_to(s.aggregate_key || b.aggregate_version, 'UTF8')",
            args=[["x", "y"]],
        )
        assert [(r["aggregate_key"], r["aggregate_version"], bytes(r["payload"])) for r in rows] == [
            ("x", 1, b"x1"), ("y", 1, b"y1"),
        ]  # fmt: skip
        with pytest.raises(asyncpg.UniqueViolationError):  # the insert fails: no event either
            await WRITER.append_select_returning(
                conn,
                ctes="added as (insert into items select unnest($1::text[]) returning k)",
                source=source,
                payload="''::bytea",
                args=[["z", "x"]],
            )
    assert await pool.fetchval("select count(*) from items") == 2
    assert await pool.fetchval("select count(*) from outbox") == 2
