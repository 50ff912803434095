"""Keeps this replica's OfferCache correct: a per-replica subscription per domain stream (every replica
sees every event; the durable inbox consumers split events between replicas, so they cannot do this)
drops the entries an event names.

- pricing `price_changed.<sku>` / `product_upserted.<sku>`: the SKU's list, reference and sale prices
  (a sale price is computed from the unit price); `price_list_upserted` / `tax_rate_changed`: all prices.
- inventory `availability_changed.<sku>.<location>`: that ATS (reservations move ATS through it too);
  `location_upserted`: everything (a location's channels and region shape ATS and prices; rare).
- promotion `promotion_state_changed.<campaign>.<channel>.<location>.<sku>`: the SKU's sale prices
  (every sale price for a wildcard SKU); `campaign_changed` (lifecycle, window start/end): all sale prices.

Pricing and promotion entries are dropped a second time SETTLE_SECONDS later (their replicas' own caches
may lag this one's invalidation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext

from retail.inventory.v1 import events_pb2 as inventory_events
from retail.promotion.v1 import events_pb2 as promotion_events
from retail_channel_gateway.offer_cache import OfferCache
from retail_common.messaging import Envelope, ReplicaSubscription, subscribe_per_replica

__all__ = ["SETTLE_SECONDS", "apply_event", "run_offer_invalidation"]

logger = logging.getLogger("retail_channel_gateway.offer_invalidation")

_STREAMS = (
    ("PRICING", "retail.pricing.>"),
    ("INVENTORY", "retail.inventory.>"),
    ("PROMOTION", "retail.promotion.>"),
)


def _price(cache: OfferCache, envelope: Envelope) -> None:
    cache.price_changed(envelope.aggregate_key)  # aggregate: the SKU


def _prices_all(cache: OfferCache, envelope: Envelope) -> None:
    cache.prices.invalidate_all()
    cache.sales.invalidate_all()


def _availability(cache: OfferCache, envelope: Envelope) -> None:
    event = inventory_events.AvailabilityChanged.FromString(envelope.payload)
    cache.availability_changed(event.sku, event.location_id)


def _everything(cache: OfferCache, envelope: Envelope) -> None:
    cache.invalidate_all()


def _promotion_scope(cache: OfferCache, envelope: Envelope) -> None:
    event = promotion_events.PromotionStateChanged.FromString(envelope.payload)
    cache.promotions_changed(event.sku or None)


def _campaign(cache: OfferCache, envelope: Envelope) -> None:
    cache.promotions_changed(None)


_HANDLERS: dict[str, Callable[[OfferCache, Envelope], None]] = {
    "retail.pricing.v1.PriceChanged": _price,
    "retail.pricing.v1.ProductUpserted": _price,
    "retail.pricing.v1.PriceListUpserted": _prices_all,
    "retail.pricing.v1.TaxRateChanged": _prices_all,
    "retail.inventory.v1.AvailabilityChanged": _availability,
    "retail.inventory.v1.LocationUpserted": _everything,
    "retail.promotion.v1.PromotionStateChanged": _promotion_scope,
    "retail.promotion.v1.CampaignChanged": _campaign,
}


# Pricing and promotion answer from their own per-replica caches, invalidated by these same events: a
# replica of theirs may still serve the old value for a moment after this replica heard the event, and
# a fetch in that moment would cache it. Their entries are therefore dropped once more SETTLE_SECONDS
# later (a lag beyond that is bounded by the TTL). Inventory reads its database: no second drop.
SETTLE_SECONDS = 2.0
_UPSTREAM_CACHED = frozenset(t for t in _HANDLERS if not t.startswith("retail.inventory."))

Later = Callable[[float, Callable[[], None]], object]


def apply_event(cache: OfferCache, envelope: Envelope, later: Later | None = None) -> None:
    """Drop what the event names; with `later` (a call_later), drop it again after SETTLE_SECONDS when
    the answer comes from an upstream cache."""
    handler = _HANDLERS.get(envelope.event_type)
    if handler is None:
        return
    handler(cache, envelope)
    if later is not None and envelope.event_type in _UPSTREAM_CACHED:
        later(SETTLE_SECONDS, lambda: handler(cache, envelope))


async def run_offer_invalidation(
    cache: OfferCache, js: Callable[[], Awaitable[JetStreamContext]], *, retry_seconds: float = 1.0
) -> None:
    """Subscribe, then let the cache be used until cancelled. While subscribing fails (NATS down), the
    cache is not used and subscribing is retried."""

    later = asyncio.get_running_loop().call_later

    async def on_event(envelope: Envelope) -> None:
        try:
            apply_event(cache, envelope, later)
        except Exception:
            cache.invalidate_all()  # an event we cannot read may have changed anything
            raise

    while True:
        subscriptions: list[ReplicaSubscription] = []
        try:
            context = await js()
            for stream, subject in _STREAMS:
                subscriptions.append(await subscribe_per_replica(context, subject, on_event, stream=stream))
            cache.invalidate_all()  # anything cached before the subscriptions may have missed an event
            cache.live = True
            await asyncio.Event().wait()
        except Exception:
            logger.exception("offer cache subscriptions failed; offers are fetched uncached meanwhile")
        finally:
            cache.live = False
            cache.invalidate_all()
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.close()
        await asyncio.sleep(retry_seconds)
