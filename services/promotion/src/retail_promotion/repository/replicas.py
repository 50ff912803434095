"""Read-only replicas fed by other services' events: products (pricing) and locations (inventory).
The inbox has already gated the version; the WHERE keeps an older version from overwriting anyway."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from retail_common.db import Connection

__all__ = ["upsert_location", "upsert_product"]


async def upsert_product(
    conn: Connection,
    *,
    sku: str,
    active: bool,
    categories: Sequence[str],
    attributes: Mapping[str, str],
    version: int,
) -> bool:
    changed = await conn.fetchval(
        "insert into products (sku, active, categories, attributes, version)"
        " values ($1, $2, $3, $4::jsonb, $5) on conflict (sku) do update"
        " set active = excluded.active, categories = excluded.categories,"
        " attributes = excluded.attributes, version = excluded.version"
        " where products.version < excluded.version returning true",
        sku,
        active,
        list(categories),
        dict(attributes),  # the pool's jsonb codec encodes it
        version,
    )
    # No catalog bump: the promotion index is keyed by the promotions' SKUs/categories/attributes and
    # products are read per cart, so a product change never needs an index rebuild.
    return bool(changed)


async def upsert_location(
    conn: Connection,
    *,
    location_id: str,
    region_id: str,
    time_zone: str,
    active: bool,
    version: int,
    channel_ids: Sequence[str] = (),
) -> bool:
    return bool(
        await conn.fetchval(
            "insert into locations (location_id, region_id, time_zone, active, version, channel_ids)"
            " values ($1, $2, $3, $4, $5, $6) on conflict (location_id) do update"
            " set region_id = excluded.region_id, time_zone = excluded.time_zone,"
            " active = excluded.active, version = excluded.version, channel_ids = excluded.channel_ids"
            " where locations.version < excluded.version returning true",
            location_id,
            region_id,
            time_zone,
            active,
            version,
            list(channel_ids),
        )
    )
