"""A per-replica read-through cache of GetOffers' components, so a warm offer costs no round trip to
pricing, promotion or inventory. The systems of record stay the only source: entries are dropped by the
domain events that announce a change (`offer_invalidation`), expire after a TTL that bounds staleness if
an event is missed, and are only used while the invalidating subscriptions are in place (`live`).

Race guard: a fetch takes a token before it asks; an invalidation of its tag that arrives while the
fetch is in flight makes `store` refuse the (possibly stale) answer. Sizes are bounded: entries are
evicted oldest-stored first, and the invalidations remembered for in-flight fetches are bounded too
(past the bound, every fetch in flight is refused instead).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from retail_common.clock import Clock

if TYPE_CHECKING:  # the façade imports this module
    from retail.pricing.v1 import resolution_pb2
    from retail_channel_gateway.facade import SalePrice

__all__ = ["AtsKey", "ComponentCache", "OfferCache", "PriceKey"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

PriceKey = tuple[str, str, str, str]  # sku, location, channel, currency
AtsKey = tuple[str, str, str]  # sku, location, channel


class ComponentCache(Generic[K, V]):
    """Entries of one offer component; `tag(key)` is what an invalidating event names (SKU, or SKU and
    location). Not thread-safe: one event loop per replica."""

    def __init__(
        self,
        tag: Callable[[K], Hashable],
        *,
        ttl: timedelta,
        max_entries: int,
        max_remembered_invalidations: int = 50_000,
    ) -> None:
        self._tag = tag
        self._ttl = ttl
        self._max = max_entries
        self._max_remembered = max_remembered_invalidations
        self._entries: dict[K, tuple[datetime, V]] = {}
        self._by_tag: dict[Hashable, set[K]] = {}
        self._tick = 0  # bumped by every invalidation
        self._floor = 0  # fetches that started before it may not store
        self._invalidated: dict[Hashable, int] = {}  # tag -> tick, kept only while fetches are in flight
        self._in_flight = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, keys: Sequence[K], now: datetime) -> tuple[dict[K, V], list[K]]:
        """The fresh entries among `keys`, and the distinct keys to fetch (in first-seen order)."""
        hits: dict[K, V] = {}
        misses: dict[K, None] = {}
        stored_after = now - self._ttl  # fresh: stored_at > now - ttl (one comparison per key)
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > stored_after:
                hits[key] = entry[1]
            else:
                if entry is not None:
                    self._drop(key)
                misses[key] = None
        return hits, list(misses)

    @contextmanager
    def fetching(self) -> Iterator[int]:
        """The token of a fetch about to start; store its answers with it inside the block."""
        self._in_flight += 1
        try:
            yield self._tick
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._invalidated.clear()  # nothing left that could race with them

    def store(self, key: K, value: V, token: int, fetched_at: datetime) -> bool:
        """Keep `value` unless its tag was invalidated after the fetch's token was taken."""
        if token < self._floor or self._invalidated.get(self._tag(key), -1) > token:
            return False
        if key in self._entries:
            self._drop(key)  # re-inserted at the end: eviction is oldest-stored first
        elif len(self._entries) >= self._max:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (fetched_at, value)
        self._by_tag.setdefault(self._tag(key), set()).add(key)
        return True

    def invalidate(self, tags: Iterable[Hashable]) -> None:
        for tag in tags:
            self._tick += 1
            if self._in_flight:
                self._invalidated[tag] = self._tick
            for key in self._by_tag.pop(tag, ()):
                del self._entries[key]
        if len(self._invalidated) > self._max_remembered:
            self._refuse_in_flight()

    def invalidate_all(self) -> None:
        self._refuse_in_flight()
        self._entries.clear()
        self._by_tag.clear()

    def _refuse_in_flight(self) -> None:
        self._tick += 1
        self._floor = self._tick
        self._invalidated.clear()

    def _drop(self, key: K) -> None:
        del self._entries[key]
        tag = self._tag(key)
        keys = self._by_tag.get(tag)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_tag[tag]


def _sku(key: tuple[str, ...]) -> Hashable:
    return key[0]


def _sku_location(key: tuple[str, ...]) -> Hashable:
    return key[0], key[1]


class OfferCache:
    """List/reference prices (pricing), sale prices (promotion) and ATS (inventory) per offer scope.

    A sale price depends on pricing's unit price too, so a price change invalidates both price
    components. `live` is False until the invalidating subscriptions are in place (and again if they
    stop): a cache nobody invalidates is not used.
    """

    def __init__(self, clock: Clock, *, ttl_seconds: float, max_entries: int) -> None:
        ttl = timedelta(seconds=ttl_seconds)
        self.clock = clock
        self.enabled = ttl_seconds > 0
        self.live = False
        self.prices: ComponentCache[PriceKey, resolution_pb2.ResolvedPrice | None] = ComponentCache(
            _sku, ttl=ttl, max_entries=max_entries
        )
        self.sales: ComponentCache[PriceKey, SalePrice | None] = ComponentCache(
            _sku, ttl=ttl, max_entries=max_entries
        )
        self.ats: ComponentCache[AtsKey, int] = ComponentCache(
            _sku_location, ttl=ttl, max_entries=max_entries
        )

    @property
    def usable(self) -> bool:
        return self.enabled and self.live

    def price_changed(self, sku: str) -> None:
        self.prices.invalidate([sku])
        self.sales.invalidate([sku])

    def availability_changed(self, sku: str, location_id: str) -> None:
        self.ats.invalidate([(sku, location_id)])

    def promotions_changed(self, sku: str | None) -> None:
        """A promotion scope changed for `sku` (None: a wildcard scope or a whole campaign)."""
        if sku is None:
            self.sales.invalidate_all()
        else:
            self.sales.invalidate([sku])

    def invalidate_all(self) -> None:
        for component in (self.prices, self.sales, self.ats):
            component.invalidate_all()
