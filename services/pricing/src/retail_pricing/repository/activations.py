"""Due instants at which entries start or end, announced once by the activation scheduler."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from retail_common.db import Connection
from retail_pricing.domain.model import AbsoluteWindow, PriceEntry
from retail_pricing.domain.windows import bounds

__all__ = [
    "Due",
    "claim_due",
    "forget_entry",
    "mark_announced",
    "next_due_at",
    "schedule_entry",
    "schedule_new_entries",
]


@dataclass(frozen=True)
class Due:
    entry_id: int
    edge: str
    time_zone: str
    due_at: datetime
    sku: str
    price_list_id: str


async def schedule_entry(conn: Connection, entry: PriceEntry, zones: Iterable[str], after: datetime) -> None:
    """(Re)schedule the start and end of an entry that lie after `after` (local windows: per zone)."""
    await forget_entry(conn, entry.entry_id)
    await schedule_new_entries(conn, [entry], zones, after)


async def schedule_new_entries(
    conn: Connection, entries: Iterable[PriceEntry], zones: Iterable[str], after: datetime
) -> None:
    """Schedule the starts and ends after `after` of entries that have no activation rows yet."""
    zone_list = sorted(set(zones))
    rows = []
    for entry in entries:
        targets = [""] if isinstance(entry.window, AbsoluteWindow) else zone_list
        for zone in targets:
            b = bounds(entry.window, zone or None)
            if b is None:
                continue
            for edge, instant in (("start", b[0]), ("end", b[1])):
                if instant is not None and instant > after:
                    rows.append((entry.entry_id, edge, zone, instant, entry.sku, entry.price_list_id))
    if rows:
        await conn.executemany(
            """
            insert into activations (entry_id, edge, time_zone, due_at, sku, price_list_id)
            values ($1, $2, $3, $4, $5, $6) on conflict do nothing
            """,
            rows,
        )


async def forget_entry(conn: Connection, entry_id: int) -> None:
    await conn.execute("delete from activations where entry_id = $1 and announced_at is null", entry_id)


async def next_due_at(conn: Connection) -> datetime | None:
    due: datetime | None = await conn.fetchval(
        "select min(due_at) from activations where announced_at is null"
    )
    return due


async def claim_due(conn: Connection, now: datetime, limit: int) -> list[Due]:
    """Lock due, unannounced rows (skipping rows another replica holds), oldest first."""
    rows = await conn.fetch(
        """
        select entry_id, edge, time_zone, due_at, sku, price_list_id from activations
        where announced_at is null and due_at <= $1
        order by due_at, entry_id limit $2
        for update skip locked
        """,
        now,
        limit,
    )
    return [
        Due(r["entry_id"], r["edge"], r["time_zone"], r["due_at"], r["sku"], r["price_list_id"]) for r in rows
    ]


async def mark_announced(conn: Connection, due: Iterable[Due], now: datetime) -> None:
    await conn.executemany(
        "update activations set announced_at = $4 where entry_id = $1 and edge = $2 and time_zone = $3",
        [(d.entry_id, d.edge, d.time_zone, now) for d in due],
    )
