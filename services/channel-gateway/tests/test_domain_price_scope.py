"""Price entities per location for channels with composed amounts serving several stores, and the
composer's refusal to present one amount for several locations."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from retail.channel.v1 import changes_pb2, channel_pb2
from retail.common.v1 import refs_pb2
from retail.pricing.v1 import events_pb2 as pricing_events
from retail_channel_gateway.delivery.composer import PriceComposer
from retail_channel_gateway.domain.changes import ChangeKind, DomainChange
from retail_channel_gateway.domain.decode import EventFacts, decode_event
from retail_channel_gateway.domain.price_scope import per_location, splits_prices
from retail_channel_gateway.facade import NoPromotions

T0 = datetime(2026, 5, 1, tzinfo=UTC)
STORES = ("s1", "s2", "s3")


def price_changed(*locations: str) -> DomainChange:
    scopes = [refs_pb2.Scope(location_id=loc) for loc in locations] or [refs_pb2.Scope()]
    payload = pricing_events.PriceChanged(sku="A/1", version=7, affected_scopes=scopes).SerializeToString()
    change = decode_event("retail.pricing.v1.PriceChanged", payload, EventFacts("A/1", 7, T0))
    assert change is not None
    return change


def test_only_channels_with_amounts_and_several_locations_split() -> None:
    assert splits_prices(True, STORES)
    assert not splits_prices(True, ["s1"])  # one location: its price is the channel's
    assert not splits_prices(True, [])
    assert not splits_prices(False, STORES)  # no amounts: a PriceUpdate only names where prices changed


def test_a_channel_wide_change_becomes_one_entity_per_served_store() -> None:
    parts = per_location(price_changed(), STORES)
    assert [(p.entity_key, p.location_id, p.version) for p in parts] == [
        ("price/A%2F1/s1", "s1", 7),
        ("price/A%2F1/s2", "s2", 7),
        ("price/A%2F1/s3", "s3", 7),
    ]
    for part in parts:
        assert isinstance(part.body, changes_pb2.PriceUpdate)
        assert list(part.body.location_ids) == [part.location_id]  # presented for its own store only


def test_a_store_scoped_change_touches_only_the_served_stores_it_names() -> None:
    parts = per_location(price_changed("s2", "s9"), STORES)
    assert [p.entity_key for p in parts] == ["price/A%2F1/s2"]
    assert per_location(price_changed("s9"), STORES) == []


def test_other_kinds_are_not_split() -> None:
    stock = DomainChange(
        kind=ChangeKind.AVAILABILITY, entity_key="availability/A/s1", version=1, occurred_at=T0
    )
    assert per_location(stock, STORES) == [stock]


async def test_an_update_naming_several_locations_gets_no_amounts() -> None:
    """Rows projected before per-location entities (or any update naming two stores) are sent as a bare
    notification; the amounts an earlier composition left in the payload are cleared. No pricing call is
    needed for them: the channel points nowhere, so a call would fail the test."""
    money = {"currency_code": "EUR", "units": 20}
    stale = changes_pb2.PriceUpdate(sku="A", location_ids=["s1", "s2"], list_price=money, sale_price=money)
    change = changes_pb2.ChannelChange(kind=channel_pb2.CHANGE_KIND_PRICE, price=stale)
    nowhere = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        await PriceComposer(nowhere, NoPromotions(), timeout=0.5).compose("pos", "EUR", [change])
    finally:
        await nowhere.close(None)
    assert not change.price.HasField("list_price")
    assert not change.price.HasField("sale_price")
    assert list(change.price.location_ids) == ["s1", "s2"]


async def test_a_channel_wide_update_of_a_channel_serving_several_stores_gets_no_amounts() -> None:
    """A row projected before per-store entities (a chain-wide change, no location named): no single
    amount is right for every store of the group."""
    change = changes_pb2.ChannelChange(
        kind=channel_pb2.CHANGE_KIND_PRICE, price=changes_pb2.PriceUpdate(sku="A")
    )
    nowhere = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        await PriceComposer(nowhere, NoPromotions(), timeout=0.5).compose("pos", "EUR", [change], STORES)
    finally:
        await nowhere.close(None)
    assert not change.price.HasField("list_price")
