"""Location -> region replica (from inventory's LocationUpserted), for campaign targeting by region."""

from __future__ import annotations

from collections.abc import Sequence

from retail_common.db import Connection

__all__ = ["regions_of", "upsert_region"]


async def upsert_region(conn: Connection, location_id: str, region_id: str) -> None:
    await conn.execute(
        "insert into location_regions (location_id, region_id) values ($1, $2)"
        " on conflict (location_id) do update set region_id = excluded.region_id"
        " where location_regions.region_id <> excluded.region_id",
        location_id,
        region_id,
    )


async def regions_of(conn: Connection, location_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "select location_id, region_id from location_regions where location_id = any($1::text[])",
        sorted(set(location_ids)),
    )
    return {r["location_id"]: r["region_id"] for r in rows}
