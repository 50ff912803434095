"""The in-memory resolution cache: configuration (lists, locations, tax rates) and per-SKU data.

Loaded lazily from the database and kept until invalidated. Each replica invalidates from its own
commits immediately and from the service's events (per-replica subscription), so while nothing changes,
resolution touches no database at all. Invalidation counters (per SKU, and for the configuration)
discard loads that raced an invalidation of what they loaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from retail_pricing.domain.model import PriceEntry
from retail_pricing.domain.pricer import Pricer, ProductInfo
from retail_pricing.repository.entries import entries_for_skus
from retail_pricing.repository.price_lists import load_locations, load_price_lists
from retail_pricing.repository.products import get_products
from retail_pricing.repository.tax_rates import load_tax_rates

__all__ = ["Catalog", "SkuData"]

logger = logging.getLogger("retail_pricing.catalog")


@dataclass(frozen=True)
class SkuData:
    product: ProductInfo | None  # None: unknown SKU
    entries: Sequence[PriceEntry]


class Catalog:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool
        self._pricer: Pricer | None = None
        self._skus: dict[str, SkuData] = {}
        # Invalidation counters: a load is stored only if nothing it covers was invalidated meanwhile.
        # Per SKU, so a steady stream of other SKUs' events never keeps a SKU from being cached.
        self._sku_epochs: dict[str, int] = {}
        self._all_epoch = 0
        self._config_epoch = 0
        self._lock = asyncio.Lock()
        self.loads = 0  # database round trips made by the cache (observability and tests)

    # --- invalidation -----------------------------------------------------------------------------

    def invalidate_skus(self, skus: Iterable[str]) -> None:
        dropped = []
        for sku in skus:
            self._sku_epochs[sku] = self._sku_epochs.get(sku, 0) + 1
            if self._skus.pop(sku, None) is not None:
                dropped.append(sku)
        logger.debug("cache: invalidated SKUs %s", dropped[:10])

    def invalidate_config(self) -> None:
        self._config_epoch += 1
        self._pricer = None
        logger.debug("cache: invalidated configuration")

    def invalidate_all(self) -> None:
        self._all_epoch += 1
        self._config_epoch += 1
        self._pricer = None
        self._skus.clear()

    # --- reads ------------------------------------------------------------------------------------

    async def pricer(self) -> Pricer:
        pricer = self._pricer
        if pricer is not None:
            return pricer
        async with self._lock:
            if self._pricer is not None:
                return self._pricer
            epoch = self._config_epoch
            async with self._pool.acquire() as conn:
                self.loads += 1
                pricer = Pricer(
                    await load_price_lists(conn), await load_locations(conn), await load_tax_rates(conn)
                )
            if epoch == self._config_epoch:
                self._pricer = pricer
            return pricer

    def cached_skus(self) -> Mapping[str, SkuData]:
        """The SKUs in the cache now (read it before any await: invalidation removes entries)."""
        return self._skus

    async def skus(self, skus: Sequence[str]) -> dict[str, SkuData]:
        result = {sku: data for sku in skus if (data := self._skus.get(sku)) is not None}
        if len(result) == len(set(skus)):
            return result
        async with self._lock:  # one load at a time: concurrent misses of one SKU load it once
            for sku in skus:
                if sku not in result and (data := self._skus.get(sku)) is not None:
                    result[sku] = data
            missing = sorted({sku for sku in skus if sku not in result})
            if not missing:
                return result
            all_epoch = self._all_epoch
            epochs = {sku: self._sku_epochs.get(sku, 0) for sku in missing}
            logger.debug("cache: loading SKUs %s", missing[:10])
            async with self._pool.acquire() as conn:
                self.loads += 1
                products = await get_products(conn, missing)
                entries = await entries_for_skus(conn, missing)
            for sku in missing:
                product = products.get(sku)
                info = None if product is None else ProductInfo(sku, product.active, product.tax_class)
                data = SkuData(info, tuple(entries.get(sku, ())))
                result[sku] = data
                if all_epoch == self._all_epoch and epochs[sku] == self._sku_epochs.get(sku, 0):
                    self._skus[sku] = data
        return result
