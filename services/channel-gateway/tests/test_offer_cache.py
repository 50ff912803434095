"""The per-replica offer cache's own rules (pure, injected clock): TTL bound, the fetch-in-flight race
guard, invalidation by tag, bounded sizes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from retail.inventory.v1 import events_pb2 as inventory_events
from retail_channel_gateway.offer_cache import ComponentCache, OfferCache
from retail_channel_gateway.offer_invalidation import SETTLE_SECONDS, apply_event
from retail_common.clock import ManualClock
from retail_common.messaging import Envelope, new_event_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _cache(max_entries: int = 100, remembered: int = 100) -> ComponentCache[tuple[str, str], int]:
    return ComponentCache(
        lambda key: key[0],
        ttl=timedelta(seconds=30),
        max_entries=max_entries,
        max_remembered_invalidations=remembered,
    )


def test_an_entry_is_served_until_its_ttl_and_fetched_again_after() -> None:
    clock = ManualClock(T0)
    cache = OfferCache(clock, ttl_seconds=30, max_entries=100)
    key = ("A", "s1", "web")
    with cache.ats.fetching() as token:
        assert cache.ats.store(key, 7, token, clock.now())
    assert cache.ats.lookup([key], T0 + timedelta(seconds=29.999)) == ({key: 7}, [])
    assert cache.ats.lookup([key], T0 + timedelta(seconds=30)) == ({}, [key])
    assert len(cache.ats) == 0  # the expired entry is gone, not kept around


def test_an_invalidation_during_a_fetch_keeps_the_fetched_value_out() -> None:
    cache = _cache()
    with cache.fetching() as token:
        # the answer was read before the change; the change's event arrives before the answer
        cache.invalidate(["A"])
        assert not cache.store(("A", "s1"), 5, token, T0)
        assert cache.store(("B", "s1"), 3, token, T0)  # another tag is unaffected
    assert cache.lookup([("A", "s1"), ("B", "s1")], T0) == ({("B", "s1"): 3}, [("A", "s1")])
    with cache.fetching() as token:  # a fetch that starts after the invalidation may store
        assert cache.store(("A", "s1"), 6, token, T0)
    assert cache.lookup([("A", "s1")], T0) == ({("A", "s1"): 6}, [])


def test_a_fetch_overlapping_another_sees_the_invalidation_between_them() -> None:
    cache = _cache()
    with cache.fetching() as early:
        cache.invalidate(["A"])
        with cache.fetching() as late:
            assert cache.store(("A", "s1"), 2, late, T0)
        assert not cache.store(("A", "s2"), 1, early, T0)
    assert cache.lookup([("A", "s1"), ("A", "s2")], T0) == ({("A", "s1"): 2}, [("A", "s2")])


def test_invalidate_all_clears_entries_and_refuses_fetches_in_flight() -> None:
    cache = _cache()
    with cache.fetching() as token:
        assert cache.store(("A", "s1"), 1, token, T0)
        cache.invalidate_all()
        assert not cache.store(("B", "s1"), 2, token, T0)
    assert len(cache) == 0


def test_invalidation_drops_every_key_of_the_tag_only() -> None:
    cache = _cache()
    with cache.fetching() as token:
        for key in (("A", "s1"), ("A", "s2"), ("B", "s1")):
            cache.store(key, 1, token, T0)
    cache.invalidate(["A"])
    hits, misses = cache.lookup([("A", "s1"), ("A", "s2"), ("B", "s1")], T0)
    assert hits == {("B", "s1"): 1}
    assert misses == [("A", "s1"), ("A", "s2")]


def test_size_is_bounded_oldest_stored_first() -> None:
    cache = _cache(max_entries=3)
    with cache.fetching() as token:
        for i in range(5):
            cache.store((f"S{i}", "s1"), i, token, T0)
        cache.store(("S2", "s1"), 20, token, T0)  # re-stored: now the youngest
        cache.store(("S5", "s1"), 5, token, T0)
    keys = [(f"S{i}", "s1") for i in range(6)]
    hits, _ = cache.lookup(keys, T0)
    assert hits == {("S2", "s1"): 20, ("S4", "s1"): 4, ("S5", "s1"): 5}
    cache.invalidate(["S0", "S1", "S3"])  # evicted tags left no index behind to trip over
    assert len(cache) == 3


def test_remembered_invalidations_are_bounded_by_refusing_fetches_in_flight() -> None:
    cache = _cache(remembered=2)
    with cache.fetching() as token:
        cache.invalidate(["X", "Y", "Z"])  # past the bound: forget them, refuse everything in flight
        assert not cache.store(("A", "s1"), 1, token, T0)
        with cache.fetching() as later:
            assert cache.store(("A", "s1"), 1, later, T0)


def test_a_price_change_drops_the_skus_sale_prices_too_and_a_wildcard_promotion_all_of_them() -> None:
    clock = ManualClock(T0)
    cache = OfferCache(clock, ttl_seconds=30, max_entries=100)
    a, b = ("A", "s1", "web", "EUR"), ("B", "s1", "web", "EUR")
    with cache.prices.fetching() as p, cache.sales.fetching() as s:
        for key in (a, b):
            cache.prices.store(key, None, p, T0)
            cache.sales.store(key, None, s, T0)
    cache.price_changed("A")
    assert cache.prices.lookup([a, b], T0)[1] == [a]
    assert cache.sales.lookup([a, b], T0)[1] == [a]
    cache.promotions_changed(None)
    assert cache.sales.lookup([a, b], T0)[1] == [a, b]
    assert cache.prices.lookup([b], T0)[1] == []  # list prices untouched by promotions


def test_a_cache_off_or_without_its_subscriptions_is_not_used() -> None:
    clock = ManualClock(T0)
    assert not OfferCache(clock, ttl_seconds=0, max_entries=100).usable
    cache = OfferCache(clock, ttl_seconds=30, max_entries=100)
    assert not cache.usable
    cache.live = True
    assert cache.usable


def _envelope(event_type: str, key: str, payload: bytes) -> Envelope:
    return Envelope(
        subject="retail.x", event_id=new_event_id(), event_type=event_type, schema_version=1,
        aggregate_type=event_type, aggregate_key=key, aggregate_version=1, occurred_at=T0, payload=payload,
    )  # fmt: skip


def test_upstream_cached_components_are_dropped_again_after_the_settle_delay() -> None:
    clock = ManualClock(T0)
    cache = OfferCache(clock, ttl_seconds=30, max_entries=100)
    key, ats_key = ("A", "s1", "web", "EUR"), ("A", "s1", "web")
    scheduled: list[tuple[float, Callable[[], None]]] = []

    def later(delay: float, callback: Callable[[], None]) -> object:
        scheduled.append((delay, callback))
        return None

    apply_event(cache, _envelope("retail.pricing.v1.PriceChanged", "A", b""), later)
    # a pricing replica whose own cache lags still answered the old price to a fetch after the event
    with cache.prices.fetching() as token:
        assert cache.prices.store(key, None, token, T0)
    assert [delay for delay, _ in scheduled] == [SETTLE_SECONDS]
    scheduled[0][1]()
    assert cache.prices.lookup([key], T0) == ({}, [key])  # the second drop removed it

    stock = inventory_events.AvailabilityChanged(sku="A", location_id="s1").SerializeToString()
    with cache.ats.fetching() as token:
        cache.ats.store(ats_key, 3, token, T0)
    apply_event(cache, _envelope("retail.inventory.v1.AvailabilityChanged", "A/s1", stock), later)
    assert cache.ats.lookup([ats_key], T0) == ({}, [ats_key])
    assert len(scheduled) == 1  # inventory reads its database: nothing to settle
