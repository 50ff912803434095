"""Products (master replica)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from retail_common.db import Connection
from retail_pricing.domain.products import Product

__all__ = ["get_products", "list_products", "upsert_products"]

_COLUMNS = (
    "sku, title, status, tax_class, category_ids, attributes, cost_amount, cost_currency, map_amount,"
    " map_currency, version, updated_at"
)


def _limit(amount: Decimal | None, currency: str | None) -> tuple[Decimal, str] | None:
    return None if amount is None or currency is None else (amount, currency)


def _product(row: Any) -> Product:
    attributes = row["attributes"]
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    return Product(
        sku=row["sku"],
        status=row["status"],
        tax_class=row["tax_class"],
        title=row["title"],
        category_ids=tuple(row["category_ids"]),
        attributes=dict(attributes),
        cost=_limit(row["cost_amount"], row["cost_currency"]),
        minimum_advertised_price=_limit(row["map_amount"], row["map_currency"]),
        version=row["version"],
        updated_at=row["updated_at"],
    )


async def get_products(conn: Connection, skus: Iterable[str], *, lock: bool = False) -> dict[str, Product]:
    suffix = " order by sku for update" if lock else ""
    rows = await conn.fetch(
        f"select {_COLUMNS} from products where sku = any($1::text[]){suffix}", list(skus)
    )
    return {row["sku"]: _product(row) for row in rows}


async def list_products(conn: Connection, after_sku: str, limit: int) -> list[Product]:
    rows = await conn.fetch(
        f"select {_COLUMNS} from products where sku > $1 order by sku limit $2", after_sku, limit
    )
    return [_product(row) for row in rows]


async def upsert_products(
    conn: Connection, products: Sequence[Product], now: datetime
) -> list[tuple[Product, Product | None]]:
    """Create or update; returns (stored product, previous or None) for the products that changed."""
    current = await get_products(conn, [p.sku for p in products], lock=True)
    changed: list[tuple[Product, Product | None]] = []
    for product in products:
        before = current.get(product.sku)
        if before is not None and before.same_content(product):
            continue
        version = (before.version if before else 0) + 1
        row = await conn.fetchrow(
            f"""
            insert into products ({_COLUMNS})
            values ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10, $11, $12)
            on conflict (sku) do update set
                title = excluded.title, status = excluded.status, tax_class = excluded.tax_class,
                category_ids = excluded.category_ids, attributes = excluded.attributes,
                cost_amount = excluded.cost_amount, cost_currency = excluded.cost_currency,
                map_amount = excluded.map_amount, map_currency = excluded.map_currency,
                version = excluded.version, updated_at = excluded.updated_at
            returning {_COLUMNS}
            """,
            product.sku,
            product.title,
            product.status,
            product.tax_class,
            list(product.category_ids),
            json.dumps(product.attributes, sort_keys=True),
            product.cost[0] if product.cost else None,
            product.cost[1] if product.cost else None,
            product.minimum_advertised_price[0] if product.minimum_advertised_price else None,
            product.minimum_advertised_price[1] if product.minimum_advertised_price else None,
            version,
            now,
        )
        stored = _product(row)
        current[product.sku] = stored
        changed.append((stored, before))
    return changed
