"""Price entities per (SKU, location) for channels that get composed amounts and serve several locations.

A pushed amount is one price, so it may be presented for one location only: a store group whose stores
have their own lists would otherwise receive one store's price for all of them. Each served location
the change affects becomes its own ledger entity (`price/<sku>/<location>`), so ordering (versions only
move forward), coalescing (a newer change replaces a pending older one) and idempotency keys hold per
store, and a change at one store never replaces another store's pending update.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from retail.channel.v1 import changes_pb2
from retail_channel_gateway.domain.changes import ChangeKind, DomainChange, entity_key

__all__ = ["per_location", "splits_prices"]


def splits_prices(composed: bool, served: Collection[str]) -> bool:
    """A channel needs per-location price entities when its price changes carry amounts and it serves
    more than one location. Without amounts a PriceUpdate only names where prices changed (the channel
    asks GetOffers), which is right for any number of locations; with one location it is that one."""
    return composed and len(served) > 1


def per_location(change: DomainChange, served: Collection[str]) -> list[DomainChange]:
    """The price change as one change per served location it affects (sorted by location): all of
    them for a channel-wide change, else those it names. Same version: the SKU's version orders every
    location's entity, so a location skipped by a change simply keeps its last version."""
    if change.kind is not ChangeKind.PRICE or change.sku is None:
        return [change]
    named = set(change.location_ids) if change.location_ids else None
    if change.location_id is not None:
        named = {change.location_id}
    locations = sorted(set(served) if named is None else named.intersection(served))
    return [
        replace(
            change,
            entity_key=entity_key(ChangeKind.PRICE, change.sku, location),
            location_id=location,
            location_ids=(),
            body=changes_pb2.PriceUpdate(sku=change.sku, location_ids=[location]),
        )
        for location in locations
    ]
