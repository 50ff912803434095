"""Price entries. Overlaps are refused by the database's exclusion constraints."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from retail_common.db import Connection
from retail_pricing.domain.change_sets import AddEntry
from retail_pricing.domain.errors import RuleError
from retail_pricing.domain.model import PriceEntry, Window
from retail_pricing.repository.windows import window_columns, window_from_row

__all__ = [
    "delete_entry",
    "entries_by_ids",
    "entries_for_skus",
    "entries_of_change_set",
    "insert_entries",
    "insert_entry",
    "list_entries",
    "priced_skus_of_tax_class",
    "shorten_entry",
    "skus_of_list",
]

_COLUMNS = "entry_id, price_list_id, sku, min_quantity, amount, window_kind, abs_range, local_range"


def _entry(row: Any) -> PriceEntry:
    return PriceEntry(
        entry_id=row["entry_id"],
        price_list_id=row["price_list_id"],
        sku=row["sku"],
        amount=row["amount"],
        window=window_from_row(row),
        min_quantity=row["min_quantity"],
    )


async def entries_for_skus(conn: Connection, skus: Iterable[str]) -> dict[str, list[PriceEntry]]:
    rows = await conn.fetch(
        f"select {_COLUMNS} from price_entries where sku = any($1::text[]) order by sku, entry_id", list(skus)
    )
    result: dict[str, list[PriceEntry]] = {}
    for row in rows:
        result.setdefault(row["sku"], []).append(_entry(row))
    return result


async def entries_by_ids(
    conn: Connection, ids: Iterable[int], *, lock: bool = False
) -> dict[int, PriceEntry]:
    suffix = " order by entry_id for update" if lock else ""
    rows = await conn.fetch(
        f"select {_COLUMNS} from price_entries where entry_id = any($1::bigint[]){suffix}", list(ids)
    )
    return {row["entry_id"]: _entry(row) for row in rows}


async def skus_of_list(conn: Connection, price_list_id: str) -> list[str]:
    rows = await conn.fetch(
        "select distinct sku from price_entries where price_list_id = $1 order by sku", price_list_id
    )
    return [row["sku"] for row in rows]


async def priced_skus_of_tax_class(conn: Connection, tax_class: str) -> list[str]:
    rows = await conn.fetch(
        "select distinct e.sku from price_entries e join products p using (sku)"
        " where p.tax_class = $1 order by 1",
        tax_class,
    )
    return [row["sku"] for row in rows]


async def entries_of_change_set(conn: Connection, change_set_id: uuid.UUID) -> list[PriceEntry]:
    rows = await conn.fetch(
        f"select {_COLUMNS} from price_entries where change_set_id = $1 order by entry_id", change_set_id
    )
    return [_entry(row) for row in rows]


async def list_entries(
    conn: Connection, price_list_id: str, sku: str, after_id: int, limit: int
) -> list[tuple[PriceEntry, uuid.UUID, datetime]]:
    rows = await conn.fetch(
        f"""
        select {_COLUMNS}, change_set_id, created_at from price_entries
        where price_list_id = $1 and ($2 = '' or sku = $2) and entry_id > $3
        order by entry_id limit $4
        """,
        price_list_id,
        sku,
        after_id,
        limit,
    )
    return [(_entry(row), row["change_set_id"], row["created_at"]) for row in rows]


async def insert_entry(
    conn: Connection, item: AddEntry, change_set_id: uuid.UUID, now: datetime
) -> PriceEntry:
    kind, abs_range, local_range, wide_range = window_columns(item.window)
    try:
        async with conn.transaction():  # savepoint: the caller sees a RuleError, not an aborted transaction
            row = await conn.fetchrow(
                f"""
                insert into price_entries (price_list_id, sku, min_quantity, amount, window_kind, abs_range,
                    local_range, wide_range, change_set_id, created_at)
                values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                returning {_COLUMNS}
                """,
                item.price_list_id,
                item.sku,
                item.min_quantity,
                item.amount,
                kind,
                abs_range,
                local_range,
                wide_range,
                change_set_id,
                now,
            )
    except asyncpg.ExclusionViolationError as exc:
        raise RuleError(
            "ENTRY_OVERLAP",
            f"{item.price_list_id}/{item.sku}/{item.min_quantity}",
            "the window overlaps an existing entry of the same list, SKU and tier; end it first",
        ) from exc
    return _entry(row)


async def insert_entries(
    conn: Connection, items: Sequence[AddEntry], change_set_id: uuid.UUID, now: datetime
) -> list[PriceEntry]:
    """Insert many entries in one statement (arrays + unnest), in order; overlaps raise RuleError."""
    if not items:
        return []
    columns = [window_columns(item.window) for item in items]
    try:
        async with conn.transaction():
            rows = await conn.fetch(
                f"""
                insert into price_entries (price_list_id, sku, min_quantity, amount, window_kind, abs_range,
                    local_range, wide_range, change_set_id, created_at)
                select l, s, q, a, k, ar, lr, wr, $9, $10
                from unnest($1::text[], $2::text[], $3::bigint[], $4::numeric[], $5::text[], $6::tstzrange[],
                            $7::tsrange[], $8::tstzrange[]) with ordinality as t(l, s, q, a, k, ar, lr, wr, n)
                order by n
                returning {_COLUMNS}
                """,
                [item.price_list_id for item in items],
                [item.sku for item in items],
                [item.min_quantity for item in items],
                [item.amount for item in items],
                [c[0] for c in columns],
                [c[1] for c in columns],
                [c[2] for c in columns],
                [c[3] for c in columns],
                change_set_id,
                now,
            )
    except asyncpg.ExclusionViolationError as exc:
        raise RuleError(
            "ENTRY_OVERLAP",
            str(exc.detail or "price_entries"),
            "a window overlaps an existing entry of the same list, SKU and tier; end it first",
        ) from exc
    return sorted((_entry(row) for row in rows), key=lambda e: e.entry_id)


async def shorten_entry(conn: Connection, entry_id: int, window: Window) -> None:
    _kind, abs_range, local_range, wide_range = window_columns(window)
    await conn.execute(
        "update price_entries set abs_range = $2, local_range = $3, wide_range = $4 where entry_id = $1",
        entry_id,
        abs_range,
        local_range,
        wide_range,
    )


async def delete_entry(conn: Connection, entry_id: int) -> None:
    await conn.execute("delete from price_entries where entry_id = $1", entry_id)
