"""Reserve's one-statement hold (a single position: hold + ReservationChanged + AvailabilityChanged in one
append_select) against a real Postgres: same rows and events as the general path, byte for byte."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from google.protobuf.json_format import MessageToDict

from retail.inventory.v1 import events_pb2, reservation_pb2
from retail_common.db import transaction
from retail_common.errors import FailedPrecondition, InvalidArgument
from retail_inventory import events
from retail_inventory.domain.allocation import RequestLine
from retail_inventory.repository import PolicyIn, ReserveAudit, RuleIn
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


AUDIT = ReserveAudit(
    action="/retail.inventory.v1.InventoryService/ReserveStock",
    actor_id="web",
    actor_kind="channel",
    request_id="req-1",
    trace_id=None,
)


async def one_statement(pool, repo, rid, lines, channel="web", print_=None):
    async with pool.acquire() as conn:  # no transaction: the statement is its own
        return await repo.reserve_in_one_statement(
            conn,
            reservation_id=rid,
            channel=channel,
            lines=lines,
            ttl=TTL,
            request_print=print_ or rid,
            audit=AUDIT,
        )


async def test_one_statement_reserve_writes_what_the_transactional_path_writes(pool, repo):
    await seed(pool, repo, {("A", "s1"): 10})
    before = await pool.fetchval("select max(id) from outbox")
    proto = await one_statement(pool, repo, "r1", [RequestLine("A", 2, "s1"), RequestLine("A", 1, "s1")])
    assert proto is not None
    async with transaction(pool) as conn:
        stored = await repo.get_reservation(conn, "r1")
    assert proto == stored  # times included: the reply comes from the event the statement encoded
    assert proto.expire_time.seconds - proto.create_time.seconds == 900
    rows = await events_of(pool, before)
    assert [(r["event_type"], r["aggregate_key"], r["aggregate_version"]) for r in rows] == [
        ("retail.inventory.v1.ReservationChanged", "r1", 1),
        ("retail.inventory.v1.AvailabilityChanged", "A/s1", 2),
    ]
    assert bytes(rows[0]["payload"]) == events_pb2.ReservationChanged(
        change=reservation_pb2.RESERVATION_CHANGE_CREATED, reservation=stored
    ).SerializeToString(deterministic=True)
    (audit,) = await pool.fetch("select * from audit_log where entity_key = 'r1'")
    assert (audit["actor_id"], audit["actor_kind"], audit["action"], audit["request_id"]) == (
        "web",
        "channel",
        AUDIT.action,
        "req-1",
    )
    assert audit["before"] is None
    after = audit["after"] if isinstance(audit["after"], dict) else json.loads(audit["after"])
    assert after == MessageToDict(stored, preserving_proto_field_name=True)
    assert await pool.fetchval("select reserved_total from stock") == 3
    await check_invariants(pool)


async def test_one_statement_reserve_declines_and_changes_nothing(pool, repo):
    await seed(pool, repo, {("A", "s1"): 2, ("B", "s1"): 5, ("W", "s1"): 9})
    async with transaction(pool) as conn:
        await repo.create_rule(
            conn,
            RuleIn(
                "q1", "W", "s1", "web", "operator", "op", "ABSOLUTE", below_quantity=1, restore_quantity=2
            ),
        )
    assert await one_statement(pool, repo, "r0", [RequestLine("B", 1, "s1")]) is not None
    before = await pool.fetchval("select max(id) from outbox")
    declined = [
        ("r0", [RequestLine("B", 1, "s1")]),  # an id seen before
        ("r1", [RequestLine("A", 3, "s1")]),  # more than its ATS
        ("r2", [RequestLine("A", 1, "nowhere")]),  # unknown location
        ("r3", [RequestLine("A", 1, "s1"), RequestLine("B", 1, "s1")]),  # two positions
        ("r4", [RequestLine("A", 1, region_id="r1")]),  # a region line
        ("r5", [RequestLine("W", 1, "s1")]),  # watched by a threshold rule
    ]
    for rid, lines in declined:
        assert await one_statement(pool, repo, rid, lines) is None, rid
    assert await events_of(pool, before) == []
    assert await pool.fetchval("select count(*) from reservations") == 1
    assert await pool.fetchval("select count(*) from audit_log where entity_key <> 'r0'") == 0
    assert await pool.fetchval("select sum(reserved_total) from stock") == 1
    await check_invariants(pool)
