"""`python -m bench`: messaging pipeline throughput and latency beside raw JetStream baselines.

- relay: events/s from committed outbox rows to published+marked, vs a raw pipelined publish loop;
- consumer: events/s applied through InboxConsumer (inbox + version gate + handler + commit + ack),
  vs a raw fetch+ack loop over the same stream;
- end-to-end: p50/p99 from producer commit to consumer commit at a steady 500 events/s.

Starts its own nats-server and temporary databases; about a minute.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
from nats.aio.msg import Msg

from bench.raw_jetstream import raw_consume, raw_publish
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

N = 20_000
ACCOUNTS = 300
RATE = 500
LATENCY_SECONDS = 10
# InboxConsumer fetch loops (each its own pull subscription + connection), as replicas would add.
CONSUMER_CONCURRENCY = int(os.environ.get("BENCH_CONSUMER_CONCURRENCY", "1"))
SUBJECT = "retail.testing.v1.amount_recorded"
RAW_SUBJECT = "retail.testing.v1.raw"
CONSUMER_SCHEMA = (
    "create table sums (account text primary key, total bigint not null, version bigint not null)"
)


async def apply_sum(conn: Connection, env: Envelope) -> None:
    event = AmountRecorded.FromString(env.payload)
    await conn.execute(
        """insert into sums (account, total, version) values ($1, $2, $3)
           on conflict (account) do update
           set total = sums.total + excluded.total, version = excluded.version""",
        env.aggregate_key,
        event.amount,
        env.aggregate_version,
    )


class TimedConsumer(InboxConsumer):
    """Records when each event's transaction has committed (and been acked)."""

    applied_at: dict[str, float]

    async def handle_batch(self, msgs: list[Msg]) -> None:  # type: ignore[override]
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


async def wait_until(check: Callable[[], Awaitable[bool]], poll: float = 0.01) -> None:
    while not await check():  # noqa: ASYNC110 - polling a counter owned by another task
        await asyncio.sleep(poll)


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    server = await locate_postgres()
    prod_db = await server.create_database("bench_prod")
    cons_db = await server.create_database("bench_cons")
    nats_server = NatsServer()
    nats_server.start()
    try:
        await run(prod_db.dsn, cons_db.dsn, nats_server.url)
    finally:
        nats_server.close()
        await prod_db.drop()
        await cons_db.drop()


async def run(prod_dsn: str, cons_dsn: str, nats_url: str) -> None:
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
    await wait_until(lambda: _true(relay.published_count >= N))
    relay_rate = N / (time.perf_counter() - started)

    # -- consumer vs raw consume ---------------------------------------------------------------------
    raw_con = await raw_consume(js, "TESTING", RAW_SUBJECT, N)
    consumer = TimedConsumer(
        cons,
        js,
        stream="TESTING",
        durable="bench_sums",
        filter_subject=SUBJECT,
        handler=apply_sum,
        batch=100,
        concurrency=CONSUMER_CONCURRENCY,
    )
    consumer.applied_at = {}
    started = time.perf_counter()
    consumer_task = asyncio.create_task(consumer.run())
    await wait_until(lambda: _true(consumer.counts["applied"] >= N))
    consumer_rate = N / (time.perf_counter() - started)

    # -- end-to-end latency at a steady rate ---------------------------------------------------------
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
    await wait_until(lambda: _true(all(e in consumer.applied_at for e in committed_at)), poll=0.05)
    latencies = sorted((consumer.applied_at[e] - t) * 1000 for e, t in committed_at.items())
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]

    relay.stop()
    consumer.stop()
    await asyncio.gather(relay_task, consumer_task)
    await nc.close()
    await prod.close()
    await cons.close()

    print()
    print(f"{'figure':<44}{'ours':>12}{'raw baseline':>16}{'ratio':>8}")
    print(
        f"{'relay throughput (committed -> published)':<44}{relay_rate:>10,.0f}/s{raw_pub:>14,.0f}/s"
        f"{relay_rate / raw_pub:>8.2f}"
    )
    print(
        f"{'consumer throughput (applied, committed)':<44}{consumer_rate:>10,.0f}/s{raw_con:>14,.0f}/s"
        f"{consumer_rate / raw_con:>8.2f}"
    )
    print(
        f"end-to-end commit -> applied at {achieved:,.0f} events/s ({total} events): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    print(
        f"({N} events per throughput run, {ACCOUNTS} aggregates; raw publish = publish_async in windows "
        f"of 500 with the same headers; raw consume = fetch(100) + ack)"
    )


async def _true(value: bool) -> bool:
    return value


if __name__ == "__main__":
    asyncio.run(main())
