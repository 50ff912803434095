"""Repository against a real Postgres: reservations, fences, idempotency, snapshots, expiry, thresholds."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import timedelta

import pytest

from retail.inventory.v1 import events_pb2
from retail_common.db import transaction
from retail_common.errors import FailedPrecondition, InvalidArgument
from retail_inventory.domain.allocation import AllocationStrategy, RequestLine
from retail_inventory.repository import MovementIn, PolicyIn, RuleIn, SnapshotIn
from retail_inventory.testing import at, check_invariants, location, outbox_count, seed

TTL = timedelta(minutes=15)


async def reserve(pool, repo, rid, channel, lines, ttl=TTL, print_=None):
    async with transaction(pool) as conn:
        return await repo.reserve(
            conn, reservation_id=rid, channel=channel, lines=lines, ttl=ttl, request_print=print_ or rid
        )


async def position(pool, sku, loc):
    return await pool.fetchrow("select * from stock where sku = $1 and location_id = $2", sku, loc)


async def test_reserve_within_ats_then_out_of_stock_changes_nothing(pool, repo):
    await seed(pool, repo, {("A", "s1"): 5})
    proto, created = await reserve(pool, repo, "r1", "web", [RequestLine("A", 3, "s1")])
    assert created
    assert [(line.sku, line.location_id, line.held_quantity) for line in proto.lines] == [("A", "s1", 3)]
    with pytest.raises(FailedPrecondition) as caught:
        await reserve(pool, repo, "r2", "web", [RequestLine("A", 3, "s1")])
    assert caught.value.reason == "OUT_OF_STOCK"
    assert caught.value.violations[0].subject == "A"
    assert await pool.fetchval("select count(*) from reservations where reservation_id = 'r2'") == 0
    assert (await position(pool, "A", "s1"))["reserved_total"] == 3
    await check_invariants(pool)


async def test_all_or_nothing_across_lines(pool, repo):
    await seed(pool, repo, {("A", "s1"): 5, ("B", "s1"): 1})
    with pytest.raises(FailedPrecondition) as caught:
        await reserve(pool, repo, "r1", "web", [RequestLine("A", 2, "s1"), RequestLine("B", 2, "s1")])
    assert caught.value.violations[0].subject == "B"
    assert (await position(pool, "A", "s1"))["reserved_total"] == 0
    await check_invariants(pool)


async def test_unknown_sku_and_location_are_invalid_argument_naming_the_field(pool, repo):
    await seed(pool, repo, {("A", "s1"): 5})
    with pytest.raises(InvalidArgument) as caught:
        await reserve(pool, repo, "r1", "web", [RequestLine("A", 1, "s1"), RequestLine("Z", 1, "s1")])
    assert [v.field for v in caught.value.violations] == ["lines[1].sku"]
    with pytest.raises(InvalidArgument) as caught:
        await reserve(pool, repo, "r1", "web", [RequestLine("A", 1, "nowhere")])
    assert [v.field for v in caught.value.violations] == ["lines[0].location_id"]
    assert await pool.fetchval("select count(*) from reservations") == 0
    assert (await position(pool, "A", "s1"))["reserved_total"] == 0


async def test_marketplace_fence_fully_reserved_leaves_web_80(pool, repo):
    await seed(pool, repo, {("A", "s1"): 100})
    async with transaction(pool) as conn:
        await repo.set_policies(conn, [PolicyIn("A", "s1", 0, {"mkt": {"fixed": 20}})])
    # before the marketplace reserves, its fence is withheld from web
    with pytest.raises(FailedPrecondition):
        await reserve(pool, repo, "w0", "web", [RequestLine("A", 81, "s1")])
    await reserve(pool, repo, "m1", "mkt", [RequestLine("A", 20, "s1")])
    with pytest.raises(FailedPrecondition):
        await reserve(pool, repo, "w1", "web", [RequestLine("A", 81, "s1")])
    await reserve(pool, repo, "w2", "web", [RequestLine("A", 80, "s1")])
    row = await position(pool, "A", "s1")
    assert (row["reserved_total"], row["channel_reserved"]) == (100, {"mkt": 20, "web": 80})
    await check_invariants(pool)


async def test_share_fence_in_sql_matches_domain(pool, repo):
    await seed(pool, repo, {("A", "s1"): 99})
    async with transaction(pool) as conn:
        await repo.set_policies(conn, [PolicyIn("A", "s1", 5, {"mkt": {"share_bp": 2000}})])
    # 20% of 99 = 19 (rounded down): web may take 99 - 5 - 19 = 75
    with pytest.raises(FailedPrecondition):
        await reserve(pool, repo, "w1", "web", [RequestLine("A", 76, "s1")])
    await reserve(pool, repo, "w2", "web", [RequestLine("A", 75, "s1")])


async def test_reserve_is_idempotent_by_reservation_id(pool, repo):
    await seed(pool, repo, {("A", "s1"): 5})
    first, created = await reserve(pool, repo, "r1", "web", [RequestLine("A", 2, "s1")])
    again, created_again = await reserve(pool, repo, "r1", "web", [RequestLine("A", 2, "s1")])
    assert created
    assert not created_again
    assert again == first
    assert (await position(pool, "A", "s1"))["reserved_total"] == 2
    assert await outbox_count(pool, "ReservationChanged") == 1
    with pytest.raises(InvalidArgument) as caught:
        await reserve(pool, repo, "r1", "web", [RequestLine("A", 3, "s1")], print_="different")
    assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_concurrent_duplicate_reserves_have_one_effect(pool, repo):
    await seed(pool, repo, {("A", "s1"): 50})
    results = await asyncio.gather(
        *(reserve(pool, repo, "dup", "web", [RequestLine("A", 2, "s1")]) for _ in range(10))
    )
    assert sum(created for _, created in results) == 1
    assert (await position(pool, "A", "s1"))["reserved_total"] == 2


async def test_no_oversell_under_concurrency_single_and_multi_line(pool, repo):
    skus = ["A", "B", "C"]
    await seed(pool, repo, {(s, "s1"): 100 for s in skus})

    async def attempt(i):
        try:
            await reserve(pool, repo, f"one-{i}", "web", [RequestLine("A", 1, "s1")])
            return True
        except FailedPrecondition as exc:
            return exc.violations[0].subject

    outcomes = await asyncio.gather(*(attempt(i) for i in range(200)))
    assert outcomes.count(True) == 100
    assert outcomes.count("A") == 100
    await check_invariants(pool)

    rng = random.Random(7)

    async def multi(i):
        lines = [RequestLine(s, 1, "s1") for s in rng.sample(["B", "C"], 2)]
        try:
            await reserve(pool, repo, f"multi-{i}", "web", lines)
            return True
        except FailedPrecondition:
            return False

    outcomes = await asyncio.gather(*(multi(i) for i in range(150)))
    assert sum(outcomes) == 100
    for s in skus:
        row = await position(pool, s, "s1")
        assert row["reserved_total"] == 100
    await check_invariants(pool)


async def test_region_allocation_by_priority_and_split(pool, repo):
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("s1", priority=2))
        await repo.upsert_location(conn, location("s2", priority=1))
        await repo.upsert_location(conn, location("s3", priority=0, channels=("mkt",)))
        await repo.record_movements(
            conn,
            [
                MovementIn("m1", "A", "s1", 10, "MOVEMENT_KIND_RECEIPT", at(0)),
                MovementIn("m2", "A", "s2", 3, "MOVEMENT_KIND_RECEIPT", at(0)),
                MovementIn("m3", "A", "s3", 50, "MOVEMENT_KIND_RECEIPT", at(0)),
            ],
        )
    prio = AllocationStrategy.LOCATION_PRIORITY
    proto, _ = await reserve(pool, repo, "r1", "web", [RequestLine("A", 2, region_id="r1", strategy=prio)])
    assert [(x.location_id, x.quantity) for x in proto.lines] == [("s2", 2)]  # s3 does not serve web
    proto, _ = await reserve(
        pool, repo, "r2", "web", [RequestLine("A", 5, region_id="r1", strategy=prio, allow_split=True)]
    )
    assert [(x.location_id, x.quantity) for x in proto.lines] == [("s2", 1), ("s1", 4)]
    with pytest.raises(FailedPrecondition):
        await reserve(pool, repo, "r3", "web", [RequestLine("A", 7, region_id="r1", strategy=prio)])
    most = AllocationStrategy.MOST_STOCK
    proto, _ = await reserve(pool, repo, "r4", "web", [RequestLine("A", 6, region_id="r1", strategy=most)])
    assert [(x.location_id, x.quantity) for x in proto.lines] == [("s1", 6)]
    await check_invariants(pool)


async def test_partial_confirm_release_and_state(pool, repo):
    await seed(pool, repo, {("A", "s1"): 10, ("B", "s1"): 10})
    await reserve(pool, repo, "r1", "web", [RequestLine("A", 4, "s1"), RequestLine("B", 2, "s1")])
    async with transaction(pool) as conn:
        proto = await repo.settle_reservation(conn, "r1", [(0, 3)], confirm=True, request_id="c1")
    assert proto.state == 1  # ACTIVE
    a = await position(pool, "A", "s1")
    assert (a["on_hand"], a["reserved_total"]) == (7, 1)
    async with transaction(pool) as conn:
        proto = await repo.settle_reservation(conn, "r1", None, confirm=False, request_id="x1")
    assert proto.state == 2  # CONFIRMED (some units confirmed)
    assert [(x.confirmed_quantity, x.released_quantity) for x in proto.lines] == [(3, 1), (0, 2)]
    with pytest.raises(FailedPrecondition) as caught:
        async with transaction(pool) as conn:
            await repo.settle_reservation(conn, "r1", None, confirm=True, request_id="c2")
    assert caught.value.reason == "RESERVATION_NOT_ACTIVE"
    assert await pool.fetchval("select sum(delta) from movements where kind = 'SHIPMENT'") == -3
    await check_invariants(pool)


async def test_expiry_sweep_is_the_only_expiry_and_announces_once(pool, repo):
    await seed(pool, repo, {("A", "s1"): 10})
    await reserve(pool, repo, "r1", "web", [RequestLine("A", 4, "s1")])
    await reserve(pool, repo, "r2", "web", [RequestLine("A", 1, "s1")])
    # Time passes for r1 only (the sweep reads the database clock).
    await pool.execute(
        "update reservations set expires_at = now() - interval '1 second' where reservation_id = 'r1'"
    )
    # Past its expiry but not swept: confirm refuses, and the units are still held.
    with pytest.raises(FailedPrecondition) as caught:
        async with transaction(pool) as conn:
            await repo.settle_reservation(conn, "r1", None, confirm=True, request_id="c1")
    assert caught.value.reason == "RESERVATION_EXPIRED"
    assert (await position(pool, "A", "s1"))["reserved_total"] == 5
    async with transaction(pool) as conn:
        assert await repo.expire_due(conn) == ["r1"]
    async with transaction(pool) as conn:
        assert await repo.expire_due(conn) == []
    assert (await position(pool, "A", "s1"))["reserved_total"] == 1
    assert (
        await pool.fetchval(
            "select count(*) from outbox o where o.event_type = 'retail.inventory.v1.ReservationChanged'"
            " and o.aggregate_key = 'r1'"
        )
        == 2
    )  # created, expired
    await check_invariants(pool)


async def test_movements_are_idempotent_and_snapshot_merge(pool, repo):
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("s1"))
        out = await repo.record_movements(
            conn,
            [
                MovementIn("m1", "A", "s1", 10, "MOVEMENT_KIND_RECEIPT", at(5)),
                MovementIn("m1", "A", "s1", 10, "MOVEMENT_KIND_RECEIPT", at(5)),
            ],
        )
    assert out == ["APPLIED", "DUPLICATE"]
    async with transaction(pool) as conn:
        assert await repo.record_movements(
            conn, [MovementIn("m1", "A", "s1", 10, "MOVEMENT_KIND_RECEIPT", at(5))]
        ) == ["DUPLICATE"]
        await repo.record_movements(conn, [MovementIn("m2", "A", "s1", -3, "MOVEMENT_KIND_SALE", at(12))])
    assert (await position(pool, "A", "s1"))["on_hand"] == 7
    async with transaction(pool) as conn:
        result = await repo.import_snapshot_batch(conn, [SnapshotIn("A", "s1", 50, at(10))])
    assert (result.applied, result.changed) == (1, 1)
    assert (await position(pool, "A", "s1"))["on_hand"] == 47  # m2 (t=12) re-applied on top
    async with transaction(pool) as conn:
        older = await repo.import_snapshot_batch(conn, [SnapshotIn("A", "s1", 1, at(8))])
        same = await repo.import_snapshot_batch(conn, [SnapshotIn("A", "s1", 50, at(10))])
        out = await repo.record_movements(
            conn, [MovementIn("m3", "A", "s1", 4, "MOVEMENT_KIND_RETURN", at(9))]
        )
    assert (older.ignored, same.ignored, out) == (1, 1, ["CONTAINED_IN_SNAPSHOT"])
    assert (await position(pool, "A", "s1"))["on_hand"] == 47


async def test_snapshot_emits_availability_only_for_changed_positions(pool, repo):
    await seed(pool, repo, {("A", "s1"): 5, ("B", "s1"): 7})
    before = await outbox_count(pool, "AvailabilityChanged")
    async with transaction(pool) as conn:
        result = await repo.import_snapshot_batch(
            conn,
            [
                SnapshotIn("A", "s1", 5, at(10)),
                SnapshotIn("B", "s1", 9, at(10)),
                SnapshotIn("C", "s1", 0, at(10)),
            ],
        )
    assert (result.received, result.applied, result.changed) == (3, 3, 1)
    assert await outbox_count(pool, "AvailabilityChanged") == before + 1


async def test_shortage_cuts_newest_reservation_first(pool, repo):
    await seed(pool, repo, {("A", "s1"): 10})
    await reserve(pool, repo, "old", "web", [RequestLine("A", 4, "s1")])
    await reserve(pool, repo, "new", "mkt", [RequestLine("A", 4, "s1")])
    async with transaction(pool) as conn:
        await repo.import_snapshot_batch(conn, [SnapshotIn("A", "s1", 6, at(10))])
    row = await position(pool, "A", "s1")
    assert (row["on_hand"], row["reserved_total"], row["channel_reserved"]) == (6, 6, {"web": 4, "mkt": 2})
    async with transaction(pool) as conn:
        new = await repo.get_reservation(conn, "new")
    assert new is not None
    assert new.lines[0].released_quantity == 2
    await check_invariants(pool)


async def test_threshold_hovering_announces_each_real_crossing_once(pool, repo):
    await seed(pool, repo, {("A", "s1"): 12})
    async with transaction(pool) as conn:
        rule, _ = await repo.create_rule(
            conn,
            RuleIn(
                "q1",
                "A",
                "s1",
                "web",
                "campaign",
                "camp-1",
                "ABSOLUTE",
                below_quantity=10,
                restore_quantity=15,
            ),
        )
    assert rule["state"] == "ABOVE"
    # on-hand path: 12 -> 9 (BELOW) -> 11 -> 9 -> 10 -> 14 -> 15 (ABOVE) -> 14 -> 9 (BELOW)
    deltas = [-3, 2, -2, 1, 4, 1, -1, -5]
    for i, delta in enumerate(deltas):
        async with transaction(pool) as conn:
            await repo.record_movements(
                conn, [MovementIn(f"h{i}", "A", "s1", delta, "MOVEMENT_KIND_ADJUSTMENT", at(20 + i))]
            )
    assert await outbox_count(pool, "ThresholdStateChanged") == 3
    # reservations move ATS too: 9 -> reserve... restore needs ATS >= 15
    async with transaction(pool) as conn:
        row = await repo.get_rule(conn, rule["rule_id"])
    assert (row["state"], row["version"]) == ("BELOW", 4)


async def test_threshold_follows_reservations_and_days_of_cover(pool, repo):
    await seed(pool, repo, {("A", "s1"): 40})
    async with transaction(pool) as conn:
        # 70 units sold over 7 days = 10/day: BELOW under 3 days of cover (30), back at 4 days (40)
        rule, _ = await repo.create_rule(
            conn,
            RuleIn(
                "q1", "A", "s1", "web", "operator", "ops-1", "DAYS_OF_COVER",
                units_sold=70, period_days=7, below_days=3, restore_days=4,
            ),
        )  # fmt: skip
    assert rule["state"] == "ABOVE"
    await reserve(pool, repo, "r1", "mkt", [RequestLine("A", 11, "s1")])  # web ATS 29 -> BELOW
    await reserve(pool, repo, "r2", "mkt", [RequestLine("A", 1, "s1")])  # 28: still BELOW, no event
    async with transaction(pool) as conn:
        await repo.settle_reservation(conn, "r2", None, confirm=False, request_id="x2")  # 29
        await repo.settle_reservation(conn, "r1", None, confirm=False, request_id="x1")  # 40 -> ABOVE
    events = await pool.fetch(
        "select payload from outbox"
        " where event_type = 'retail.inventory.v1.ThresholdStateChanged' order by id"
    )
    decoded = [events_pb2.ThresholdStateChanged.FromString(e["payload"]) for e in events]
    assert [(e.rule.state, e.available_to_sell, e.rule.owner.operator_id) for e in decoded] == [
        (2, 29, "ops-1"),
        (1, 40, "ops-1"),
    ]


async def test_location_channel_change_republishes_availability(pool, repo):
    await seed(pool, repo, {("A", "s1"): 5, ("B", "s1"): 5})
    before = await outbox_count(pool, "AvailabilityChanged")
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("s1", channels=("web",)))
    assert await outbox_count(pool, "AvailabilityChanged") == before + 2
    with pytest.raises(FailedPrecondition):
        await reserve(pool, repo, "m1", "mkt", [RequestLine("A", 1, "s1")])


async def test_location_default_fences_apply_unless_the_position_has_its_own(pool, repo):
    await seed(pool, repo, {("A", "s1"): 100, ("B", "s1"): 100})
    before = await outbox_count(pool, "AvailabilityChanged")
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, replace(location("s1"), default_fences={"mkt": {"fixed": 20}}))
    # every position at the location has a new ATS for web: each is announced
    assert await outbox_count(pool, "AvailabilityChanged") == before + 2
    async with transaction(pool) as conn:
        # B's own fence for mkt replaces the location's default for mkt
        await repo.set_policies(conn, [PolicyIn("B", "s1", 0, {"mkt": {"fixed": 5}})])
    with pytest.raises(FailedPrecondition):
        await reserve(pool, repo, "w1", "web", [RequestLine("A", 81, "s1")])
    await reserve(pool, repo, "w2", "web", [RequestLine("A", 80, "s1")])
    with pytest.raises(FailedPrecondition):
        await reserve(pool, repo, "w3", "web", [RequestLine("B", 96, "s1")])
    await reserve(pool, repo, "w4", "web", [RequestLine("B", 95, "s1")])
    async with transaction(pool) as conn:
        rows = await repo.availability_rows(conn, "mkt", pairs=[("A", "s1"), ("B", "s1")], computed=True)
    assert {r["sku"]: (r["ats"], r["own_fence"]) for r in rows} == {"A": (20, 20), "B": (5, 5)}
    payload = await pool.fetchval(
        "select payload from outbox where aggregate_key = 'A/s1' order by id desc limit 1"
    )
    event = events_pb2.AvailabilityChanged.FromString(payload)
    assert {c.channel_id: c.available_to_sell for c in event.channels} == {"mkt": 20, "web": 0}
    # the position's policy keeps only its own fences
    assert (await position(pool, "A", "s1"))["fences"] == {}
    await check_invariants(pool)


async def test_location_change_waits_for_open_holds_so_its_events_are_current(pool, repo):
    await seed(pool, repo, {("A", "s1"): 100})
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await repo.reserve(
            conn,
            reservation_id="w1",
            channel="web",
            lines=[RequestLine("A", 5, "s1")],
            ttl=TTL,
            request_print="w1",
        )

        async def change() -> None:
            async with transaction(pool) as other:
                await repo.upsert_location(
                    other, replace(location("s1"), default_fences={"mkt": {"fixed": 20}})
                )

        task = asyncio.create_task(change())
        for _ in range(600):  # a generous bound, not a timing assertion
            if await pool.fetchval(
                "select count(*) from pg_stat_activity"
                " where datname = current_database() and wait_event_type = 'Lock'"
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the location change never waited for the open hold")
        await tx.commit()
    await task
    payload = await pool.fetchval(
        "select payload from outbox where aggregate_key = 'A/s1' order by aggregate_version desc limit 1"
    )
    event = events_pb2.AvailabilityChanged.FromString(payload)
    # the newest event has both the hold and the location's new fence
    assert event.reserved_total == 5
    assert {c.channel_id: c.available_to_sell for c in event.channels} == {"mkt": 95, "web": 75}
    await check_invariants(pool)
