"""Reserve's one-statement hold (a single position: hold + ReservationChanged + AvailabilityChanged in one
append_select) against a real Postgres: same rows and events as the general path, byte for byte."""

from __future__ import annotations

from datetime import timedelta

import pytest

from retail.inventory.v1 import events_pb2, reservation_pb2
from retail_common.db import transaction
from retail_common.errors import FailedPrecondition, InvalidArgument
from retail_inventory import events
from retail_inventory.domain.allocation import RequestLine
from retail_inventory.repository import PolicyIn, RuleIn
from retail_inventory.testing import check_invariants, seed

TTL = timedelta(minutes=15)


async def reserve(pool, repo, rid, lines, channel="web"):
    async with transaction(pool) as conn:
        return await repo.reserve(
            conn, reservation_id=rid, channel=channel, lines=lines, ttl=TTL, request_print=rid
        )


async def events_of(pool, after_id):
    return list(await pool.fetch("select * from outbox where id > $1 order by id", after_id))


async def test_one_position_writes_both_events_as_the_builders_do(pool, repo):
    await seed(pool, repo, {("A", "s1"): 10})
    async with transaction(pool) as conn:  # fences on both sides, so the SQL encoding has work to do
        await repo.set_policies(conn, [PolicyIn("A", "s1", 1, {"mkt": {"fixed": 2}})])
    before = await pool.fetchval("select max(id) from outbox")
    proto, created = await reserve(pool, repo, "r1", [RequestLine("A", 3, "s1")])
    assert created
    rows = await events_of(pool, before)
    assert [(r["event_type"], r["aggregate_key"]) for r in rows] == [
        ("retail.inventory.v1.ReservationChanged", "r1"),
        ("retail.inventory.v1.AvailabilityChanged", "A/s1"),
    ]
    assert rows[0]["aggregate_version"] == 1
    assert bytes(rows[0]["payload"]) == events_pb2.ReservationChanged(
        change=reservation_pb2.RESERVATION_CHANGE_CREATED, reservation=proto
    ).SerializeToString(deterministic=True)
    assert rows[0]["subject"] == events.subject("ReservationChanged", "r1")
    (position,) = await pool.fetch(
        "select s.sku, s.location_id, s.on_hand, s.reserved_total, s.safety_stock,"
        " nullif(s.fences, '{}'::jsonb) as fences,"
        " nullif(s.channel_reserved, '{}'::jsonb) as channel_reserved,"
        " s.updated_at, l.active, l.channel_ids, nullif(l.default_fences, '{}'::jsonb) as default_fences"
        " from stock s join locations l using (location_id)"
    )
    assert position["reserved_total"] == 3
    version = rows[1]["aggregate_version"]
    assert version == 3  # seed receipt, policy, this hold
    assert bytes(rows[1]["payload"]) == events.availability_changed(position, version).SerializeToString(
        deterministic=True
    )
    message = events_pb2.AvailabilityChanged.FromString(bytes(rows[1]["payload"]))
    assert {c.channel_id: c.available_to_sell for c in message.channels} == {"web": 4, "mkt": 6}
    await check_invariants(pool)


async def test_a_refused_or_unknown_hold_changes_nothing(pool, repo):
    await seed(pool, repo, {("A", "s1"): 2})
    before = await pool.fetchval("select max(id) from outbox")
    with pytest.raises(FailedPrecondition) as caught:
        await reserve(pool, repo, "r1", [RequestLine("A", 3, "s1")])
    assert (caught.value.reason, caught.value.violations[0].subject) == ("OUT_OF_STOCK", "A")
    with pytest.raises(InvalidArgument):
        await reserve(pool, repo, "r2", [RequestLine("A", 1, "nowhere")])
    with pytest.raises(FailedPrecondition):  # a channel the location does not serve
        await reserve(pool, repo, "r3", [RequestLine("A", 1, "s1")], channel="app")
    assert await events_of(pool, before) == []
    assert await pool.fetchval("select count(*) from reservations") == 0
    await check_invariants(pool)


async def test_a_watched_position_takes_the_general_path_and_flips_its_rule(pool, repo):
    await seed(pool, repo, {("A", "s1"): 10})
    async with transaction(pool) as conn:
        await repo.create_rule(
            conn,
            RuleIn(
                "q1", "A", "s1", "web", "operator", "op", "ABSOLUTE", below_quantity=5, restore_quantity=8
            ),
        )
    before = await pool.fetchval("select max(id) from outbox")
    await reserve(pool, repo, "r1", [RequestLine("A", 6, "s1")])
    rows = await events_of(pool, before)
    assert [r["event_type"].rsplit(".", 1)[1] for r in rows] == [
        "ReservationChanged",
        "AvailabilityChanged",
        "ThresholdStateChanged",
    ]
    assert await pool.fetchval("select state from threshold_rules") == "BELOW"
    await check_invariants(pool)
