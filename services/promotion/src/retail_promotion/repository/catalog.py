"""What evaluation reads: the live campaigns (SCHEDULED / ACTIVE) as an indexed set of promotions with
their suspensions, the product and location replicas, and which budgets are exhausted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from retail.promotion.v1 import campaign_pb2
from retail_common.db import Connection
from retail_promotion.convert import promotions_of
from retail_promotion.domain.index import PromotionIndex
from retail_promotion.domain.model import Product, Suspensions

__all__ = ["LiveCatalog", "LocationInfo", "catalog_version", "exhausted", "load_live_catalog", "lookups"]


@dataclass(frozen=True)
class LiveCatalog:
    version: int
    index: PromotionIndex
    suspensions: Suspensions
    campaigns: Mapping[str, campaign_pb2.Campaign]


@dataclass(frozen=True)
class LocationInfo:
    location_id: str
    region_id: str
    time_zone: str


async def catalog_version(conn: Connection) -> int:
    return int(await conn.fetchval("select version from catalog_version"))


async def load_live_catalog(conn: Connection) -> LiveCatalog:
    version = await catalog_version(conn)
    rows = await conn.fetch("select definition, state from campaigns where state in ('SCHEDULED', 'ACTIVE')")
    campaigns = {}
    promotions = []
    for row in rows:
        c = campaign_pb2.Campaign.FromString(bytes(row["definition"]))
        campaigns[c.campaign_id] = c
        promotions.extend(promotions_of(c, active=row["state"] == "ACTIVE"))
    scopes: dict[str, set[tuple[str | None, str | None, str | None]]] = defaultdict(set)
    for r in await conn.fetch(
        "select campaign_id, channel_id, location_id, sku from suspensions"
        " where campaign_id = any($1::text[])",
        list(campaigns),
    ):
        scopes[r["campaign_id"]].add((r["channel_id"] or None, r["location_id"] or None, r["sku"] or None))
    return LiveCatalog(
        version,
        PromotionIndex(promotions),
        Suspensions({k: frozenset(v) for k, v in scopes.items()}),
        campaigns,
    )


async def lookups(
    conn: Connection, skus: Iterable[str], location_id: str | None
) -> tuple[dict[str, Product], LocationInfo | None]:
    """The products of `skus` (replica) and the location (replica)."""
    products = {
        r["sku"]: Product(
            r["sku"],
            frozenset(r["categories"]),
            frozenset((k, str(v)) for k, v in (r["attributes"] or {}).items()),
            r["active"],
        )
        for r in await conn.fetch(
            "select sku, active, categories, attributes from products where sku = any($1::text[])",
            sorted(set(skus)),
        )
    }
    location = None
    if location_id is not None:
        loc = await conn.fetchrow(
            "select location_id, region_id, time_zone from locations where location_id = $1", location_id
        )
        if loc is not None:
            location = LocationInfo(loc["location_id"], loc["region_id"], loc["time_zone"])
    return products, location


async def exhausted(
    conn: Connection, promotion_ids: Sequence[str], campaign_ids: Sequence[str]
) -> frozenset[str]:
    """Promotions and campaigns whose budget or usage limit has nothing left."""
    rows = await conn.fetch(
        "select promotion_id as id from promotions where promotion_id = any($1::text[])"
        " and ((budget is not null and budget_used >= budget)"
        "      or (max_redemptions > 0 and redemptions_used >= max_redemptions))"
        " union all"
        " select campaign_id from campaigns where campaign_id = any($2::text[])"
        " and budget is not null and budget_used >= budget",
        list(promotion_ids),
        list(campaign_ids),
    )
    return frozenset(r["id"] for r in rows)
