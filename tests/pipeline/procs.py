"""Processes of the pipeline fault test, each started as its own OS process by the test.

    python tests/pipeline/procs.py producer --dsn DSN --events N --accounts K [--rate R]
    python tests/pipeline/procs.py relay    --dsn DSN --nats URL --holder NAME
    python tests/pipeline/procs.py consumer --dsn DSN --nats URL

producer: N committed AmountRecorded events (plus rolled-back ones, whose ids it records in its table
`rolled_back`) by concurrent transactions over K accounts; some transactions stay open for a while so
outbox ids commit out of order. State lives in `accounts` (balance, version), events in the outbox.
relay: an OutboxRelay on the producer's database (lease "probe-relay").
consumer: two durables on the consumer's own database: `sums` (SEQUENTIAL: running sum of amounts,
applied count) and `state` (NEWER: the state the events carry).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from retail.testing.v1.probe_pb2 import AmountRecorded
from retail_common.db import Connection, create_pool
from retail_common.messaging import Envelope, InboxConsumer, OutboxRelay, OutboxWriter, VersionPolicy
from retail_common.messaging.testing import connect_nats
from retail_common.telemetry import setup_telemetry

SUBJECT = "retail.testing.v1.amount_recorded"
EVENT_TYPE = "retail.testing.v1.AmountRecorded"

PRODUCER_SCHEMA = """
create table accounts (account text primary key, balance bigint not null, version bigint not null);
create table rolled_back (event_id uuid primary key);
"""
CONSUMER_SCHEMA = """
create table sums (account text primary key, total bigint not null, version bigint not null,
                   applied bigint not null);
create table state (account text primary key, balance bigint not null, version bigint not null);
"""


class Proc:
    """One of these roles as a child process of the test, with its output in a log file."""

    def __init__(self, name: str, args: list[str], logs: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.log = logs / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, str(Path(__file__)), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def kill9(self) -> None:
        assert self.popen is not None
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])


class _RollbackError(Exception):
    pass


async def producer(args: argparse.Namespace) -> None:
    pool = await create_pool(args.dsn, min_size=args.concurrency, max_size=args.concurrency)
    writer = OutboxWriter()
    rng = random.Random(args.seed)
    committed = 0
    started = time.monotonic()
    attempt = 0

    async def one(account: str, amount: int, fate: str) -> None:
        nonlocal committed
        event_id = None
        try:
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    """insert into accounts (account, balance, version) values ($1, $2, 1)
                       on conflict (account) do update set balance = accounts.balance + excluded.balance,
                            version = accounts.version + 1
                       returning balance, version""",
                    account,
                    amount,
                )
                assert row is not None
                event_id, version = await writer.append(
                    conn,
                    subject=SUBJECT,
                    event_type=EVENT_TYPE,
                    aggregate_type="account",
                    aggregate_key=account,
                    payload=lambda v: AmountRecorded(
                        account_id=account, amount=amount, balance=row["balance"], version=v
                    ),
                )
                if version != row["version"]:
                    raise SystemExit(f"aggregate version {version} != account version {row['version']}")
                if fate == "hold":
                    await asyncio.sleep(rng.uniform(0.2, 0.8))
                if fate == "rollback":
                    raise _RollbackError
            committed += 1
        except _RollbackError:
            assert event_id is not None
            await pool.execute("insert into rolled_back (event_id) values ($1)", event_id)

    reserved = 0  # committing transactions started; rollbacks do not count toward N

    async def worker() -> None:
        nonlocal reserved, attempt
        while reserved < args.events:
            attempt += 1
            pause = started + attempt / args.rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            roll = rng.random()
            fate = "rollback" if roll < 0.1 else "hold" if roll < 0.13 else "commit"
            if fate != "rollback":
                if reserved >= args.events:
                    return
                reserved += 1
            await one(f"acct-{rng.randrange(args.accounts):04d}", rng.randint(-500, 1000), fate)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    await pool.close()
    print(f"producer: committed {committed} in {time.monotonic() - started:.1f}s", flush=True)


async def _until_signal(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def relay(args: argparse.Namespace) -> None:
    pool = await create_pool(args.dsn, min_size=1, max_size=4)
    nc = await connect_nats(args.nats, f"relay-{args.holder}")
    r = OutboxRelay(
        pool,
        nc.jetstream(),
        lease_name="probe-relay",
        holder_id=args.holder,
        batch_size=args.batch,
        lease_ttl=args.lease_ttl,
        publish_timeout=2.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(r.run())
    await _until_signal(stop)
    r.stop()
    await task
    print(f"relay {args.holder}: published {r.published_count}", flush=True)
    await nc.close()
    await pool.close()


async def apply_sum(conn: Connection, env: Envelope) -> None:
    event = AmountRecorded.FromString(env.payload)
    await conn.execute(
        """insert into sums (account, total, version, applied) values ($1, $2, $3, 1)
           on conflict (account) do update set total = sums.total + excluded.total,
                version = excluded.version, applied = sums.applied + 1""",
        env.aggregate_key,
        event.amount,
        env.aggregate_version,
    )


async def apply_state(conn: Connection, env: Envelope) -> None:
    event = AmountRecorded.FromString(env.payload)
    await conn.execute(
        """insert into state (account, balance, version) values ($1, $2, $3)
           on conflict (account) do update set balance = excluded.balance, version = excluded.version""",
        env.aggregate_key,
        event.balance,
        env.aggregate_version,
    )


async def consumer(args: argparse.Namespace) -> None:
    telemetry = setup_telemetry("consumer") if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else None
    pool = await create_pool(args.dsn, min_size=2, max_size=6)
    nc = await connect_nats(args.nats, "consumer")
    js = nc.jetstream()
    common = {
        "stream": "TESTING",
        "filter_subject": SUBJECT,
        "max_deliver": 1000,  # gap naks count as deliveries; the test asserts nothing is dead-lettered
        "backoff": (0.2,),
        "batch": args.batch,
        "ack_wait": 3.0,
        "fetch_timeout": 1.0,
    }
    runners = [
        InboxConsumer(
            pool, js, durable="sums", handler=apply_sum, version_policy=VersionPolicy.SEQUENTIAL, **common
        ),
        InboxConsumer(pool, js, durable="state", handler=apply_state, **common),
    ]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    await _until_signal(asyncio.Event())
    for r in runners:
        r.stop()
    await asyncio.gather(*tasks)
    for r in runners:
        print(f"consumer {r.consumer}: {r.counts}", flush=True)
    if telemetry is not None:
        telemetry.shutdown()
    await nc.close()
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("producer")
    p.add_argument("--dsn", required=True)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--accounts", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rate", type=float, default=600.0, help="transactions started per second")
    p.add_argument("--seed", type=int, default=7)
    r = sub.add_parser("relay")
    r.add_argument("--dsn", required=True)
    r.add_argument("--nats", required=True)
    r.add_argument("--holder", required=True)
    r.add_argument("--batch", type=int, default=200)
    r.add_argument("--lease-ttl", type=float, default=2.0)
    c = sub.add_parser("consumer")
    c.add_argument("--dsn", required=True)
    c.add_argument("--nats", required=True)
    c.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    asyncio.run({"producer": producer, "relay": relay, "consumer": consumer}[args.role](args))


if __name__ == "__main__":
    main()
