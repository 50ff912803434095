"""A per-replica cache of unit prices from pricing, so a cart evaluated "now" does not cost a pricing
round trip per call. Prices still only come from pricing: entries are invalidated per SKU by pricing's
PriceChanged / ProductUpserted events (a per-replica subscription, DESIGN §5) and expire after a TTL
that bounds staleness if events are missed. Carts evaluated at an explicit instant bypass it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from retail_common.clock import Clock
from retail_promotion.dependencies import PriceAnswer, PriceQuery, Pricing, ProductAnswer

__all__ = ["CachingPricing", "PriceCache"]

Key = tuple[str, str, str, str, str, int]


def _key(q: PriceQuery) -> Key:
    return (q.sku, q.currency, q.channel_id, q.location_id, q.segment, max(q.quantity, 1))


class PriceCache:
    def __init__(self, clock: Clock, ttl_seconds: float, max_entries: int = 200_000) -> None:
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._max = max_entries
        self._entries: dict[Key, tuple[datetime, PriceAnswer, int]] = {}
        self._generation: dict[str, int] = {}  # per SKU, bumped by every invalidation
        self._epoch = 0  # bumped by invalidate_all

    @property
    def enabled(self) -> bool:
        return self._ttl > timedelta(0)

    def generation(self, sku: str) -> tuple[int, int]:
        return self._epoch, self._generation.get(sku, 0)

    def get(self, q: PriceQuery) -> PriceAnswer | None:
        hit = self._entries.get(_key(q))
        if hit is None:
            return None
        stored_at, answer, epoch = hit
        if epoch != self._epoch or self._clock.now() - stored_at >= self._ttl:
            return None
        return answer

    def put(self, q: PriceQuery, answer: PriceAnswer, seen: tuple[int, int]) -> None:
        """Store a fetched answer unless the SKU was invalidated while it was being fetched."""
        if answer.unit_price is None or seen != self.generation(q.sku):
            return
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[_key(q)] = (self._clock.now(), answer, self._epoch)

    def invalidate_skus(self, skus: Iterable[str]) -> None:
        doomed = set(skus)
        for sku in doomed:
            self._generation[sku] = self._generation.get(sku, 0) + 1
        for key in [k for k in self._entries if k[0] in doomed]:
            del self._entries[key]

    def invalidate_all(self) -> None:
        self._epoch += 1
        self._entries.clear()


class CachingPricing:
    """Pricing with the cache in front of `resolve` for current-instant queries."""

    def __init__(self, pricing: Pricing, cache: PriceCache) -> None:
        self._pricing = pricing
        self.cache = cache

    async def resolve(self, queries: Sequence[PriceQuery], *, current: bool = False) -> list[PriceAnswer]:
        if not (current and self.cache.enabled):
            return await self._pricing.resolve(queries)
        answers: list[PriceAnswer | None] = [self.cache.get(q) for q in queries]
        missing = [i for i, a in enumerate(answers) if a is None]
        if missing:
            seen = [self.cache.generation(queries[i].sku) for i in missing]
            fetched = await self._pricing.resolve([queries[i] for i in missing])
            for i, answer, generation in zip(missing, fetched, seen, strict=True):
                answers[i] = answer
                self.cache.put(queries[i], answer, generation)
        return [a for a in answers if a is not None]

    async def product(self, sku: str) -> ProductAnswer:
        return await self._pricing.product(sku)
