"""The resolution cache: loads once, and a load racing an invalidation is kept only if it is still valid."""

from __future__ import annotations

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_pricing import catalog as catalog_module
from retail_pricing.catalog import Catalog
from retail_pricing.handlers import products as products_h
from retail_pricing.testing import product

from .conftest import approve


async def seed(deps) -> None:
    await products_h.batch_upsert_products(
        deps, pb.BatchUpsertProductsRequest(request_id="p", products=[product("A"), product("B")])
    )


async def test_loaded_skus_are_served_from_memory(deps, acting, pool) -> None:
    await seed(deps)
    cache = Catalog(pool)
    await cache.skus(["A", "B"])
    await cache.pricer()
    loads = cache.loads
    for _ in range(100):
        await cache.skus(["A", "B"])
        await cache.pricer()
    assert cache.loads == loads


async def test_invalidating_another_sku_during_a_load_does_not_discard_it(
    deps, acting, pool, monkeypatch
) -> None:
    await seed(deps)
    cache = Catalog(pool)
    real = catalog_module.get_products

    async def racing(conn, skus):
        cache.invalidate_skus(["B"])  # an event about another SKU arrives while A loads
        return await real(conn, skus)

    monkeypatch.setattr(catalog_module, "get_products", racing)
    await cache.skus(["A"])
    loads = cache.loads
    await cache.skus(["A"])
    assert cache.loads == loads  # A was kept


async def test_invalidating_the_same_sku_during_its_load_discards_the_result(
    deps, acting, pool, monkeypatch
) -> None:
    await seed(deps)
    cache = Catalog(pool)
    real = catalog_module.get_products

    async def racing(conn, skus):
        cache.invalidate_skus(["A"])  # A changed while being loaded: what we read may be stale
        return await real(conn, skus)

    monkeypatch.setattr(catalog_module, "get_products", racing)
    await cache.skus(["A"])
    monkeypatch.setattr(catalog_module, "get_products", real)
    loads = cache.loads
    await cache.skus(["A"])
    assert cache.loads == loads + 1  # reloaded


async def test_a_batch_mixing_cached_uncached_and_unknown_skus_answers_each_in_order(
    deps, acting, pool
) -> None:
    from retail_pricing.handlers import price_lists as pl_h
    from retail_pricing.handlers import resolution
    from retail_pricing.testing import add, price_list, query

    await seed(deps)
    await pl_h.create_price_list(
        deps, pb.CreatePriceListRequest(request_id="l", price_list=price_list("base"))
    )
    now = deps.clock.now()
    await approve(deps, acting, "c", add("base", "A", "1.00", now), add("base", "B", "2.00", now))
    await deps.catalog.skus(["A"])  # A cached; B and the unknown C are loaded by the batch
    request = pb.BatchResolvePricesRequest(queries=[query("B"), query("A"), query("C"), query("A")])
    for _ in range(2):  # then every SKU is cached
        response = await resolution.batch_resolve_prices(deps, request)
        answers = [r.price.sku or r.error.code for r in response.results]
        assert answers == ["B", "A", "INVALID_ARGUMENT", "A"]
        assert [r.price.price.gross.units for r in response.results] == [2, 1, 0, 1]
