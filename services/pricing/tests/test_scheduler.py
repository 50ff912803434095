"""Activation scheduler on real Postgres with a manual clock: on time, once, only real changes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from retail.pricing.v1 import events_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import create_pool
from retail_common.messaging import OutboxWriter
from retail_pricing.handlers import price_lists as pl
from retail_pricing.handlers import products as products_h
from retail_pricing.scheduler import ActivationScheduler
from retail_pricing.testing import add, end, price_list, product

from .conftest import START, approve

DAY = timedelta(days=1)


async def seed(deps, acting) -> None:
    await products_h.batch_upsert_products(
        deps, pb.BatchUpsertProductsRequest(request_id="p", products=[product("A")])
    )
    await pl.create_price_list(deps, pb.CreatePriceListRequest(request_id="b", price_list=price_list("base")))
    await pl.create_price_list(
        deps, pb.CreatePriceListRequest(request_id="m", price_list=price_list("markdown", 2))
    )
    await approve(deps, acting, "base", add("base", "A", "10.00", START))


async def activations_announced(pool) -> list[events_pb2.PriceChanged]:
    rows = await pool.fetch(
        "select payload from outbox where event_type = 'retail.pricing.v1.PriceChanged' order by id"
    )
    changes = [events_pb2.PriceChanged.FromString(r["payload"]) for r in rows]
    return [c for c in changes if c.cause == events_pb2.PRICE_CHANGE_CAUSE_ACTIVATION]


@pytest.fixture
def scheduler(deps, clock):
    return ActivationScheduler(deps.pool, clock, deps.writer, max_sleep=timedelta(days=365))


async def test_start_and_end_are_announced_at_their_instants_once(
    deps, acting, clock, pool, scheduler
) -> None:
    await seed(deps, acting)
    await approve(deps, acting, "md", add("markdown", "A", "8.00", START + DAY, START + 2 * DAY))
    assert await scheduler.run_once() == 0
    await clock.set(START + DAY - timedelta(microseconds=1))
    assert await scheduler.run_once() == 0
    await clock.set(START + DAY)
    assert await scheduler.run_once() == 1
    assert await scheduler.run_once() == 0
    await clock.set(START + 3 * DAY)
    assert await scheduler.run_once() == 1
    announced = await activations_announced(pool)
    assert [(c.sku, c.effective_time.ToDatetime().isoformat()) for c in announced] == [
        ("A", "2026-03-02T12:00:00"),
        ("A", "2026-03-03T12:00:00"),
    ]
    # One version counter per SKU across approvals and activations: 1 (base), 2 (markdown), 3, 4.
    assert [c.version for c in announced] == [3, 4]


async def test_start_hidden_by_a_higher_priority_list_is_not_announced(
    deps, acting, clock, pool, scheduler
) -> None:
    await seed(deps, acting)
    await approve(deps, acting, "md", add("markdown", "A", "8.00", START))
    base_entry = await pool.fetchval("select entry_id from price_entries where price_list_id = 'base'")
    await approve(deps, acting, "base2", end(base_entry, START + DAY), add("base", "A", "12.00", START + DAY))
    await clock.set(START + 2 * DAY)
    assert await scheduler.run_once() >= 1  # the rows fell due ...
    assert await activations_announced(pool) == []  # ... but the markdown hides the base change


async def test_scheduler_wakes_for_the_next_due_instant(deps, acting, clock, pool, scheduler) -> None:
    await seed(deps, acting)
    await approve(deps, acting, "md", add("markdown", "A", "8.00", START + DAY))
    task = asyncio.create_task(scheduler.run())
    try:
        await clock.set(START + DAY)  # a year-long max sleep: only the due instant can wake it
        for _ in range(2000):
            if await activations_announced(pool):
                break
            await asyncio.sleep(0.01)
        assert len(await activations_announced(pool)) == 1
    finally:
        task.cancel()


async def test_two_replicas_announce_once(deps, acting, clock, pool, database_url) -> None:
    await seed(deps, acting)
    for i in range(20):
        sku = f"S{i}"
        await products_h.batch_upsert_products(
            deps, pb.BatchUpsertProductsRequest(request_id=f"p{i}", products=[product(sku)])
        )
        await approve(deps, acting, f"md{i}", add("markdown", sku, "8.00", START + DAY))
    other_pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        one = ActivationScheduler(pool, clock, OutboxWriter(clock), batch=3)
        two = ActivationScheduler(other_pool, clock, OutboxWriter(clock), batch=3)
        await clock.set(START + DAY)
        while sum(await asyncio.gather(one.run_once(), two.run_once())) > 0:
            pass
        announced = await activations_announced(pool)
        # Every SKU exactly once, though both replicas claimed rows concurrently.
        assert sorted(c.sku for c in announced) == sorted(f"S{i}" for i in range(20))
        assert one.announced + two.announced == 20
    finally:
        await other_pool.close()
