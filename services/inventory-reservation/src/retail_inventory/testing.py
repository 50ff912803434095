"""Test helpers for the inventory service's own tests (data builders and invariant checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from retail_common.db import transaction
from retail_inventory.repository import InventoryRepository, LocationIn, MovementIn

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def location(
    location_id: str,
    *,
    region: str = "r1",
    channels: tuple[str, ...] = ("web", "mkt"),
    priority: int = 0,
    active: bool = True,
) -> LocationIn:
    return LocationIn(
        location_id=location_id,
        kind="LOCATION_KIND_STORE",
        display_name=location_id,
        region_id=region,
        time_zone="Europe/Berlin",
        channel_ids=tuple(channels),
        allocation_priority=priority,
        active=active,
    )


async def seed(
    pool: Any, repo: InventoryRepository, stock: dict[tuple[str, str], int], **location_kw: Any
) -> None:
    """Create the locations and receive the given units (one movement per position)."""
    async with transaction(pool) as conn:
        for loc in sorted({k[1] for k in stock}):
            await repo.upsert_location(conn, location(loc, **location_kw))
        await repo.record_movements(
            conn,
            [
                MovementIn(f"seed-{sku}-{loc}", sku, loc, qty, "MOVEMENT_KIND_RECEIPT", at(0))
                for (sku, loc), qty in sorted(stock.items())
            ],
        )


async def outbox_count(pool: Any, event: str) -> int:
    return int(
        await pool.fetchval(
            "select count(*) from outbox where event_type = $1", f"retail.inventory.v1.{event}"
        )
    )


async def check_invariants(pool: Any) -> None:
    """reserved_total <= on_hand, per-channel counts and live lines add up to reserved_total."""
    rows = await pool.fetch(
        """
        select s.sku, s.location_id, s.on_hand, s.reserved_total, s.channel_reserved,
               coalesce((select sum(rl.quantity - rl.confirmed - rl.released)
                         from reservation_lines rl join reservations r using (reservation_id)
                         where r.state = 'ACTIVE' and rl.sku = s.sku and rl.location_id = s.location_id), 0)
                 as live
        from stock s
        """
    )
    for r in rows:
        assert 0 <= r["reserved_total"] <= max(0, r["on_hand"]), dict(r)
        assert r["live"] == r["reserved_total"], dict(r)
        assert sum(int(v) for v in r["channel_reserved"].values()) == r["reserved_total"], dict(r)
    negative = await pool.fetchval(
        "select count(*) from stock s join locations l using (location_id), unnest(l.channel_ids) c"
        " where inv_ats(s.on_hand, s.reserved_total, s.safety_stock, l.default_fences || s.fences,"
        " s.channel_reserved, c) < 0"
    )
    assert negative == 0
    settled = await pool.fetchval(
        "select count(*) from reservation_lines rl join reservations r using (reservation_id)"
        " where r.state <> 'ACTIVE' and rl.confirmed + rl.released <> rl.quantity"
    )
    assert settled == 0
