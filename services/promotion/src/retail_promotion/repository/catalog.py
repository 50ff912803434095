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

__all__ = [
    "LiveCatalog",
    "LocationInfo",
    "Versions",
    "catalog_version",
    "exhausted",
    "load_live_catalog",
    "load_suspensions",
    "lookups",
]


Versions = tuple[int, int]  # (campaigns, suspensions) of catalog_version


@dataclass(frozen=True)
class LiveCatalog:
    version: Versions
    index: PromotionIndex
    suspensions: Suspensions
    campaigns: Mapping[str, campaign_pb2.Campaign]


@dataclass(frozen=True)
class LocationInfo:
    location_id: str
    region_id: str
    time_zone: str


async def catalog_version(conn: Connection) -> Versions:
    row = await conn.fetchrow("select version, suspensions from catalog_version")
    assert row is not None
    return int(row["version"]), int(row["suspensions"])


async def load_suspensions(conn: Connection, campaign_ids: Iterable[str]) -> Suspensions:
    scopes: dict[str, set[tuple[str | None, str | None, str | None]]] = defaultdict(set)
    for r in await conn.fetch(
        "select campaign_id, channel_id, location_id, sku from suspensions"
        " where campaign_id = any($1::text[])",
        list(campaign_ids),
    ):
        scopes[r["campaign_id"]].add((r["channel_id"] or None, r["location_id"] or None, r["sku"] or None))
    return Suspensions({k: frozenset(v) for k, v in scopes.items()})


async def load_live_catalog(conn: Connection) -> LiveCatalog:
    version = await catalog_version(conn)
    rows = await conn.fetch("select definition, state from campaigns where state in ('SCHEDULED', 'ACTIVE')")
    campaigns = {}
    promotions = []
    for row in rows:
        c = campaign_pb2.Campaign.FromString(bytes(row["definition"]))
        campaigns[c.campaign_id] = c
        promotions.extend(promotions_of(c, active=row["state"] == "ACTIVE"))
    return LiveCatalog(
        version, PromotionIndex(promotions), await load_suspensions(conn, campaigns), campaigns
    )


_LOOKUPS = """
select (select jsonb_build_array(version, suspensions) from catalog_version) as version,
       (select coalesce(jsonb_agg(jsonb_build_array(sku, active, categories, attributes)), '[]'::jsonb)
          from products where sku = any($1::text[])) as products,
       (select jsonb_build_array(region_id, time_zone) from locations where location_id = $2) as location
"""


async def lookups(
    conn: Connection, skus: Iterable[str], location_id: str | None
) -> tuple[Versions, dict[str, Product], LocationInfo | None]:
    """In one round trip: the catalog version, the products of `skus` and the location (replicas)."""
    row = await conn.fetchrow(_LOOKUPS, sorted(set(skus)), location_id)
    assert row is not None
    products = {
        sku: Product(
            sku, frozenset(categories), frozenset((k, str(v)) for k, v in (attributes or {}).items()), active
        )
        for sku, active, categories, attributes in row["products"]
    }
    location = None
    if row["location"] is not None:
        region_id, time_zone = row["location"]
        location = LocationInfo(str(location_id), region_id, time_zone)
    campaigns_version, suspensions_version = row["version"]
    return (int(campaigns_version), int(suspensions_version)), products, location


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
