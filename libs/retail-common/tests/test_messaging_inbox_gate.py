"""The inbox's batch gate: pure decisions, and the two statements against a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from retail_common.db import create_pool
from retail_common.messaging._inbox_gate import (
    Claim,
    ClaimRaceError,
    Outcome,
    VersionPolicy,
    decide,
    lock_and_read,
    record,
)
from retail_common.messaging.testing import migrate_messaging
from retail_common.testing import TestDatabase

A, D, S, G = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.STALE, Outcome.GAP
IDS = [uuid.UUID(int=i) for i in range(1, 40)]


def claim(key: str, version: int, event: int) -> Claim:
    return Claim(IDS[event], "account", key, version)


def outcomes(
    policy: VersionPolicy, *claims: Claim, current: int = 0, seen: tuple[int, ...] = ()
) -> list[Outcome]:
    start = {("account", c.aggregate_key): current for c in claims} if current else {}
    return decide(claims, start, {IDS[i] for i in seen}, policy)[0]


def test_newer_applies_only_versions_above_the_running_last() -> None:
    assert outcomes(VersionPolicy.NEWER, claim("a", 6, 1), claim("a", 5, 2), claim("a", 7, 3)) == [A, S, A]
    assert outcomes(VersionPolicy.NEWER, claim("a", 3, 1), claim("a", 4, 2), current=3) == [S, A]


def test_sequential_applies_last_plus_one_and_leaves_gaps() -> None:
    policy = VersionPolicy.SEQUENTIAL
    # As one message at a time: 2 is a gap, 1 applies, 3 is still a gap (2 was not applied).
    assert outcomes(policy, claim("s", 2, 1), claim("s", 1, 2), claim("s", 3, 3)) == [G, A, G]
    assert outcomes(policy, claim("s", 1, 1), claim("s", 2, 2), claim("s", 2, 3)) == [A, A, S]
    assert outcomes(policy, claim("s", 5, 1), claim("s", 4, 2), current=3) == [G, A]


def test_duplicates_in_the_inbox_or_earlier_in_the_batch_are_skipped() -> None:
    assert outcomes(VersionPolicy.NEWER, claim("a", 1, 1), claim("a", 2, 2), seen=(1,)) == [D, A]
    assert outcomes(VersionPolicy.NEWER, claim("a", 1, 1), claim("a", 1, 1)) == [A, D]
    # A gap leaves no trace: the same event later in the batch is gated afresh.
    seq = VersionPolicy.SEQUENTIAL
    assert outcomes(seq, claim("s", 2, 1), claim("s", 1, 2), claim("s", 2, 1)) == [G, A, A]


def test_advanced_versions_are_the_last_applied_per_aggregate() -> None:
    claims = [claim("a", 1, 1), claim("b", 4, 2), claim("a", 3, 3), claim("b", 2, 4)]
    _, advanced = decide(claims, {("account", "b"): 3}, set(), VersionPolicy.NEWER)
    assert advanced == {("account", "a"): 3, ("account", "b"): 4}


_claims = st.lists(
    st.builds(claim, st.sampled_from(["a", "b", "c"]), st.integers(1, 6), st.integers(0, 12)), max_size=25
)


@given(_claims, st.sampled_from(list(VersionPolicy)), st.sets(st.integers(0, 12), max_size=4))
def test_one_batch_decides_as_one_transaction_per_message(
    claims: list[Claim], policy: VersionPolicy, seen: set[int]
) -> None:
    """The batch path must be indistinguishable from the one-by-one fallback."""
    current = {("account", "b"): 2}
    together, advanced = decide(claims, current, {IDS[i] for i in seen}, policy)
    state, done, one_by_one = dict(current), {IDS[i] for i in seen}, []
    for c in claims:
        [outcome], moved = decide([c], state, done, policy)
        one_by_one.append(outcome)
        state.update(moved)
        if outcome in (A, S):
            done.add(c.dedupe_id)
    assert together == one_by_one
    assert {**current, **advanced} == state


# -- statements against Postgres ------------------------------------------------------------------


@pytest_asyncio.fixture
async def pool(database: TestDatabase) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    await migrate_messaging(database.dsn)
    p = await create_pool(database.dsn, min_size=2, max_size=4)
    try:
        yield p
    finally:
        await p.close()


async def gate(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], claims: list[Claim], policy: VersionPolicy
) -> list[Outcome]:
    current, seen = await lock_and_read(conn, "c", claims)
    result, advanced = decide(claims, current, seen, policy)
    await record(conn, "c", claims, result, advanced)
    return result


async def test_statements_record_inbox_rows_and_versions(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    claims = [claim("a", 2, 1), claim("a", 1, 2), claim("b", 1, 3), claim("b", 3, 4)]
    async with pool.acquire() as conn, conn.transaction():
        assert await gate(conn, claims, VersionPolicy.SEQUENTIAL) == [G, A, A, G]
    versions = {r["aggregate_key"]: r["version"] for r in await pool.fetch("select * from inbox_versions")}
    assert versions == {"a": 1, "b": 1}
    rows = await pool.fetch("select event_id, applied from inbox order by event_id")
    assert [(r["event_id"], r["applied"]) for r in rows] == [(IDS[2], True), (IDS[3], True)]
    async with pool.acquire() as conn, conn.transaction():
        again = [claim("a", 2, 1), claim("a", 1, 2), claim("b", 1, 5)]
        assert await gate(conn, again, VersionPolicy.SEQUENTIAL) == [A, D, S]
    assert await pool.fetchval("select applied from inbox where event_id = $1", IDS[5]) is False


async def test_a_concurrent_commit_of_the_same_event_is_a_race_not_a_double_apply(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    first = await pool.acquire()
    second = await pool.acquire()
    try:
        tx1 = first.transaction()
        await tx1.start()
        await gate(first, [claim("a", 1, 1)], VersionPolicy.NEWER)
        # The second transaction waits for the first's lock on aggregate "a", reading the inbox with a
        # snapshot from before the first commits: record() must notice the row it did not see.
        racing = asyncio.create_task(_gate_in_transaction(second, [claim("a", 1, 1)]))
        await _until_waiting(pool)
        await tx1.commit()
        with pytest.raises(ClaimRaceError):
            await racing
    finally:
        await pool.release(first)
        await pool.release(second)
    assert await pool.fetchval("select version from inbox_versions") == 1


async def test_overlapping_batches_in_opposite_orders_do_not_deadlock(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    keys = [f"k{i:02d}" for i in range(30)]

    async def run(order: list[str], version: int) -> None:
        async with pool.acquire() as conn:
            await _gate_in_transaction(conn, [Claim(uuid.uuid4(), "account", k, version) for k in order])

    await asyncio.gather(*(run(order, 2) for order in [keys, keys[::-1]] * 3))
    assert await pool.fetchval("select count(*) from inbox_versions where version = 2") == len(keys)
    assert await pool.fetchval("select count(*) from inbox") == 6 * len(keys)


async def _gate_in_transaction(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], claims: list[Claim]
) -> None:
    async with conn.transaction():
        await gate(conn, claims, VersionPolicy.NEWER)
        await asyncio.sleep(0.01)  # hold the locks a little, as handlers would


async def _until_waiting(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    sql = (
        "select count(*) from pg_stat_activity"
        " where wait_event_type = 'Lock' and datname = current_database()"
    )
    while not await pool.fetchval(sql):  # noqa: ASYNC110 - polling another session's state
        await asyncio.sleep(0.01)
