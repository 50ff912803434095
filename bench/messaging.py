"""Messaging pipeline benchmarks beside raw JetStream baselines measured in the same run (issue 3).

- relay: events/s from committed outbox rows to published+marked, vs a raw pipelined publish loop;
- consumer: events/s applied through InboxConsumer (inbox + version gate + handler + commit + ack), vs a
  raw fetch+ack loop over the same stream, alternating in 5 rounds (each side's figure is events over
  its total time); with a per-event handler (one upsert per event, the common service shape) and with a
  set-based batch handler (one statement per batch). "handler alone" is the per-event upsert in a bare
  asyncpg loop without NATS or inbox: the per-event consumer cannot be faster than one over
  (1/raw consume + 1/handler alone);
- end-to-end: p50/p99 from producer commit to consumer commit at a steady 500 events/s.

Starts its own nats-server and temporary databases; about a minute. Run alone: `python -m bench
messaging`; `run_messaging_bench()` is the registry's entry.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Sequence

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bench.raw_jetstream import raw_consume, raw_publish
from bench.registry import Row
from retail.testing.v1.probe_pb2 import AmountRecorded
from retail_common.db import Connection, create_pool
from retail_common.messaging import (
    Envelope,
    InboxConsumer,
    OutboxRelay,
    OutboxWriter,
    ensure_streams,
)
from retail_common.messaging.testing import DEADLETTER_STREAM, TESTING_STREAM, connect_nats, migrate_messaging
from retail_common.testing import NatsServer
from retail_common.testing.postgres import locate_postgres

__all__ = ["run_messaging_bench"]

N = int(os.environ.get("BENCH_MESSAGING_EVENTS", "20000"))
ACCOUNTS = 300
RATE = 500
LATENCY_SECONDS = 10
BATCH = int(os.environ.get("BENCH_CONSUMER_BATCH", "100"))
ROUNDS = 5  # the raw loop fetches 100 at a time too
# InboxConsumer fetch loops (each its own pull subscription + connection), as replicas would add.
CONSUMER_CONCURRENCY = int(os.environ.get("BENCH_CONSUMER_CONCURRENCY", "1"))
SUBJECT = "retail.testing.v1.amount_recorded"
RAW_SUBJECT = "retail.testing.v1.raw"
CONSUMER_SCHEMA = """
create table sums (account text primary key, total bigint not null, version bigint not null);
create table sums_batch (account text primary key, total bigint not null, version bigint not null);
create table sums_floor (account text primary key, total bigint not null, version bigint not null);
"""
_UPSERT = """insert into {table} (account, total, version) values ($1, $2, $3)
on conflict (account) do update set total = {table}.total + excluded.total, version = excluded.version"""


async def apply_sum(conn: Connection, env: Envelope) -> None:
    event = AmountRecorded.FromString(env.payload)
    await conn.execute(_UPSERT.format(table="sums"), env.aggregate_key, event.amount, env.aggregate_version)


async def apply_sums(conn: Connection, envs: Sequence[Envelope]) -> None:
    """Set-based: one statement per batch (versions of one account arrive increasing)."""
    await conn.execute(
        """insert into sums_batch (account, total, version)
           select a, sum(m), max(v) from unnest($1::text[], $2::bigint[], $3::bigint[]) as u(a, m, v)
           group by a
           on conflict (account) do update
           set total = sums_batch.total + excluded.total, version = excluded.version""",
        [env.aggregate_key for env in envs],
        [AmountRecorded.FromString(env.payload).amount for env in envs],
        [env.aggregate_version for env in envs],
    )


class TimedConsumer(InboxConsumer):
    """Records when each event's transaction has committed (and been acked)."""

    applied_at: dict[str, float]

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        await super().handle_batch(msgs)
        now = time.time()
        for msg in msgs:
            self.applied_at[(msg.headers or {}).get("Nats-Msg-Id", "")] = now


async def fill_outbox(pool: asyncpg.Pool[asyncpg.Record], count: int, per_txn: int = 500) -> None:
    writer = OutboxWriter()
    for first in range(0, count, per_txn):
        async with pool.acquire() as conn, conn.transaction():
            for i in range(first, min(first + per_txn, count)):
                account = f"acct-{i % ACCOUNTS:04d}"
                await writer.append(
                    conn,
                    subject=SUBJECT,
                    event_type="retail.testing.v1.AmountRecorded",
                    aggregate_type="account",
                    aggregate_key=account,
                    payload=AmountRecorded(account_id=account, amount=i % 97).SerializeToString(),
                )


async def wait_until(check: Callable[[], bool], poll: float = 0.01) -> None:
    while not check():  # noqa: ASYNC110 - polling a counter owned by another task
        await asyncio.sleep(poll)


async def handler_alone(pool: asyncpg.Pool[asyncpg.Record], count: int) -> float:
    """The per-event handler's statement in a bare loop, 100 per transaction: what the handler costs."""
    sql = _UPSERT.format(table="sums_floor")
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for first in range(0, count, 100):
            async with conn.transaction():
                for i in range(first, min(first + 100, count)):
                    await conn.execute(sql, f"acct-{i % ACCOUNTS:04d}", i % 97, i)
    return count / (time.perf_counter() - started)


async def consume_some(
    cons: asyncpg.Pool[asyncpg.Record], js: JetStreamContext, durable: str, count: int, **handler: object
) -> tuple[int, float]:
    """(events applied, seconds) for a fresh runner on `durable` to apply at least `count` more (the
    durable resumes; the last batch may overshoot)."""
    consumer = InboxConsumer(
        cons,
        js,
        stream="TESTING",
        durable=durable,
        filter_subject=SUBJECT,
        batch=BATCH,
        concurrency=CONSUMER_CONCURRENCY,
        **handler,  # type: ignore[arg-type]
    )
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    await wait_until(lambda: consumer.counts["applied"] >= count)
    elapsed = time.perf_counter() - started
    consumer.stop()
    await task
    return consumer.counts["applied"], elapsed


async def raw_seconds(js: JetStreamContext, count: int) -> float:
    return count / await raw_consume(js, "TESTING", RAW_SUBJECT, count)


async def run_messaging_bench() -> list[Row]:
    server = await locate_postgres()
    prod_db = await server.create_database("bench_prod")
    cons_db = await server.create_database("bench_cons")
    nats_server = NatsServer()
    nats_server.start()
    try:
        return await _run(prod_db.dsn, cons_db.dsn, nats_server.url)
    finally:
        nats_server.close()
        await prod_db.drop()
        await cons_db.drop()


async def _run(prod_dsn: str, cons_dsn: str, nats_url: str) -> list[Row]:
    for dsn in (prod_dsn, cons_dsn):
        await migrate_messaging(dsn)
    prod = await create_pool(prod_dsn, min_size=4, max_size=8)
    cons = await create_pool(cons_dsn, min_size=2, max_size=CONSUMER_CONCURRENCY + 2)
    await cons.execute(CONSUMER_SCHEMA)
    nc = await connect_nats(nats_url, "bench")
    js = nc.jetstream()
    await ensure_streams(js, [TESTING_STREAM, DEADLETTER_STREAM])
    payload = AmountRecorded(account_id="acct-0001", amount=42, version=1).SerializeToString()

    # -- relay vs raw publish ------------------------------------------------------------------------
    await raw_publish(js, RAW_SUBJECT, 2000, payload)  # warm-up
    raw_pub = await raw_publish(js, RAW_SUBJECT, N, payload)
    await fill_outbox(prod, N)
    relay = OutboxRelay(prod, js, lease_name="bench", batch_size=500)
    started = time.perf_counter()
    relay_task = asyncio.create_task(relay.run())
    await wait_until(lambda: relay.published_count >= N)
    relay_rate = N / (time.perf_counter() - started)

    # -- consumers vs raw consume, alternating in ROUNDS (load drift on a shared machine hits both) ---
    raw_s = 0.0
    done = {"bench_sums": 0, "bench_sums_batch": 0}
    spent = {"bench_sums": 0.0, "bench_sums_batch": 0.0}
    handlers: dict[str, dict[str, object]] = {
        "bench_sums": {"handler": apply_sum},
        "bench_sums_batch": {"batch_handler": apply_sums},
    }
    for r in range(1, ROUNDS + 1):
        raw_s += await raw_seconds(js, N // ROUNDS)
        for durable, handler in handlers.items():
            applied, seconds = await consume_some(
                cons, js, durable, N * r // ROUNDS - done[durable], **handler
            )
            done[durable] += applied
            spent[durable] += seconds
    raw_con = N // ROUNDS * ROUNDS / raw_s
    per_event, set_based = (done[d] / spent[d] for d in ("bench_sums", "bench_sums_batch"))
    alone = await handler_alone(cons, N)
    expected = sum(i % 97 for i in range(N))
    for table in ("sums", "sums_batch"):
        assert await cons.fetchval(f"select sum(total) from {table}") == expected, table

    # -- end-to-end latency at a steady rate ---------------------------------------------------------
    consumer = TimedConsumer(
        cons, js, stream="TESTING", durable="bench_latency", filter_subject=SUBJECT, handler=apply_sum
    )
    consumer.applied_at = {}
    consumer_task = asyncio.create_task(consumer.run())
    await wait_until(lambda: consumer.counts["applied"] >= N)  # catch up with the throughput events
    committed_at: dict[str, float] = {}
    writer = OutboxWriter()
    total = RATE * LATENCY_SECONDS
    begin = time.perf_counter()

    async def produce(i: int) -> None:
        account = f"acct-{i % ACCOUNTS:04d}"
        async with prod.acquire() as conn, conn.transaction():
            event_id, _ = await writer.append(
                conn,
                subject=SUBJECT,
                event_type="retail.testing.v1.AmountRecorded",
                aggregate_type="account",
                aggregate_key=account,
                payload=lambda v: AmountRecorded(account_id=account, amount=1, version=v),
            )
        committed_at[str(event_id)] = time.time()

    pending: set[asyncio.Task[None]] = set()
    for i in range(total):
        delay = begin + i / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(produce(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    achieved = total / (time.perf_counter() - begin)
    await asyncio.gather(*pending)
    await wait_until(lambda: all(e in consumer.applied_at for e in committed_at), poll=0.05)
    latencies = sorted((consumer.applied_at[e] - t) * 1000 for e, t in committed_at.items())

    relay.stop()
    consumer.stop()
    await asyncio.gather(relay_task, consumer_task)
    await nc.close()
    await prod.close()
    await cons.close()

    at = f"at {achieved:,.0f} events/s, {total} events"
    return [
        Row(
            "relay, committed -> published",
            relay_rate,
            raw=raw_pub,
            target=0.5,
            note="raw: publish_async x500",
        ),
        Row(
            "consumer, per-event handler",
            per_event,
            raw=raw_con,
            target=0.5,
            note=f"raw: fetch(100)+ack; 1 upsert/event; bound {1 / (1 / raw_con + 1 / alone):,.0f}/s",
        ),
        Row("consumer, batch handler", set_based, raw=raw_con, target=0.5, note="1 statement per batch"),
        Row("handler alone (upsert loop, no NATS/inbox)", alone, note="what the per-event handler costs"),
        Row("end-to-end commit -> applied p50", statistics.median(latencies), " ms", note=at),
        Row("end-to-end commit -> applied p99", latencies[int(len(latencies) * 0.99) - 1], " ms", note=at),
    ]
