"""Price lists and the location replica (the small, slowly changing configuration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from retail_common.db import Connection
from retail_pricing.domain.model import ListKind, ListScope, Location, PriceList, TaxTreatment

__all__ = [
    "StoredPriceList",
    "get_price_list",
    "insert_price_list",
    "list_price_lists",
    "load_locations",
    "load_price_lists",
    "update_price_list",
    "upsert_location",
]


@dataclass(frozen=True)
class StoredPriceList:
    price_list: PriceList
    display_name: str
    version: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "price_list_id, display_name, currency, kind, priority, channel_ids, region_ids, location_ids,"
    " customer_segment, tax_treatment, active, version, created_at, updated_at"
)


def _stored(row: Any) -> StoredPriceList:
    return StoredPriceList(
        PriceList(
            price_list_id=row["price_list_id"],
            currency=row["currency"],
            kind=ListKind(row["kind"]),
            tax_treatment=TaxTreatment(row["tax_treatment"]),
            priority=row["priority"],
            scope=ListScope(
                frozenset(row["channel_ids"]),
                frozenset(row["region_ids"]),
                frozenset(row["location_ids"]),
                row["customer_segment"],
            ),
            active=row["active"],
        ),
        row["display_name"],
        row["version"],
        row["created_at"],
        row["updated_at"],
    )


def _args(pl: PriceList) -> list[Any]:
    return [
        pl.price_list_id,
        pl.currency,
        pl.kind.value,
        pl.priority,
        sorted(pl.scope.channel_ids),
        sorted(pl.scope.region_ids),
        sorted(pl.scope.location_ids),
        pl.scope.customer_segment,
        pl.tax_treatment.value,
        pl.active,
    ]


async def insert_price_list(
    conn: Connection, pl: PriceList, display_name: str, now: datetime
) -> StoredPriceList | None:
    """None if the id is taken."""
    row = await conn.fetchrow(
        f"""
        insert into price_lists (price_list_id, currency, kind, priority, channel_ids, region_ids,
            location_ids, customer_segment, tax_treatment, active, display_name, version, created_at,
            updated_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12)
        on conflict do nothing
        returning {_COLUMNS}
        """,
        *_args(pl),
        display_name,
        now,
    )
    return None if row is None else _stored(row)


async def update_price_list(
    conn: Connection, pl: PriceList, display_name: str, expected_version: int, now: datetime
) -> StoredPriceList | None:
    """None if the version (etag) does not match."""
    row = await conn.fetchrow(
        f"""
        update price_lists set kind = $3, priority = $4, channel_ids = $5, region_ids = $6,
            location_ids = $7, customer_segment = $8, tax_treatment = $9, active = $10,
            display_name = $11, version = version + 1, updated_at = $12
        where price_list_id = $1 and currency = $2 and version = $13
        returning {_COLUMNS}
        """,
        *_args(pl),
        display_name,
        now,
        expected_version,
    )
    return None if row is None else _stored(row)


async def get_price_list(
    conn: Connection, price_list_id: str, *, lock: bool = False
) -> StoredPriceList | None:
    suffix = " for update" if lock else ""
    row = await conn.fetchrow(
        f"select {_COLUMNS} from price_lists where price_list_id = $1{suffix}", price_list_id
    )
    return None if row is None else _stored(row)


async def list_price_lists(conn: Connection, after_id: str, limit: int) -> list[StoredPriceList]:
    rows = await conn.fetch(
        f"select {_COLUMNS} from price_lists where price_list_id > $1 order by price_list_id limit $2",
        after_id,
        limit,
    )
    return [_stored(r) for r in rows]


async def load_price_lists(conn: Connection) -> dict[str, PriceList]:
    rows = await conn.fetch(f"select {_COLUMNS} from price_lists")
    return {r["price_list_id"]: _stored(r).price_list for r in rows}


async def load_locations(conn: Connection) -> dict[str, Location]:
    rows = await conn.fetch("select location_id, region_id, time_zone from locations")
    return {r["location_id"]: Location(r["location_id"], r["region_id"], r["time_zone"]) for r in rows}


async def upsert_location(conn: Connection, location: Location, version: int) -> bool:
    """Apply a LocationUpserted if newer; True if applied."""
    status = await conn.execute(
        """
        insert into locations (location_id, region_id, time_zone, version) values ($1, $2, $3, $4)
        on conflict (location_id) do update
            set region_id = excluded.region_id, time_zone = excluded.time_zone, version = excluded.version
            where locations.version < excluded.version
        """,
        location.location_id,
        location.region_id,
        location.time_zone,
        version,
    )
    return status.endswith("1")
