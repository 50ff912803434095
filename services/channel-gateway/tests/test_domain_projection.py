"""Projection: which channels a domain change concerns (locations, assortment, kind, addressee)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retail_channel_gateway.domain.changes import ChangeKind, DomainChange, Lane, entity_key, lane_of
from retail_channel_gateway.domain.projection import ChannelScope, concerned_channels

T0 = datetime(2026, 5, 1, tzinfo=UTC)
WEB = ChannelScope("web", frozenset({"s1", "s2"}), frozenset())
APP = ChannelScope("app", frozenset({"s2"}), frozenset())
MKT = ChannelScope("mkt", frozenset({"dc"}), frozenset({ChangeKind.PRICE}))
OFF = ChannelScope("off", frozenset({"s1"}), frozenset(), active=False)
CHANNELS = [WEB, APP, MKT, OFF]
ASSORTMENT = {("web", "A"), ("web", "B"), ("app", "A"), ("mkt", "A"), ("off", "A")}


def listed(channel: str, sku: str) -> bool:
    return (channel, sku) in ASSORTMENT


def change(kind: ChangeKind, **kw: object) -> DomainChange:
    return DomainChange(kind=kind, entity_key="k", version=1, occurred_at=T0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("description", "the_change", "expected"),
    [
        (
            "stock at s1 of A: only web serves s1 (off is inactive)",
            change(ChangeKind.AVAILABILITY, sku="A", location_id="s1"),
            ["web"],
        ),
        (
            "stock at s2 of A: web and app serve s2 and list A",
            change(ChangeKind.AVAILABILITY, sku="A", location_id="s2"),
            ["app", "web"],
        ),
        (
            "stock at s2 of B: app does not list B",
            change(ChangeKind.AVAILABILITY, sku="B", location_id="s2"),
            ["web"],
        ),
        ("stock at an unserved location", change(ChangeKind.AVAILABILITY, sku="A", location_id="zz"), []),
        (
            "channel-wide price of A: every active channel listing it that takes prices",
            change(ChangeKind.PRICE, sku="A"),
            ["app", "mkt", "web"],
        ),
        (
            "price of A at locations s1 or dc",
            change(ChangeKind.PRICE, sku="A", location_ids=("s1", "dc")),
            ["mkt", "web"],
        ),
        ("price of C: nobody lists it", change(ChangeKind.PRICE, sku="C"), []),
        ("reservation addressed to app", change(ChangeKind.RESERVATION, channel_id="app"), ["app"]),
        ("promotion on SKUs B or C", change(ChangeKind.PROMOTION, skus=("B", "C")), ["web"]),
        ("campaign for web and mkt only", change(ChangeKind.CAMPAIGN, channel_ids=("web", "mkt")), ["web"]),
        (
            "location s2 changed: channels serving it",
            change(ChangeKind.LOCATION, location_id="s2"),
            ["app", "web"],
        ),
        ("product A: mkt only takes prices", change(ChangeKind.PRODUCT, sku="A"), ["app", "web"]),
    ],
)
def test_concerned_channels_golden(description: str, the_change: DomainChange, expected: list[str]) -> None:
    assert concerned_channels(the_change, CHANNELS, listed) == expected, description


def test_lanes_price_and_promotion_always_fast_stock_follows_channel() -> None:
    assert lane_of(ChangeKind.PRICE, Lane.BULK) is Lane.FAST
    assert lane_of(ChangeKind.PROMOTION, Lane.BULK) is Lane.FAST
    assert lane_of(ChangeKind.AVAILABILITY) is Lane.BULK
    assert lane_of(ChangeKind.AVAILABILITY, Lane.FAST) is Lane.FAST


def test_entity_keys_cannot_collide_through_slashes() -> None:
    assert entity_key(ChangeKind.AVAILABILITY, "a/b", "c") != entity_key(ChangeKind.AVAILABILITY, "a", "b/c")
    assert entity_key(ChangeKind.PRICE, "SKU-1") == "price/SKU-1"
