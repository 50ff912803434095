"""Pipeline under faults: producer, two relays and a consumer as separate OS processes.

While 10,000 events are written (concurrent transactions, ~10% rolled back, some held open so outbox ids
commit out of order), the test kills -9 and restarts nats-server twice, kills -9 the active relay (the
standby takes over) and kills -9 the consumer (restarted). Then it checks real effects on the
consumer's own database against the producer's committed state.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from retail_common.messaging import ensure_streams
from retail_common.messaging.testing import DEADLETTER_STREAM, TESTING_STREAM, connect_nats, migrate_messaging
from retail_common.testing import NatsServer, PostgresServer, TestDatabase

pytestmark = pytest.mark.faults

PROCS = Path(__file__).with_name("procs.py")
_spec = importlib.util.spec_from_file_location("pipeline_procs", PROCS)
assert _spec is not None
assert _spec.loader is not None
procs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(procs)
EVENTS = int(os.environ.get("PIPELINE_FAULT_EVENTS", "10000"))


@pytest_asyncio.fixture
async def consumer_db(postgres_server: PostgresServer) -> AsyncIterator[TestDatabase]:
    db = await postgres_server.create_database("cons")
    try:
        yield db
    finally:
        await db.drop()


async def _fetchval(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _wait(what: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_pipeline_under_faults(
    database: TestDatabase, consumer_db: TestDatabase, nats_server: NatsServer, tmp_path: Path
) -> None:
    prod, cons = database.dsn, consumer_db.dsn
    for dsn, schema in ((prod, procs.PRODUCER_SCHEMA), (cons, procs.CONSUMER_SCHEMA)):
        await migrate_messaging(dsn)
        conn = await asyncpg.connect(dsn)
        await conn.execute(schema)
        await conn.close()
    nc = await connect_nats(nats_server.url, "test")
    await ensure_streams(nc.jetstream(), [TESTING_STREAM, DEADLETTER_STREAM])
    await nc.close()

    relays = {
        h: procs.Proc(h, ["relay", "--dsn", prod, "--nats", nats_server.url, "--holder", h], tmp_path)
        for h in ("relay-a", "relay-b")
    }
    consumer = procs.Proc("consumer", ["consumer", "--dsn", cons, "--nats", nats_server.url], tmp_path)
    producer = procs.Proc("producer", ["producer", "--dsn", prod, "--events", str(EVENTS)], tmp_path)
    everything = [*relays.values(), consumer, producer]
    try:
        relays["relay-a"].start()
        await _wait("relay-a to hold the lease", lambda: _holder_is(prod, "relay-a"), 20)
        relays["relay-b"].start()
        consumer.start()
        producer.start()

        async def committed() -> int:
            return await _fetchval(prod, "select coalesce(sum(version), 0) from accounts")

        async def reach(share: float) -> None:
            await _wait(f"{share:.0%} produced", lambda: _at_least(committed(), share * EVENTS), 120)

        await reach(0.12)
        nats_server.kill()
        await asyncio.sleep(1.0)
        nats_server.start()

        await reach(0.35)
        active = await _fetchval_text(prod, "select holder from relay_leases")
        relays[active].kill9()
        killed_at = time.time()
        standby = next(h for h in relays if h != active)
        await _wait("standby to take the lease", lambda: _holder_is(prod, standby), 20)

        await reach(0.55)
        consumer.kill9()
        await asyncio.sleep(0.5)
        consumer.start()

        await reach(0.75)
        nats_server.kill()
        await asyncio.sleep(1.0)
        nats_server.start()

        assert producer.popen is not None
        await asyncio.to_thread(producer.popen.wait, 180)
        assert producer.popen.returncode == 0, producer.tail()

        await _wait(
            "outbox drained",
            lambda: _is(_fetchval(prod, "select count(*) from outbox where published_at is null"), 0),
            90,
        )
        await _wait(
            "consumer caught up",
            lambda: _is(_fetchval(cons, "select coalesce(sum(applied), 0) from sums"), EVENTS),
            90,
        )
        await _wait(
            "state consumer caught up",
            lambda: _is(_fetchval(cons, "select coalesce(sum(version), 0) from state"), EVENTS),
            60,
        )
        await asyncio.sleep(1.0)  # anything applied twice would show up now

        await _check(prod, cons, nats_server, killed_at, standby)
    except BaseException:
        for p in everything:
            print(p.tail())
        raise
    finally:
        for p in everything:
            p.stop()
        for p in everything:  # shown with -s: what each process did (counts of duplicates, gaps, ...)
            print(p.tail(2))


async def _check(prod: str, cons: str, nats_server: NatsServer, killed_at: float, standby: str) -> None:
    pconn = await asyncpg.connect(prod)
    cconn = await asyncpg.connect(cons)
    try:
        accounts = {
            r["account"]: (r["balance"], r["version"]) for r in await pconn.fetch("select * from accounts")
        }
        sums = {
            r["account"]: (r["total"], r["version"], r["applied"])
            for r in await cconn.fetch("select * from sums")
        }
        state = {r["account"]: (r["balance"], r["version"]) for r in await cconn.fetch("select * from state")}
        committed_ids = {str(r["event_id"]) for r in await pconn.fetch("select event_id from outbox")}
        rolled_back = {str(r["event_id"]) for r in await pconn.fetch("select event_id from rolled_back")}
        after_kill = await pconn.fetchval(
            "select count(*) from outbox where published_at > to_timestamp($1)", killed_at
        )
        dead = await cconn.fetchval("select count(*) from dead_letters")
    finally:
        await pconn.close()
        await cconn.close()

    assert sum(v for _, v in accounts.values()) == EVENTS
    assert len(rolled_back) > EVENTS * 0.05, "a share of transactions rolled back"
    assert len(committed_ids) == EVENTS
    # Every aggregate's running sum and applied count match the producer's committed state exactly:
    # nothing lost, nothing applied twice (versions 1..n each applied once, in order).
    assert sums == {a: (balance, version, version) for a, (balance, version) in accounts.items()}
    # The NEWER-gated consumer of the same events ends at each aggregate's last state.
    assert state == accounts
    assert dead == 0
    assert after_kill > 0, f"{standby} published after the active relay was killed"

    # The stream holds exactly the committed events, once each; no rolled-back event was published.
    nc = await connect_nats(nats_server.url, "check")
    try:
        js = nc.jetstream()
        info = await js.stream_info("TESTING")
        sub = await js.subscribe("retail.testing.>", ordered_consumer=True, stream="TESTING")
        seen: list[str] = []
        while len(seen) < info.state.messages:
            msg = await sub.next_msg(timeout=5)
            seen.append((msg.headers or {})["Nats-Msg-Id"])
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert len(seen) == len(set(seen)) == EVENTS
    assert set(seen) == committed_ids
    assert not rolled_back & set(seen)


async def _fetchval_text(dsn: str, sql: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _holder_is(dsn: str, holder: str) -> bool:
    try:
        return await _fetchval_text(dsn, "select holder from relay_leases where expires_at > now()") == holder
    except asyncpg.PostgresError:
        return False


async def _at_least(value: Awaitable[int], minimum: float) -> bool:
    return await value >= minimum


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
