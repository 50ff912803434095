"""The per-replica price cache: hits for current-instant carts, per-SKU invalidation (also of a fetch in
flight), TTL on the injected clock, explicit instants and errors never cached."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from retail_common.clock import ManualClock
from retail_promotion.dependencies import PriceAnswer, PriceQuery, ProductAnswer
from retail_promotion.price_cache import CachingPricing, PriceCache

NOW = datetime(2026, 6, 6, tzinfo=UTC)


class FakePricing:
    def __init__(self) -> None:
        self.prices = {"A": Decimal("10.00"), "B": Decimal("20.00")}
        self.calls: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.called = asyncio.Event()

    async def resolve(self, queries: Sequence[PriceQuery]) -> list[PriceAnswer]:
        self.calls.append([q.sku for q in queries])
        self.called.set()
        answers = [
            PriceAnswer(self.prices.get(q.sku), "" if q.sku in self.prices else "NOT_FOUND") for q in queries
        ]
        if self.gate is not None:
            await self.gate.wait()
        return answers

    async def product(self, sku: str) -> ProductAnswer:
        return ProductAnswer(sku, True, True)


def q(sku: str, quantity: int = 1) -> PriceQuery:
    return PriceQuery(sku, "EUR", "web", "", "", quantity, NOW)


async def test_current_queries_hit_the_cache_until_the_sku_is_invalidated() -> None:
    clock, fake = ManualClock(NOW), FakePricing()
    pricing = CachingPricing(fake, PriceCache(clock, 30))
    first = await pricing.resolve([q("A"), q("B"), q("Z")], current=True)
    assert [a.unit_price for a in first] == [Decimal("10.00"), Decimal("20.00"), None]
    again = await pricing.resolve([q("A"), q("B"), q("Z")], current=True)
    assert [a.unit_price for a in again] == [Decimal("10.00"), Decimal("20.00"), None]
    assert fake.calls == [["A", "B", "Z"], ["Z"]]  # errors are never cached
    fake.prices["A"] = Decimal("12.00")
    pricing.cache.invalidate_skus(["A"])
    assert (await pricing.resolve([q("A"), q("B")], current=True))[0].unit_price == Decimal("12.00")
    assert fake.calls[-1] == ["A"]
    await pricing.resolve([q("A", 3)], current=True)  # another quantity tier is another entry
    assert fake.calls[-1] == ["A"]


async def test_ttl_and_explicit_instants_bypass() -> None:
    clock, fake = ManualClock(NOW), FakePricing()
    pricing = CachingPricing(fake, PriceCache(clock, 30))
    await pricing.resolve([q("A")], current=True)
    await pricing.resolve([q("A")], current=False)
    assert len(fake.calls) == 2
    await clock.advance(timedelta(seconds=29))
    await pricing.resolve([q("A")], current=True)
    assert len(fake.calls) == 2
    await clock.advance(timedelta(seconds=1))
    await pricing.resolve([q("A")], current=True)
    assert len(fake.calls) == 3
    disabled = CachingPricing(fake, PriceCache(clock, 0))
    await disabled.resolve([q("A")], current=True)
    await disabled.resolve([q("A")], current=True)
    assert len(fake.calls) == 5


async def test_an_invalidation_during_a_fetch_keeps_the_old_answer_out_of_the_cache() -> None:
    clock, fake = ManualClock(NOW), FakePricing()
    pricing = CachingPricing(fake, PriceCache(clock, 30))
    fake.gate = asyncio.Event()
    fetch = asyncio.create_task(pricing.resolve([q("A")], current=True))
    await fake.called.wait()
    pricing.cache.invalidate_skus(["A"])  # the price changed while the old one was on its way
    fake.gate.set()
    await fetch
    fake.gate = None
    await pricing.resolve([q("A")], current=True)
    assert len(fake.calls) == 2
