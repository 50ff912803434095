"""EventOperationsService (served by every service through run_service), against the probe as a process.

A consumer in this test process reads the probe's database and NATS; it dead-letters a message whose
handler keeps failing and an undecodable one. The probe lists them over gRPC and replays them; the
consumer applies the replayed event once, and a repeated request changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import SecretStr

from retail.operations.v1 import event_operations_service_pb2 as pb
from retail.operations.v1 import event_operations_service_pb2_grpc as pb_grpc
from retail.testing.v1.probe_pb2 import AmountRecorded
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import Connection
from retail_common.errors import ErrorDetails, parse_error
from retail_common.grpcx import connect
from retail_common.grpcx.event_operations import EVENTS_OPERATOR_ROLE, RESOURCE_TYPE
from retail_common.messaging import Envelope, InboxConsumer, ensure_streams, new_event_id
from retail_common.messaging.testing import DEADLETTER_STREAM, TESTING_STREAM, connect_nats
from retail_common.testing import NatsServer

PROBE_MODULE = "retail_common.testing.probe"
SUBJECT = "retail.testing.v1.amount_recorded"
CONSUMER = "probe-view"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Poll until check() holds (generous bound; no timing is asserted)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def probe(start_service: Any, database_url: str, nats_server: NatsServer) -> Any:
    return await start_service(
        PROBE_MODULE, {"DATABASE_URL": database_url, "NATS_URL": nats_server.url, "DB_POOL_MAX": "3"}
    )


@pytest.fixture
async def pool(probe: Any, database_url: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    await pool.execute(
        "create table view_accounts (account text primary key, total bigint not null, applied int not null);"
        "create table poison_switch (failing boolean not null); insert into poison_switch values (true)"
    )
    yield pool
    await pool.close()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect_nats(nats_server.url)
    await ensure_streams(client.jetstream(), [TESTING_STREAM, DEADLETTER_STREAM])
    yield client
    await client.close()


async def apply_amount(conn: Connection, env: Envelope) -> None:
    event = AmountRecorded.FromString(env.payload)
    if event.amount < 0 and await conn.fetchval("select failing from poison_switch"):
        raise RuntimeError(f"cannot apply negative amount {event.amount}")
    await conn.execute(
        """insert into view_accounts (account, total, applied) values ($1, $2, 1)
           on conflict (account) do update set total = view_accounts.total + excluded.total,
                applied = view_accounts.applied + 1""",
        event.account_id,
        event.amount,
    )


async def publish(js: JetStreamContext, account: str, amount: int) -> Envelope:
    env = Envelope(
        subject=SUBJECT,
        event_id=new_event_id(),
        event_type="retail.testing.v1.AmountRecorded",
        schema_version=1,
        aggregate_type="account",
        aggregate_key=account,
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        payload=AmountRecorded(account_id=account, amount=amount, version=1).SerializeToString(),
    )
    await js.publish(SUBJECT, env.payload, headers=env.headers())
    return env


async def operator_key(pool: asyncpg.Pool[asyncpg.Record], roles: list[str]) -> SecretStr:
    return (await CredentialStore(pool).create("ops-1", PrincipalKind.OPERATOR, roles)).key


async def refused(call: Awaitable[Any]) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return parse_error(caught.value)


async def view(pool: asyncpg.Pool[asyncpg.Record], account: str) -> tuple[int, int] | None:
    row = await pool.fetchrow("select total, applied from view_accounts where account = $1", account)
    return None if row is None else (row["total"], row["applied"])


async def test_reflection_lists_the_runtime_service(probe: Any) -> None:
    async with grpc.aio.insecure_channel(probe.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in reflection.ServerReflectionInfo(iter([request]), timeout=10)]
    names = {service.name for service in responses[0].list_services_response.service}
    assert {"retail.operations.v1.EventOperationsService", "retail.testing.v1.ProbeService"} <= names


async def test_dead_letters_listed_replayed_once_and_idempotent(
    probe: Any, pool: asyncpg.Pool[asyncpg.Record], nc: Client
) -> None:
    js = nc.jetstream()
    consumer = InboxConsumer(
        pool,
        js,
        stream="TESTING",
        durable=CONSUMER,
        filter_subject=SUBJECT,
        handler=apply_amount,
        max_deliver=2,
        backoff=(0.1,),
        ack_wait=5.0,
        fetch_timeout=0.5,
        prune_interval=None,
    )
    task = asyncio.create_task(consumer.run())
    channel = connect(
        probe.address, credential=await operator_key(pool, [EVENTS_OPERATOR_ROLE]), tracing=False
    )
    stub = pb_grpc.EventOperationsServiceStub(channel)
    try:
        poison = await publish(js, "p", -5)
        await js.publish(SUBJECT, b"\x00", headers={"Retail-Event-Type": "garbage"})  # no event id
        await eventually(lambda: _true(consumer.counts["dead_lettered"] == 2), "both dead-lettered")

        # -- list: paged, filtered, every field filled from the message
        first = await stub.ListEventDeadLetters(
            pb.ListEventDeadLettersRequest(consumer=CONSUMER, page_size=1)
        )
        assert first.next_page_token
        second = await stub.ListEventDeadLetters(
            pb.ListEventDeadLettersRequest(consumer=CONSUMER, page_size=1, page_token=first.next_page_token)
        )
        assert second.next_page_token == "", "no token when nothing follows"
        letters = {d.event_type: d for d in [*first.dead_letters, *second.dead_letters]}
        dead = letters["retail.testing.v1.AmountRecorded"]
        assert (dead.consumer, dead.subject, dead.stream) == (CONSUMER, SUBJECT, "TESTING")
        assert dead.event_id == str(poison.event_id)
        assert (dead.aggregate_type, dead.aggregate_key, dead.aggregate_version) == ("account", "p", 1)
        assert dead.delivery_count == 2
        assert "negative amount -5" in dead.reason
        assert dead.HasField("dead_time")
        assert not dead.HasField("replay_time")
        assert dead.replay_count == 0
        assert dead.last_replay_message_id == ""
        undecodable = letters["garbage"]
        assert undecodable.reason.startswith("undecodable")
        assert undecodable.event_id == ""
        other = await stub.ListEventDeadLetters(pb.ListEventDeadLettersRequest(consumer="nobody"))
        assert list(other.dead_letters) == []
        assert other.next_page_token == ""

        # -- bad input names the field
        error = await refused(stub.ListEventDeadLetters(pb.ListEventDeadLettersRequest(page_token="%%")))
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])
        error = await refused(  # a token of another filter
            stub.ListEventDeadLetters(pb.ListEventDeadLettersRequest(page_token=first.next_page_token))
        )
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])
        error = await refused(stub.ListEventDeadLetters(pb.ListEventDeadLettersRequest(page_size=-1)))
        assert error.fields == ["page_size"]
        error = await refused(stub.ReplayEventDeadLetters(pb.ReplayEventDeadLettersRequest(request_id="r0")))
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["consumer"])
        error = await refused(
            stub.ReplayEventDeadLetters(
                pb.ReplayEventDeadLettersRequest(
                    request_id="r0", dead_letter_ids=[dead.dead_letter_id, 987654]
                )
            )
        )
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert error.metadata["field"] == "dead_letter_ids[1]"
        assert "dead_letter_ids[1]" in error.message
        assert error.resource == (RESOURCE_TYPE, "987654")
        error = await refused(
            stub.ReplayEventDeadLetters(
                pb.ReplayEventDeadLettersRequest(
                    request_id="r0", consumer="nobody", dead_letter_ids=[dead.dead_letter_id]
                )
            )
        )
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["dead_letter_ids[0]"])
        assert await pool.fetchval("select sum(replay_count) from dead_letters") == 0, (
            "refusals change nothing"
        )

        # -- the fault is fixed; replay by id: applied once
        await pool.execute("update poison_switch set failing = false")
        replay = pb.ReplayEventDeadLettersRequest(
            request_id="r1", consumer=CONSUMER, dead_letter_ids=[dead.dead_letter_id]
        )
        answer = await stub.ReplayEventDeadLetters(replay)
        [after] = answer.dead_letters
        assert (after.dead_letter_id, after.replay_count) == (dead.dead_letter_id, 1)
        assert after.HasField("replay_time")
        assert after.last_replay_message_id
        assert answer.remaining_count == 1, "the undecodable one is still pending"
        await eventually(lambda: _true(consumer.counts["applied"] == 1), "replayed event applied")
        assert await view(pool, "p") == (-5, 1)

        # -- the same request again: the first answer, nothing republished
        last_seq = (await js.stream_info("TESTING")).state.last_seq
        assert await stub.ReplayEventDeadLetters(replay) == answer
        assert (await js.stream_info("TESTING")).state.last_seq == last_seq
        assert (
            await pool.fetchval("select replay_count from dead_letters where id = $1", dead.dead_letter_id)
            == 1
        )
        reused = pb.ReplayEventDeadLettersRequest(request_id="r1", consumer=CONSUMER)
        error = await refused(stub.ReplayEventDeadLetters(reused))
        assert (error.code, error.reason, error.fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "IDEMPOTENCY_KEY_REUSED",
            ["request_id"],
        )

        # -- a new request replays it again; the inbox dedupes by the original event id
        again = await stub.ReplayEventDeadLetters(
            pb.ReplayEventDeadLettersRequest(request_id="r2", dead_letter_ids=[dead.dead_letter_id])
        )
        assert again.dead_letters[0].replay_count == 2
        assert again.remaining_count == 0
        await eventually(lambda: _true(consumer.counts["duplicate"] == 1), "second replay seen as duplicate")
        assert await view(pool, "p") == (-5, 1), "applied once however often replayed"

        # -- all of a consumer's pending ones: the undecodable message, which is dead-lettered again
        everything = await stub.ReplayEventDeadLetters(
            pb.ReplayEventDeadLettersRequest(request_id="r3", consumer=CONSUMER)
        )
        assert [d.dead_letter_id for d in everything.dead_letters] == [undecodable.dead_letter_id]
        assert everything.remaining_count == 0
        await eventually(lambda: _true(consumer.counts["dead_lettered"] == 3), "still undecodable")
        pending = await stub.ListEventDeadLetters(pb.ListEventDeadLettersRequest(consumer=CONSUMER))
        assert [d.event_type for d in pending.dead_letters] == ["garbage"]
        with_replayed = await stub.ListEventDeadLetters(
            pb.ListEventDeadLettersRequest(consumer=CONSUMER, include_replayed=True)
        )
        assert len(with_replayed.dead_letters) == 3

        # -- audited: one record per replayed dead letter and request, by the operator
        audit = await pool.fetch(
            "select actor_id, entity_key, request_id from audit_log where entity_type = $1 order by id",
            RESOURCE_TYPE,
        )
        assert [(r["actor_id"], r["entity_key"], r["request_id"]) for r in audit] == [
            ("ops-1", str(dead.dead_letter_id), "r1"),
            ("ops-1", str(dead.dead_letter_id), "r2"),
            ("ops-1", str(undecodable.dead_letter_id), "r3"),
        ]
    finally:
        await channel.close(None)
        consumer.stop()
        await task


async def test_only_operators_with_the_role(probe: Any, pool: asyncpg.Pool[asyncpg.Record]) -> None:
    store = CredentialStore(pool)
    keys = {
        "operator without the role": (
            await store.create("ops-2", PrincipalKind.OPERATOR, ["probe.admin"])
        ).key,
        "service with the role": (
            await store.create("pricing", PrincipalKind.SERVICE, [EVENTS_OPERATOR_ROLE])
        ).key,
    }
    for who, key in keys.items():
        async with connect(probe.address, credential=key, tracing=False) as channel:
            stub = pb_grpc.EventOperationsServiceStub(channel)
            error = await refused(stub.ListEventDeadLetters(pb.ListEventDeadLettersRequest()))
            assert error.code == grpc.StatusCode.PERMISSION_DENIED, who


async def _true(value: bool) -> bool:
    return value
