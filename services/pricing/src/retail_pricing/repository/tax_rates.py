"""Effective-dated tax rates: history rows per (region, tax class) in `tax_rates`, and the activations
of rates scheduled ahead in `tax_rate_activations` (apart, so the scheduler's polls never read the
configuration table that resolution caches)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from retail_common.db import Connection
from retail_pricing.domain.tax_rates import SINCE_ALWAYS, TaxRates

__all__ = [
    "DueRate",
    "StoredTaxRate",
    "claim_due_rates",
    "list_tax_rates",
    "load_tax_rates",
    "mark_rates_announced",
    "next_rate_due_at",
    "rate_at",
    "set_tax_rate",
]

_COLUMNS = "region_id, tax_class, rate, effective_at, updated_at"


@dataclass(frozen=True)
class StoredTaxRate:
    region_id: str
    tax_class: str
    rate: Decimal
    effective_at: datetime  # SINCE_ALWAYS for rates from before effective dating
    updated_at: datetime


@dataclass(frozen=True)
class DueRate:
    region_id: str
    tax_class: str
    effective_at: datetime


def _instant(value: datetime) -> datetime:
    # asyncpg reads '-infinity' as a naive datetime.min (and writes SINCE_ALWAYS as '-infinity').
    return SINCE_ALWAYS if value.tzinfo is None else value


def _stored(row: Any) -> StoredTaxRate:
    return StoredTaxRate(
        row["region_id"], row["tax_class"], row["rate"], _instant(row["effective_at"]), row["updated_at"]
    )


async def load_tax_rates(conn: Connection) -> TaxRates:
    rows = await conn.fetch("select region_id, tax_class, rate, effective_at from tax_rates")
    history: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = {}
    for r in rows:
        key = (r["region_id"], r["tax_class"])
        history.setdefault(key, []).append((_instant(r["effective_at"]), r["rate"]))
    return TaxRates(history)


async def rate_at(conn: Connection, region_id: str, tax_class: str, at: datetime) -> Decimal | None:
    """The key's own rate in effect at `at` (locking the key's rows: one writer per key at a time)."""
    await conn.execute(
        "select 1 from tax_rates where region_id = $1 and tax_class = $2 for update", region_id, tax_class
    )
    rate: Decimal | None = await conn.fetchval(
        """
        select rate from tax_rates where region_id = $1 and tax_class = $2 and effective_at <= $3
        order by effective_at desc limit 1
        """,
        region_id,
        tax_class,
        at,
    )
    return rate


async def set_tax_rate(
    conn: Connection, region_id: str, tax_class: str, rate: Decimal, effective_at: datetime, now: datetime
) -> StoredTaxRate:
    """Record the rate from `effective_at` on (replacing a row of that very instant); a rate effective
    later than now also gets a pending activation row (kept if the rate at that instant is replaced)."""
    row = await conn.fetchrow(
        f"""
        insert into tax_rates (region_id, tax_class, rate, effective_at, version, updated_at)
        values ($1::text, $2::text, $3::numeric, $4::timestamptz,
            coalesce((select max(version) from tax_rates where region_id = $1 and tax_class = $2), 0) + 1,
            $5::timestamptz)
        on conflict (region_id, tax_class, effective_at) do update
            set rate = excluded.rate, version = excluded.version, updated_at = excluded.updated_at
        returning {_COLUMNS}
        """,
        region_id,
        tax_class,
        rate,
        effective_at,
        now,
    )
    assert row is not None
    if effective_at > now:
        await conn.execute(
            "insert into tax_rate_activations (region_id, tax_class, effective_at) values ($1, $2, $3)"
            " on conflict do nothing",
            region_id,
            tax_class,
            effective_at,
        )
    return _stored(row)


async def list_tax_rates(conn: Connection, now: datetime, *, superseded: bool) -> list[StoredTaxRate]:
    """Every row (superseded) or, per key, the row in effect at `now` and the later ones."""
    condition = (
        ""
        if superseded
        else """where effective_at >= coalesce(
            (select max(c.effective_at) from tax_rates c
             where c.region_id = t.region_id and c.tax_class = t.tax_class and c.effective_at <= $1),
            '-infinity')"""
    )
    rows = await conn.fetch(
        f"select {_COLUMNS} from tax_rates t {condition} order by region_id, tax_class, effective_at",
        *(() if superseded else (now,)),
    )
    return [_stored(r) for r in rows]


async def next_rate_due_at(conn: Connection) -> datetime | None:
    due: datetime | None = await conn.fetchval(
        "select min(effective_at) from tax_rate_activations where announced_at is null"
    )
    return due


async def claim_due_rates(conn: Connection, now: datetime, limit: int) -> list[DueRate]:
    """Lock due, unannounced rates (skipping those another replica holds), oldest first."""
    rows = await conn.fetch(
        """
        select region_id, tax_class, effective_at from tax_rate_activations
        where announced_at is null and effective_at <= $1
        order by effective_at, region_id, tax_class limit $2
        for update skip locked
        """,
        now,
        limit,
    )
    return [DueRate(r["region_id"], r["tax_class"], r["effective_at"]) for r in rows]


async def mark_rates_announced(conn: Connection, due: list[DueRate], now: datetime) -> None:
    await conn.executemany(
        "update tax_rate_activations set announced_at = $4"
        " where region_id = $1 and tax_class = $2 and effective_at = $3",
        [(d.region_id, d.tax_class, d.effective_at, now) for d in due],
    )
