"""Ledger/queue, change log and dead letters against real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from retail.channel.v1 import changes_pb2
from retail_channel_gateway.domain.changes import Lane
from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.repository import ChannelRepository, LedgerRepository
from retail_common.db import transaction

T0 = datetime(2026, 5, 1, tzinfo=UTC)
channels = ChannelRepository()
ledger = LedgerRepository()


async def make_channel(pool: asyncpg.Pool, channel_id: str = "web", mode: str = DeliveryMode.WEBHOOK) -> None:
    async with transaction(pool) as conn:
        await channels.create(
            conn,
            channel_id=channel_id,
            display_name=channel_id,
            kind="ECOMMERCE",
            location_ids=["s1"],
            settings=DeliverySettings(mode=mode, webhook_url="http://x"),
            active=True,
            webhook_secret=b"k",
            signing_key_id="k1",
        )


async def project(pool: asyncpg.Pool, key: str, version: int, lane: Lane = Lane.BULK, *, log: bool = False,
                  channel: str = "web", at: datetime = T0) -> int | None:  # fmt: skip
    change = changes_pb2.ChannelChange(channel_id=channel, entity_key=key, version=version)
    async with transaction(pool) as conn:
        return await ledger.project(
            conn, channel_id=channel, change=change, kind="PRICE", lane=lane, projected_at=at, due_at=at,
            change_log=log,
        )  # fmt: skip


async def pending(pool: asyncpg.Pool, now: datetime = T0, limit: int = 100) -> list[tuple[str, int]]:
    async with pool.acquire() as conn:
        return [(p.entity_key, p.version) for p in await ledger.pending(conn, "web", now, limit)]


async def test_newer_version_replaces_pending_and_older_retry_never_does(pool) -> None:
    await make_channel(pool)
    assert await project(pool, "price/A", 2) is not None
    assert await project(pool, "price/A", 1) is None  # late older event
    assert await project(pool, "price/A", 2) is None  # duplicate
    assert await pending(pool) == [("price/A", 2)]
    assert await project(pool, "price/A", 3) is not None
    assert await pending(pool) == [("price/A", 3)]


async def test_fast_lane_is_served_before_bulk_whatever_the_order(pool) -> None:
    await make_channel(pool)
    for i in range(5):
        await project(pool, f"availability/{i}", 1, Lane.BULK)
    await project(pool, "price/A", 1, Lane.FAST)
    assert (await pending(pool, limit=2)) == [("price/A", 1), ("availability/0", 1)]


async def test_delivered_leaves_the_queue_and_never_moves_back(pool) -> None:
    await make_channel(pool)
    await project(pool, "price/A", 1)
    await project(pool, "price/A", 2)  # newer projected while version 1 was in flight
    async with transaction(pool) as conn:
        await ledger.mark_delivered(conn, "web", [("price/A", 1)], acknowledged=True)
    assert await pending(pool) == [("price/A", 2)]
    async with transaction(pool) as conn:
        await ledger.mark_delivered(conn, "web", [("price/A", 2)], acknowledged=True)
        await ledger.mark_delivered(conn, "web", [("price/A", 1)], acknowledged=True)  # a slow old ack
        [entry] = await ledger.ledger_entries(conn, "web", after="", limit=10, only_pending=False)
    assert await pending(pool) == []
    assert (entry["delivered_version"], entry["acknowledged_version"]) == (2, 2)


async def test_failures_back_off_then_dead_letter_and_replay_requeues(pool) -> None:
    await make_channel(pool)
    await project(pool, "price/A", 1)
    later = T0 + timedelta(seconds=10)
    async with transaction(pool) as conn:
        dead = await ledger.mark_failed(
            conn, "web", [("price/A", 1, later)], error="HTTP 500", max_attempts=2
        )
    assert dead == []
    assert await pending(pool, now=T0) == []  # backing off
    assert await pending(pool, now=later) == [("price/A", 1)]
    async with transaction(pool) as conn:
        dead = await ledger.mark_failed(
            conn, "web", [("price/A", 1, later)], error="HTTP 500", max_attempts=2
        )
    assert [(d.entity_key, d.version, d.attempts, d.last_error) for d in dead] == [
        ("price/A", 1, 2, "HTTP 500")
    ]
    assert await pending(pool, now=later) == []
    async with transaction(pool) as conn:
        assert await ledger.replay_dead_letters(conn, "web", None, T0) == 1
        assert await ledger.replay_dead_letters(conn, "web", None, T0) == 0
    assert await pending(pool, now=T0) == [("price/A", 1)]


async def test_a_failure_report_for_a_superseded_version_changes_nothing(pool) -> None:
    await make_channel(pool)
    await project(pool, "price/A", 1)
    await project(pool, "price/A", 2)
    async with transaction(pool) as conn:
        dead = await ledger.mark_failed(conn, "web", [("price/A", 1, T0)], error="x", max_attempts=1)
    assert dead == []
    assert await pending(pool) == [("price/A", 2)]


async def test_change_log_cursor_ack_prune_and_resync(pool) -> None:
    await make_channel(pool, "pos", DeliveryMode.STREAM)
    seqs = [await project(pool, f"price/{s}", 1, log=True, channel="pos") for s in "ABC"]
    await project(pool, "price/A", 2, log=True, channel="pos", at=T0 + timedelta(days=10))
    async with transaction(pool) as conn:
        rows = await ledger.changes_after(conn, "pos", 0, 100)
        assert [(r.entity_key, r.version) for r in rows] == [("price/A", 1), ("price/B", 1), ("price/C", 1),
                                                              ("price/A", 2)]  # fmt: skip
        assert [r.seq for r in rows[:3]] == seqs
        advanced = await ledger.acknowledge(conn, "pos", rows[1].seq)
        assert sorted(advanced) == [("price/A", "PRICE", 1), ("price/B", "PRICE", 1)]
        assert await ledger.acknowledge(conn, "pos", rows[1].seq) == []
        state = await ledger.cursor_state(conn, "pos")
        assert state is not None
        assert state.pruned_through == 0
    async with transaction(pool) as conn:
        # created_at is the DB's now(): prune everything older than "now + 1s" except nothing newer
        cutoff = await conn.fetchval("select now() + interval '1 second'")
        through = await ledger.prune_change_log(conn, "pos", cutoff)
        assert through == rows[-1].seq
        entities, cursor = await ledger.resync_change_log(conn, "pos")
        assert (entities, cursor) == (3, rows[-1].seq)
        resynced = await ledger.changes_after(conn, "pos", cursor, 100)
    assert sorted((r.entity_key, r.version, r.resync) for r in resynced) == [
        ("price/A", 2, True), ("price/B", 1, True), ("price/C", 1, True)]  # fmt: skip


async def test_projecting_several_entities_at_once_keeps_the_version_rule_and_the_change_log(pool) -> None:
    """project_many (a store group's per-store prices): each entity takes the change only if newer, seqs
    follow the given order, and the change log gets exactly the entities that took it."""
    await make_channel(pool, "pos", DeliveryMode.STREAM)

    async def many(version: int, *stores: str) -> list[int]:
        changes = [
            changes_pb2.ChannelChange(channel_id="pos", entity_key=f"price/A/{s}", version=version)
            for s in stores
        ]
        async with transaction(pool) as conn:
            return await ledger.project_many(
                conn, channel_id="pos", changes=changes, kind="PRICE", lane=Lane.FAST, projected_at=T0,
                due_at=T0, change_log=True,
            )  # fmt: skip

    first = await many(2, "s1", "s2")
    assert len(first) == 2
    assert await many(2, "s1", "s2") == []  # duplicate
    late = await many(1, "s1", "s2", "s3")  # an older change: only the entity that had nothing takes it
    assert len(late) == 1
    assert late[0] > max(first)
    rows = await pool.fetch(
        "select entity_key, projected_version, seq from delivery_ledger where channel_id = 'pos' order by seq"
    )
    assert [(r["entity_key"], r["projected_version"]) for r in rows] == [
        ("price/A/s1", 2), ("price/A/s2", 2), ("price/A/s3", 1),
    ]  # fmt: skip
    logged = await pool.fetch(
        "select seq, entity_key, version from change_log where channel_id = 'pos' order by seq"
    )
    assert [(r["seq"], r["entity_key"], r["version"]) for r in logged] == [
        (r["seq"], r["entity_key"], r["projected_version"]) for r in rows
    ]
