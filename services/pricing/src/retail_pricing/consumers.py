"""What the pricing service consumes: its own events per replica (cache invalidation) and the inventory
service's LocationUpserted (region and time zone replica, through the shared inbox)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg
from nats.js import JetStreamContext

from retail.inventory.v1 import events_pb2 as inventory_events
from retail_common.db import Connection
from retail_common.messaging import (
    Envelope,
    InboxConsumer,
    ReplicaSubscription,
    event_filter,
    subscribe_per_replica,
)
from retail_pricing import events
from retail_pricing.catalog import Catalog
from retail_pricing.domain.model import Location
from retail_pricing.repository.price_lists import upsert_location

__all__ = [
    "LOCATION_SUBJECT",
    "apply_location",
    "invalidate_on",
    "location_consumer",
    "watch_for_invalidation",
]

logger = logging.getLogger("retail_pricing.consumers")
LOCATION_SUBJECT = event_filter("inventory", "location_upserted")
_SCHEDULING_EVENTS = {
    f"retail.pricing.v1.{events.PRICE_CHANGED}",
    f"retail.pricing.v1.{events.TAX_RATE_CHANGED}",
}
_SKU_EVENTS = {f"retail.pricing.v1.{events.PRICE_CHANGED}", f"retail.pricing.v1.{events.PRODUCT_UPSERTED}"}


def invalidate_on(catalog: Catalog, envelope: Envelope) -> None:
    """Drop what an event makes stale: one SKU for SKU events, the configuration otherwise."""
    if envelope.event_type in _SKU_EVENTS:
        catalog.invalidate_skus([envelope.aggregate_key])
    else:
        catalog.invalidate_config()


async def watch_for_invalidation(
    js: JetStreamContext, catalog: Catalog, on_price_changed: Callable[[], None] = lambda: None
) -> list[ReplicaSubscription]:
    """Per-replica (ephemeral ordered) subscriptions; everything cached before them is dropped.
    `on_price_changed` runs for every PriceChanged and TaxRateChanged (an approval or a scheduled tax
    rate elsewhere may have added due instants)."""

    async def on_event(envelope: Envelope) -> None:
        invalidate_on(catalog, envelope)
        if envelope.event_type in _SCHEDULING_EVENTS:
            on_price_changed()

    subscriptions = [
        await subscribe_per_replica(js, "retail.pricing.>", on_event, stream="PRICING"),
        await subscribe_per_replica(js, LOCATION_SUBJECT, on_event, stream="INVENTORY"),
    ]
    catalog.invalidate_all()
    return subscriptions


async def apply_location(conn: Connection, envelope: Envelope) -> None:
    event = inventory_events.LocationUpserted.FromString(envelope.payload)
    loc = event.location
    await upsert_location(
        conn, Location(loc.location_id, loc.region_id, loc.time_zone), envelope.aggregate_version
    )


def location_consumer(pool: asyncpg.Pool[asyncpg.Record], js: JetStreamContext) -> InboxConsumer:
    return InboxConsumer(
        pool,
        js,
        stream="INVENTORY",
        durable="pricing-locations",
        filter_subject=LOCATION_SUBJECT,
        handler=apply_location,
    )
