"""The set-based snapshot import against a real Postgres: events of changed positions only, written by
one INSERT ... SELECT whose SQL-built payloads must equal the Python builders byte for byte; older
snapshots ignored; later movements re-applied; the reference check that replaced the foreign keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from retail.inventory.v1 import events_pb2
from retail_common.db import transaction
from retail_inventory import events
from retail_inventory.domain.allocation import RequestLine
from retail_inventory.repository import MovementIn, PolicyIn, RuleIn, SnapshotIn
from retail_inventory.testing import at, check_invariants, location

AVAILABILITY = "retail.inventory.v1.AvailabilityChanged"


async def availability_rows(pool: asyncpg.Pool, after_id: int = 0) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "select * from outbox where event_type = $1 and id > $2 order by id", AVAILABILITY, after_id
        )
    )


async def last_outbox_id(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("select coalesce(max(id), 0) from outbox"))


async def import_(pool, repo, entries):
    async with transaction(pool) as conn:
        return await repo.import_snapshot_batch(conn, entries)


async def expected_payload(pool: asyncpg.Pool, sku: str, loc: str, version: int) -> bytes:
    """What the Python builder (availability_changed) writes for the position as it is now."""
    async with pool.acquire() as conn:
        (row,) = await conn.fetch(
            "select s.sku, s.location_id, s.on_hand, s.reserved_total, s.safety_stock,"
            " nullif(s.fences, '{}'::jsonb) as fences,"
            " nullif(s.channel_reserved, '{}'::jsonb) as channel_reserved, s.updated_at,"
            " l.active, l.channel_ids, nullif(l.default_fences, '{}'::jsonb) as default_fences"
            " from stock s join locations l using (location_id) where s.sku = $1 and s.location_id = $2",
            sku,
            loc,
        )
    return events.availability_changed(row, version).SerializeToString(deterministic=True)


async def test_sql_built_events_equal_the_python_builder_byte_for_byte(pool, repo):
    mixed = replace(location("mixed", channels=("web", "app", "mkt")), default_fences={"mkt": {"fixed": 3}})
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("plain"))
        await repo.upsert_location(conn, mixed)
        await repo.upsert_location(conn, location("off", active=False))
        await repo.upsert_location(conn, location("Zoll.Lager 1", channels=("wéb",)))
        await repo.upsert_location(conn, location("none", channels=()))
    # a position with its own fences, a reservation, safety stock; large and negative on-hands
    await import_(pool, repo, [SnapshotIn("F", "mixed", 40, at(1))])
    async with transaction(pool) as conn:
        await repo.set_policies(
            conn, [PolicyIn("F", "mixed", 2, {"app": {"share_bp": 2500}, "ohne": {"fixed": 1}})]
        )
        await repo.reserve(
            conn,
            reservation_id="r1",
            channel="web",
            lines=[RequestLine("F", 4, "mixed")],
            ttl=timedelta(minutes=5),
            request_print="r1",
        )
        await repo.record_movements(
            conn, [MovementIn("m-neg", "N", "plain", -20_000, "MOVEMENT_KIND_SALE", at(9))]
        )
    before = await last_outbox_id(pool)
    entries = [
        SnapshotIn("F", "mixed", 41, at(5)),
        SnapshotIn("A", "plain", 7, at(5)),
        SnapshotIn("B", "plain", 300, at(5)),  # two-byte varint
        SnapshotIn("C", "plain", 20_000, at(5)),  # three bytes (the plpgsql path)
        SnapshotIn("D", "plain", 2**40, at(5)),
        SnapshotIn("N", "plain", 5, at(5)),  # -20,000 after it: on-hand -19,995 (ten-byte varint)
        SnapshotIn("A", "off", 3, at(5)),  # inactive: ATS 0 everywhere
        SnapshotIn("A.B 12/ü", "Zoll.Lager 1", 9, at(5)),  # ids that need escaping in subjects
        SnapshotIn("A", "none", 1, at(5)),  # no channels: no entries
        SnapshotIn("Z", "plain", 0, at(5)),  # new at zero: no change, no event
    ]
    result = await import_(pool, repo, entries)
    assert (result.received, result.applied, result.changed) == (10, 10, 9)
    rows = await availability_rows(pool, before)
    assert len(rows) == 9
    seen = set()
    for row in rows:
        message = events_pb2.AvailabilityChanged.FromString(bytes(row["payload"]))
        sku, loc = message.sku, message.location_id
        seen.add((sku, loc))
        assert row["aggregate_key"] == f"{sku}/{loc}"
        assert row["aggregate_type"] == "retail.inventory.v1.StockPosition"
        assert row["subject"] == events.subject("AvailabilityChanged", sku, loc)
        version = row["aggregate_version"]
        assert bytes(row["payload"]) == await expected_payload(pool, sku, loc, version), (sku, loc)
        assert row["event_id"].version == 7
    assert seen == {(e.sku, e.location_id) for e in entries} - {("Z", "plain")}
    on_hand_n = events_pb2.AvailabilityChanged.FromString(
        bytes(next(r["payload"] for r in rows if r["aggregate_key"] == "N/plain"))
    ).on_hand
    assert on_hand_n == -19_995
    await check_invariants(pool)


async def test_only_changed_positions_are_announced_and_older_snapshots_change_nothing(pool, repo):
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("s1"))
    first = [SnapshotIn(f"k{i}", "s1", 10 + i, at(10)) for i in range(50)]
    assert (await import_(pool, repo, first)).changed == 50
    versions = {r["aggregate_key"]: r["aggregate_version"] for r in await availability_rows(pool)}
    assert set(versions.values()) == {1}
    # a newer snapshot changing 3 of 50: three events, each the position's next version
    before = await last_outbox_id(pool)
    second = [
        SnapshotIn(e.sku, "s1", e.on_hand + (1 if i in (3, 17, 42) else 0), at(20))
        for i, e in enumerate(first)
    ]
    result = await import_(pool, repo, second)
    assert (result.applied, result.ignored, result.changed) == (50, 0, 3)
    rows = await availability_rows(pool, before)
    assert [(r["aggregate_key"], r["aggregate_version"]) for r in rows] == [
        ("k17/s1", 2), ("k3/s1", 2), ("k42/s1", 2),
    ]  # fmt: skip
    # an older snapshot (between the two) is ignored entirely, and the same one again has one effect
    before = await last_outbox_id(pool)
    older = [SnapshotIn(e.sku, "s1", 999, at(15)) for e in first]
    result = await import_(pool, repo, older)
    assert (result.applied, result.ignored, result.changed) == (0, 50, 0)
    result = await import_(pool, repo, second)
    assert (result.applied, result.ignored, result.changed) == (0, 50, 0)
    assert await availability_rows(pool, before) == []
    assert await pool.fetchval("select sum(on_hand) from stock") == sum(e.on_hand for e in second)
    assert await pool.fetchval("select count(distinct snapshot_as_of) from stock") == 1


async def test_movements_after_the_as_of_are_reapplied_and_earlier_ones_are_contained(pool, repo):
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("s1"))
        await repo.record_movements(
            conn,
            [
                MovementIn("early", "A", "s1", 5, "MOVEMENT_KIND_RECEIPT", at(5)),
                MovementIn("late1", "A", "s1", -2, "MOVEMENT_KIND_SALE", at(12)),
                MovementIn("late2", "A", "s1", 7, "MOVEMENT_KIND_RECEIPT", at(14)),
                MovementIn("other", "B", "s1", 3, "MOVEMENT_KIND_RECEIPT", at(30)),
            ],
        )
    before = await last_outbox_id(pool)
    result = await import_(pool, repo, [SnapshotIn("A", "s1", 100, at(10)), SnapshotIn("B", "s1", 3, at(40))])
    assert (result.applied, result.changed) == (2, 1)  # B: 3 at t40 contains its t30 receipt: unchanged
    stock = {r["sku"]: r["on_hand"] for r in await pool.fetch("select sku, on_hand from stock")}
    assert stock == {"A": 105, "B": 3}
    (row,) = await availability_rows(pool, before)
    assert events_pb2.AvailabilityChanged.FromString(bytes(row["payload"])).on_hand == 105
    # a newer snapshot after both late movements contains them
    await import_(pool, repo, [SnapshotIn("A", "s1", 50, at(20))])
    assert await pool.fetchval("select on_hand from stock where sku = 'A'") == 50


async def test_snapshot_batches_still_evaluate_threshold_rules(pool, repo):
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("s1"))
    await import_(pool, repo, [SnapshotIn("A", "s1", 20, at(1)), SnapshotIn("B", "s1", 20, at(1))])
    async with transaction(pool) as conn:
        await repo.create_rule(
            conn,
            RuleIn(
                "q1", "A", "s1", "web", "operator", "op", "ABSOLUTE", below_quantity=5, restore_quantity=8
            ),
        )
    await import_(pool, repo, [SnapshotIn("A", "s1", 3, at(2)), SnapshotIn("B", "s1", 3, at(2))])
    assert await pool.fetchval("select state from threshold_rules") == "BELOW"
    await import_(pool, repo, [SnapshotIn("A", "s1", 4, at(3))])  # still below: no second crossing
    await import_(pool, repo, [SnapshotIn("A", "s1", 9, at(4))])
    assert await pool.fetchval("select state from threshold_rules") == "ABOVE"
    assert (
        await pool.fetchval(
            "select count(*) from outbox where event_type = 'retail.inventory.v1.ThresholdStateChanged'"
        )
        == 2
    )


async def test_stock_rows_must_name_a_known_sku_and_location(pool, repo):
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, location("s1"))
    await pool.execute("insert into skus (sku) values ('A')")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="unknown location"):
        await pool.execute("insert into stock (sku, location_id) values ('A', 's1'), ('A', 'nowhere')")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="unknown SKU"):
        await pool.execute("insert into stock (sku, location_id) values ('Q', 's1')")
    await pool.execute("insert into stock (sku, location_id) values ('A', 's1')")
    assert await pool.fetchval("select count(*) from stock") == 1


def _varint(value: int) -> bytes:
    """protobuf's int64 varint: two's complement for negatives (ten bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


async def test_sql_varints_at_every_length_boundary(pool):
    values = [0, 1, -1, -(2**63), 2**63 - 1]
    for length in range(1, 10):
        edge = 1 << (7 * length)
        values += [v for v in (edge - 1, edge) if v < 2**63]
    rows = await pool.fetch("select v, inv_pb_varint(v) as b from unnest($1::bigint[]) v", values)
    assert {r["v"]: bytes(r["b"]) for r in rows} == {v: _varint(v) for v in values}
