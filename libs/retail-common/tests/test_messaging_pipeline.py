"""Outbox, relay, inbox, dead letters and replay against a real Postgres and a real nats-server."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from retail.testing.v1.probe_pb2 import AmountRecorded
from retail_common.db import Connection, create_pool
from retail_common.messaging import (
    Envelope,
    InboxConsumer,
    OutboxRelay,
    OutboxWriter,
    VersionPolicy,
    ensure_streams,
    list_dead_letters,
    new_event_id,
    replay_dead_letter,
)
from retail_common.messaging.testing import (
    DEADLETTER_STREAM,
    TESTING_STREAM,
    connect_nats,
    migrate_messaging,
)
from retail_common.testing import NatsServer, TestDatabase

SUBJECT = "retail.testing.v1.amount_recorded"


@pytest_asyncio.fixture
async def pool(database: TestDatabase) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    await migrate_messaging(database.dsn)
    p = await create_pool(database.dsn, min_size=1, max_size=8)
    await p.execute(
        "create table view_accounts (account text primary key, total bigint not null,"
        " version bigint not null, applied int not null)"
    )
    try:
        yield p
    finally:
        await p.close()


@pytest_asyncio.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect_nats(nats_server.url)
    await ensure_streams(client.jetstream(), [TESTING_STREAM, DEADLETTER_STREAM])
    try:
        yield client
    finally:
        await client.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def stream_messages(js: JetStreamContext, stream: str) -> list[Any]:
    info = await js.stream_info(stream)
    return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


async def record(
    pool: asyncpg.Pool[asyncpg.Record], account: str, amount: int, *, hold: float = 0.0, commit: bool = True
) -> tuple[uuid.UUID, int]:
    writer = OutboxWriter()

    class RollbackError(Exception):
        pass

    result: tuple[uuid.UUID, int] | None = None
    try:
        async with pool.acquire() as conn, conn.transaction():
            result = await writer.append(
                conn,
                subject=SUBJECT,
                event_type="retail.testing.v1.AmountRecorded",
                aggregate_type="account",
                aggregate_key=account,
                payload=lambda v: AmountRecorded(account_id=account, amount=amount, version=v),
            )
            await asyncio.sleep(hold)
            if not commit:
                raise RollbackError
    except RollbackError:
        pass
    assert result is not None
    return result


async def test_relay_publishes_late_commits_never_rollbacks_and_marks_rows(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    # A transaction takes outbox id 1 and stays open while later ones (ids 2, 3) commit.
    held = asyncio.create_task(record(pool, "held", 7, hold=1.0))
    await asyncio.sleep(0.2)
    a1 = await record(pool, "a", 1)
    rolled_back = await record(pool, "a", 100, commit=False)
    a2 = await record(pool, "a", 2)
    relay = OutboxRelay(pool, js, lease_name="t", batch_size=10, lease_ttl=2.0)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _count(pool, "published_at is not null", 2))
        assert (await held)[1] == 1
        # The row with the smallest id committed last: a high-water mark would have skipped it.
        await eventually(lambda: _count(pool, "published_at is null", 0))
    finally:
        relay.stop()
        await task
    assert (a1[1], a2[1]) == (1, 2), "rolled-back bump leaves no gap"
    msgs = await stream_messages(js, "TESTING")
    ids = [m.headers["Nats-Msg-Id"] for m in msgs]
    assert sorted(ids) == sorted([str(a1[0]), str(a2[0]), str((await held)[0])])
    assert str(rolled_back[0]) not in ids
    first = next(m for m in msgs if m.headers["Nats-Msg-Id"] == str(a1[0]))
    assert first.headers["Retail-Aggregate-Key"] == "a"
    assert first.headers["Retail-Aggregate-Version"] == "1"
    assert first.headers["Retail-Event-Type"] == "retail.testing.v1.AmountRecorded"
    assert AmountRecorded.FromString(first.data).amount == 1
    rows = await pool.fetch("select stream, stream_seq from outbox order by id")
    assert {r["stream"] for r in rows} == {"TESTING"}
    assert all(r["stream_seq"] for r in rows)


async def _count(pool: asyncpg.Pool[asyncpg.Record], where: str, expected: int) -> bool:
    return int(await pool.fetchval(f"select count(*) from outbox where {where}")) == expected


async def test_retry_after_lost_ack_is_deduplicated_by_event_id(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    event_id, _ = await record(pool, "a", 5)
    row = await pool.fetchrow("select * from outbox")
    assert row is not None
    # The first attempt reached the stream but its ack was "lost" (the row is still unpublished).
    await js.publish(SUBJECT, bytes(row["payload"]), headers={"Nats-Msg-Id": str(event_id)})
    relay = OutboxRelay(pool, js, lease_name="t", lease_ttl=2.0)
    assert await relay._lease.acquire_or_renew()
    assert await relay.relay_once() == (1, 0)
    assert len(await stream_messages(js, "TESTING")) == 1
    assert await _count(pool, "published_at is null", 0)


async def test_one_active_relay_per_lease_and_standby_takes_over(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    first = OutboxRelay(pool, js, lease_name="svc", holder_id="first", lease_ttl=1.0)
    second = OutboxRelay(pool, js, lease_name="svc", holder_id="second", lease_ttl=1.0)
    t1 = asyncio.create_task(first.run())
    await eventually(lambda: _true(first.is_active))
    t2 = asyncio.create_task(second.run())
    for _ in range(20):
        await asyncio.sleep(0.1)
        assert first.is_active
        assert not second.is_active
    await record(pool, "a", 1)
    await eventually(lambda: _count(pool, "published_at is null", 0))
    assert (first.published_count, second.published_count) == (1, 0)
    # The holder's lease row is stolen (as after a long pause): it must stop once it cannot renew.
    await pool.execute("update relay_leases set holder = 'intruder', expires_at = now() + interval '1 hour'")
    await eventually(lambda: _true(not first.is_active), within=3)
    await pool.execute("update relay_leases set expires_at = now()")
    await eventually(lambda: _true(first.is_active or second.is_active), within=3)
    active, standby = (first, second) if first.is_active else (second, first)
    active.stop()
    await eventually(lambda: _true(standby.is_active), within=3)
    await record(pool, "a", 2)
    await eventually(lambda: _count(pool, "published_at is null", 0))
    assert standby.published_count >= 1
    standby.stop()
    await asyncio.gather(t1, t2)


async def _true(value: bool) -> bool:
    return value


# -- inbox ------------------------------------------------------------------------------------------


async def apply_amount(conn: Connection, env: Envelope) -> None:
    event = AmountRecorded.FromString(env.payload)
    if event.amount < 0:
        failing = await conn.fetchval("select failing from poison_switch")
        if failing:
            raise RuntimeError(f"cannot apply negative amount {event.amount}")
    await conn.execute(
        """insert into view_accounts (account, total, version, applied) values ($1, $2, $3, 1)
           on conflict (account) do update set total = view_accounts.total + excluded.total,
                version = excluded.version, applied = view_accounts.applied + 1""",
        event.account_id,
        event.amount,
        env.aggregate_version,
    )


async def publish_event(
    js: JetStreamContext, account: str, version: int, amount: int, event_id: uuid.UUID | None = None
) -> uuid.UUID:
    env = Envelope(
        subject=SUBJECT,
        event_id=event_id or new_event_id(),
        event_type="retail.testing.v1.AmountRecorded",
        schema_version=1,
        aggregate_type="account",
        aggregate_key=account,
        aggregate_version=version,
        occurred_at=datetime.now(UTC),
        payload=AmountRecorded(account_id=account, amount=amount, version=version).SerializeToString(),
    )
    await js.publish(SUBJECT, env.payload, headers=env.headers())
    return env.event_id


def consumer(pool: asyncpg.Pool[asyncpg.Record], js: JetStreamContext, **kw: Any) -> InboxConsumer:
    settings: dict[str, Any] = {
        "stream": "TESTING",
        "durable": "view",
        "filter_subject": SUBJECT,
        "handler": apply_amount,
        "max_deliver": 3,
        "backoff": (0.1,),
        "ack_wait": 5.0,
        "fetch_timeout": 0.5,
    }
    settings.update(kw)
    return InboxConsumer(pool, js, **settings)


async def view(pool: asyncpg.Pool[asyncpg.Record], account: str) -> tuple[int, int, int] | None:
    row = await pool.fetchrow("select total, version, applied from view_accounts where account = $1", account)
    return None if row is None else (row["total"], row["version"], row["applied"])


async def test_version_5_after_version_6_leaves_state_at_6(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    await publish_event(js, "acc", 6, 60)
    await publish_event(js, "acc", 5, 50)
    dup = await publish_event(js, "other", 1, 1)
    await publish_event(js, "other", 2, 2, event_id=new_event_id())
    # The same event id again under another message id (as a replay would): deduped by the inbox.
    env_headers = {
        "Nats-Msg-Id": str(new_event_id()),
        "Retail-Original-Event-Id": str(dup),
        "Retail-Event-Type": "retail.testing.v1.AmountRecorded",
        "Retail-Schema-Version": "1",
        "Retail-Aggregate-Type": "account",
        "Retail-Aggregate-Key": "other",
        "Retail-Aggregate-Version": "1",
        "Retail-Occurred-At": datetime.now(UTC).isoformat(),
    }
    await js.publish(
        SUBJECT, AmountRecorded(account_id="other", amount=1).SerializeToString(), headers=env_headers
    )
    c = consumer(pool, js)
    task = asyncio.create_task(c.run())
    try:
        await eventually(lambda: _true(sum(c.counts.values()) >= 5))
    finally:
        c.stop()
        await task
    assert await view(pool, "acc") == (60, 6, 1)
    assert await view(pool, "other") == (3, 2, 2)
    assert c.counts["stale"] == 1
    assert c.counts["duplicate"] == 1
    assert c.counts["applied"] == 3
    assert await pool.fetchval("select version from inbox_versions where aggregate_key = 'acc'") == 6
    stale = await pool.fetchrow(
        "select applied from inbox where aggregate_key = 'acc' and aggregate_version = 5"
    )
    assert stale is not None
    assert stale["applied"] is False


async def test_poison_message_dead_letters_then_replay_applies_once(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    await pool.execute(
        "create table poison_switch (failing boolean not null); insert into poison_switch values (true)"
    )
    poison_id = await publish_event(js, "p", 1, -5)
    await publish_event(js, "q", 1, 10)
    c = consumer(pool, js, durable="poisoned")
    task = asyncio.create_task(c.run())
    try:
        await eventually(lambda: _true(c.counts["dead_lettered"] == 1))
        assert await view(pool, "q") == (10, 1, 1), "a failing message does not block others"
        assert await view(pool, "p") is None
        [letter] = await list_dead_letters(pool, consumer="poisoned")
        assert letter.event_id == poison_id
        assert letter.num_delivered == 3
        assert "handler failed 3 times" in letter.reason
        assert "negative amount -5" in letter.reason
        assert letter.subject == SUBJECT
        assert letter.replay_count == 0
        [dl_msg] = await stream_messages(js, "DEADLETTER")
        assert dl_msg.subject == "retail.deadletter.v1.poisoned"
        assert dl_msg.headers["Retail-DL-Reason"] == letter.reason
        assert dl_msg.headers["Retail-DL-Original-Subject"] == SUBJECT
        assert dl_msg.headers["Retail-DL-Original-Msg-Id"] == str(poison_id)
        assert dl_msg.data == AmountRecorded(account_id="p", amount=-5, version=1).SerializeToString()
        assert c.counts["failed"] == 3

        await pool.execute("update poison_switch set failing = false")  # the fault is fixed
        await replay_dead_letter(pool, js, letter.id)
        await eventually(lambda: _true(c.counts["applied"] == 2))
        assert await view(pool, "p") == (-5, 1, 1)
        await replay_dead_letter(pool, js, letter.id)
        await eventually(lambda: _true(c.counts["duplicate"] == 1))
        await asyncio.sleep(0.3)
        assert await view(pool, "p") == (-5, 1, 1), "second replay changes nothing"
        [after] = await list_dead_letters(pool, consumer="poisoned")
        assert after.replay_count == 2
        assert after.replayed_at is not None
    finally:
        c.stop()
        await task


async def test_undecodable_message_goes_to_dead_letters_at_once(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    await js.publish(
        SUBJECT, b"garbage", headers={"Nats-Msg-Id": str(new_event_id()), "Retail-Event-Type": "x"}
    )
    await js.publish(SUBJECT, b"no headers at all")
    c = consumer(pool, js, durable="strict", max_deliver=5)
    task = asyncio.create_task(c.run())
    try:
        await eventually(lambda: _true(c.counts["dead_lettered"] == 2))
    finally:
        c.stop()
        await task
    letters = await list_dead_letters(pool, consumer="strict")
    assert [dl.num_delivered for dl in letters] == [1, 1]
    assert letters[0].reason.startswith("undecodable: missing header Retail-")
    assert letters[1].reason == "undecodable: message has no headers"
    assert letters[1].event_id is None
    assert len(await stream_messages(js, "DEADLETTER")) == 2
    assert await pool.fetchval("select count(*) from inbox") == 0


async def test_sequential_gate_applies_each_version_once_in_order(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    for version in (2, 1, 3, 5, 4, 3):  # out of order, a gap that fills later, and a repeat of 3
        await publish_event(js, "seq", version, 10**version)
    await publish_event(js, "late", 2, 7)  # version 1 never arrives: must not be applied
    c = consumer(pool, js, version_policy=VersionPolicy.SEQUENTIAL, gap_delay=0.05, max_deliver=20)
    task = asyncio.create_task(c.run())
    try:
        await eventually(lambda: _true(c.counts["applied"] == 5))
        # The gap of "late" never fills: dead-lettered once max_deliver tries are used up.
        await eventually(lambda: _true(c.counts["dead_lettered"] == 1))
    finally:
        c.stop()
        await task
    assert await view(pool, "seq") == (111110, 5, 5)
    assert c.counts["stale"] == 1
    assert c.counts["gap"] >= 2
    assert await view(pool, "late") is None
    [letter] = await list_dead_letters(pool, consumer="view")
    assert letter.reason.startswith("version gap")
    assert letter.num_delivered == 20


async def test_relay_exports_lag_and_published_count(pool: asyncpg.Pool[asyncpg.Record], nc: Client) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    relay = OutboxRelay(pool, nc.jetstream(), lease_name="m", meter=provider.get_meter("t"))

    def points() -> dict[str, float]:
        data = reader.get_metrics_data()
        assert data is not None
        return {
            m.name: float(sum(getattr(p, "value", 0) for p in m.data.data_points))
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }

    await record(pool, "a", 1)
    await asyncio.sleep(0.3)
    assert await relay.relay_once() == (1, 0)  # no lease yet: measured, not published
    assert points()["retail.outbox.lag"] >= 0.3
    assert await relay._lease.acquire_or_renew()
    assert await relay.relay_once() == (1, 0)
    await relay.relay_once()
    measured = points()
    assert measured["retail.outbox.published"] == 1
    assert measured["retail.outbox.lag"] == 0
    provider.shutdown()


async def apply_amounts(conn: Connection, envs: Sequence[Envelope]) -> None:
    """A set-based batch handler: one statement for the whole batch."""
    events = [AmountRecorded.FromString(env.payload) for env in envs]
    if any(e.amount < 0 for e in events):
        raise RuntimeError("cannot apply a negative amount")
    await conn.execute(
        """insert into view_accounts (account, total, version, applied)
           select a, sum(m), max(v), count(*)
           from unnest($1::text[], $2::bigint[], $3::bigint[]) as u(a, m, v) group by a
           on conflict (account) do update set total = view_accounts.total + excluded.total,
                version = excluded.version, applied = view_accounts.applied + excluded.applied""",
        [e.account_id for e in events],
        [e.amount for e in events],
        [env.aggregate_version for env in envs],
    )


async def test_batch_handler_gets_only_applied_events_and_a_failure_isolates_the_poison(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    dup = await publish_event(js, "b", 1, 1)
    for account, version, amount in (("b", 3, 3), ("b", 2, 2), ("c", 1, 10), ("c", 2, 20), ("x", 1, -1)):
        await publish_event(js, account, version, amount)
    await publish_event(js, "b", 1, 1, event_id=dup)  # same event id again: deduplicated by the stream
    await js.publish(
        SUBJECT,
        AmountRecorded(account_id="b", amount=1).SerializeToString(),
        headers={**_envelope_headers("b", 1), "Retail-Original-Event-Id": str(dup)},
    )
    c = consumer(pool, js, handler=None, batch_handler=apply_amounts, durable="set_based")
    task = asyncio.create_task(c.run())
    try:
        await eventually(lambda: _true(c.counts["dead_lettered"] == 1))
        await eventually(lambda: _true(c.counts["applied"] == 4))
    finally:
        c.stop()
        await task
    assert await view(pool, "b") == (4, 3, 2), "v1 and v3 applied, v2 stale after v3"
    assert await view(pool, "c") == (30, 2, 2)
    assert await view(pool, "x") is None
    assert (c.counts["stale"], c.counts["duplicate"]) == (1, 1)
    [letter] = await list_dead_letters(pool, consumer="set_based")
    assert "negative amount" in letter.reason


def _envelope_headers(account: str, version: int) -> dict[str, str]:
    return {
        "Nats-Msg-Id": str(new_event_id()),
        "Retail-Event-Type": "retail.testing.v1.AmountRecorded",
        "Retail-Schema-Version": "1",
        "Retail-Aggregate-Type": "account",
        "Retail-Aggregate-Key": account,
        "Retail-Aggregate-Version": str(version),
        "Retail-Occurred-At": datetime.now(UTC).isoformat(),
    }


async def test_inbox_rows_are_pruned_after_the_stream_max_age_plus_margin(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    # TESTING keeps messages for 1 h; with the default margin of a day, rows older than 25 h may go.
    await pool.execute(
        """insert into inbox (consumer, event_id, aggregate_type, aggregate_key, aggregate_version, applied,
                              received_at)
           select c, gen_random_uuid(), 'account', 'k', 1, true, now() - make_interval(hours => h)
           from (values ('pruned', 30), ('pruned', 26), ('pruned', 2), ('other', 30)) as v(c, h),
                generate_series(1, 3)"""
    )
    c = consumer(pool, nc.jetstream(), durable="pruned", prune_interval=0.1)
    task = asyncio.create_task(c.run())
    try:
        await eventually(lambda: _true(c.pruned == 6))
    finally:
        c.stop()
        await task
    left = await pool.fetch(
        "select consumer, round(extract(epoch from now() - received_at) / 3600)::int as h"
        " from inbox order by 1, 2"
    )
    assert [(r["consumer"], r["h"]) for r in left] == [("other", 30)] * 3 + [("pruned", 2)] * 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_handler_failing_transiently_on_every_delivery_is_dead_lettered(
    pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    port = _closed_port()

    async def apply_via_downstream(conn: Connection, env: Envelope) -> None:
        if env.aggregate_key == "down":  # a downstream service that is gone: connection refused (OSError)
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
        await apply_amount(conn, env)

    stuck = await publish_event(js, "down", 1, 5)
    await publish_event(js, "up", 1, 7)
    # 2 free transient retries, then 3 counted ones (max_deliver): dead-lettered at the 5th delivery.
    c = consumer(pool, js, handler=apply_via_downstream, durable="downstream", transient_retries=2)
    task = asyncio.create_task(c.run())
    try:
        await eventually(lambda: _true(c.counts["dead_lettered"] == 1))
    finally:
        c.stop()
        await task
    assert await view(pool, "up") == (7, 1, 1)
    assert await view(pool, "down") is None
    [letter] = await list_dead_letters(pool, consumer="downstream")
    assert letter.event_id == stuck
    assert letter.num_delivered == 5
    assert letter.reason.startswith("transient error on 5 consecutive deliveries while the database answered")
    assert "ConnectionRefusedError" in letter.reason
    assert c.counts["failed"] == 5
