"""Effective-dated tax rates on real Postgres with a manual clock: scheduling, resolution and explain
at past and future instants, listing, activation announced once per changed SKU, bad input."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from google.type import decimal_pb2

from retail.pricing.v1 import events_pb2, price_lists_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import create_pool
from retail_common.messaging import OutboxWriter
from retail_pricing.domain.errors import BadInputError
from retail_pricing.handlers import products as products_h
from retail_pricing.handlers import resolution as res
from retail_pricing.handlers import tax_rates as tax
from retail_pricing.scheduler import ActivationScheduler
from retail_pricing.testing import add, as_decimal, product, query, ts

from .conftest import START, approve
from .test_scheduler import activations_announced, seed

DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)
VAT_CHANGE = START + 10 * DAY


def rate(value: str, *, region: str = "", at: datetime | None = None, tax_class: str = "standard"):
    return price_lists_pb2.TaxRate(
        region_id=region,
        tax_class=tax_class,
        rate=decimal_pb2.Decimal(value=value),
        effective_time=None if at is None else ts(at),
    )


async def set_rate(deps, request_id: str, tax_rate) -> price_lists_pb2.TaxRate:
    response = await tax.set_tax_rate(deps, pb.SetTaxRateRequest(request_id=request_id, tax_rate=tax_rate))
    return response.tax_rate


async def gross_net_rate(deps, at: datetime, sku: str = "A") -> tuple[Decimal, Decimal, Decimal]:
    price = (await res.resolve_price(deps, pb.ResolvePriceRequest(query=query(sku, at)))).price
    return as_decimal(price.price.gross), as_decimal(price.price.net), Decimal(price.tax_rate.value)


async def price_changed(pool) -> list[events_pb2.PriceChanged]:
    rows = await pool.fetch(
        "select payload from outbox where event_type = 'retail.pricing.v1.PriceChanged' order by id"
    )
    return [events_pb2.PriceChanged.FromString(r["payload"]) for r in rows]


@pytest.fixture
async def catalog(deps, acting, pool):
    """A (standard, 10.00 gross from START), B (standard, no price), C (reduced, 5.00 gross)."""
    await seed(deps, acting)
    reduced = product("C")
    reduced.tax_class = "reduced"
    await products_h.batch_upsert_products(
        deps, pb.BatchUpsertProductsRequest(request_id="pbc", products=[product("B"), reduced])
    )
    await approve(deps, acting, "c", add("base", "C", "5.00", START))
    await set_rate(deps, "t-now", rate("0.25"))
    await set_rate(deps, "t-reduced", rate("0.10", tax_class="reduced"))


async def test_scheduled_rate_applies_from_its_instant_and_is_announced_once(
    deps, catalog, clock, pool, database_url
) -> None:
    woken: list[int] = []
    deps.on_scheduled = lambda: woken.append(1)
    before_events = len(await price_changed(pool))
    scheduled = await set_rate(deps, "t-jan", rate("0.10", at=VAT_CHANGE))
    assert scheduled.effective_time == ts(VAT_CHANGE)
    assert woken == [1]  # this replica's scheduler re-reads its next due instant
    # Announced ahead (like a future-dated approval) for the priced SKUs of the class, at its instant.
    ahead = (await price_changed(pool))[before_events:]
    assert [(c.sku, c.cause, c.effective_time) for c in ahead] == [
        ("A", events_pb2.PRICE_CHANGE_CAUSE_CONFIGURATION, ts(VAT_CHANGE))
    ]

    # Resolution and explain at instants before and after the scheduled change (golden amounts).
    assert await gross_net_rate(deps, START) == (Decimal("10.00"), Decimal("8.00"), Decimal("0.25"))
    assert await gross_net_rate(deps, VAT_CHANGE - TICK) == (
        Decimal("10.00"),
        Decimal("8.00"),
        Decimal("0.25"),
    )
    assert await gross_net_rate(deps, VAT_CHANGE) == (Decimal("10.00"), Decimal("9.09"), Decimal("0.10"))
    explained = await res.explain_price(deps, pb.ExplainPriceRequest(query=query("A", VAT_CHANGE + DAY)))
    assert explained.tax_rate.value == "0.10"
    assert explained.price.effective_since == ts(VAT_CHANGE)  # net/tax moved at the change
    assert as_decimal(explained.price.reference_price.gross) == Decimal("10.00")
    history = await res.get_price_history(
        deps,
        pb.GetPriceHistoryRequest(query=query("A"), start_time=ts(START), end_time=ts(VAT_CHANGE + DAY)),
    )
    assert [(p.start_time, as_decimal(p.price.net)) for p in history.periods] == [
        (ts(START), Decimal("8.00")),
        (ts(VAT_CHANGE), Decimal("9.09")),
    ]

    # Listing: current + scheduled by default, the whole history on request.
    listed = await tax.list_tax_rates(deps, pb.ListTaxRatesRequest())
    assert [(r.tax_class, r.rate.value) for r in listed.tax_rates] == [
        ("reduced", "0.10"),
        ("standard", "0.25"),
        ("standard", "0.10"),
    ]

    # Two replicas at the instant: A (priced, standard) announced exactly once; B (no price) and C
    # (another tax class) not at all.
    other_pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        one = ActivationScheduler(pool, clock, OutboxWriter(clock))
        two = ActivationScheduler(other_pool, clock, OutboxWriter(clock))
        assert await one.run_once() == 0  # not due yet
        await clock.set(VAT_CHANGE)
        while sum(await asyncio.gather(one.run_once(), two.run_once())) > 0:
            pass
        assert await one.run_once() == 0
    finally:
        await other_pool.close()
    announced = await activations_announced(pool)
    assert [(c.sku, c.effective_time) for c in announced] == [("A", ts(VAT_CHANGE))]
    assert [s.region_id for s in announced[0].affected_scopes] == [""]
    assert one.announced + two.announced == 1

    listed = await tax.list_tax_rates(deps, pb.ListTaxRatesRequest())
    assert [(r.tax_class, r.rate.value) for r in listed.tax_rates] == [
        ("reduced", "0.10"),
        ("standard", "0.10"),
    ]
    full = await tax.list_tax_rates(deps, pb.ListTaxRatesRequest(show_superseded=True))
    assert [(r.rate.value, r.effective_time) for r in full.tax_rates if r.tax_class == "standard"] == [
        ("0.25", ts(START)),
        ("0.10", ts(VAT_CHANGE)),
    ]
    # A retry of the scheduling request after its instant passed replays the first response.
    assert await set_rate(deps, "t-jan", rate("0.10", at=VAT_CHANGE)) == scheduled


async def test_only_prices_that_move_are_announced_in_the_scopes_the_rate_reaches(
    deps, catalog, clock, pool
) -> None:
    await set_rate(deps, "t-r1", rate("0.07", region="R1", at=VAT_CHANGE))  # R1's own rate from then
    await set_rate(deps, "t-same", rate("0.25", at=VAT_CHANGE + DAY))  # the current default again
    scheduler = ActivationScheduler(pool, clock, OutboxWriter(clock))
    await clock.set(VAT_CHANGE + DAY)
    assert await scheduler.run_once() == 2
    announced = await activations_announced(pool)
    assert [(c.sku, c.effective_time) for c in announced] == [("A", ts(VAT_CHANGE))]
    assert [(s.region_id, s.location_id) for s in announced[0].affected_scopes] == [("R1", "")]
    region_query = query("A", VAT_CHANGE)
    region_query.region_id = "R1"
    resolved = await res.resolve_price(deps, pb.ResolvePriceRequest(query=region_query))
    assert resolved.price.tax_rate.value == "0.07"


async def test_bad_input_names_the_field_and_changes_nothing(deps, catalog, clock, pool) -> None:
    counts = "select (select count(*) from tax_rates), (select count(*) from outbox)"
    before = tuple(await pool.fetchrow(counts))
    cases = [
        (rate("0.10", at=START - TICK), "tax_rate.effective_time"),
        (rate("1.5", at=VAT_CHANGE), "tax_rate.rate"),
        (rate("-0.1"), "tax_rate.rate"),
        (rate("abc"), "tax_rate.rate"),
        (rate("0.10", tax_class=""), "tax_rate.tax_class"),
    ]
    for i, (tax_rate, field) in enumerate(cases):
        with pytest.raises(BadInputError) as caught:
            await set_rate(deps, f"bad-{i}", tax_rate)
        assert [v.subject for v in caught.value.violations] == [field]
    assert tuple(await pool.fetchrow(counts)) == before
    # The refused request left no idempotency record: the key is free for a valid request.
    assert (await set_rate(deps, "bad-0", rate("0.10", at=VAT_CHANGE))).rate.value == "0.10"
