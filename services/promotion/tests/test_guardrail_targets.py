"""Which (SKU, location, channel) a campaign's stock guardrail watches (pure)."""

from __future__ import annotations

from retail.promotion.v1 import campaign_pb2
from retail_promotion.campaigning import TargetedLocations, guardrail_targets
from retail_promotion.testing import campaign_pb, percent_promotion_pb

GUARD = campaign_pb2.StockGuardrail(min_available_to_sell=5)
LOCATIONS = TargetedLocations(
    regions={"s1": "north", "s2": "north", "s3": "south", "old": "south"},
    sellers={"s1": frozenset({"web", "pos"}), "s2": frozenset({"pos"}), "s3": frozenset(), "old": None},
)


def test_only_channels_that_may_sell_from_a_location_are_watched_there() -> None:
    campaign = campaign_pb(
        promotions=[percent_promotion_pb("P1", "10", ["A"])], channels=("web", "pos"), stock_guardrail=GUARD
    )
    assert guardrail_targets(campaign, LOCATIONS) == [
        ("A", "old", "pos"),  # channels not yet known for this location: not filtered
        ("A", "old", "web"),
        ("A", "s1", "pos"),
        ("A", "s1", "web"),
        ("A", "s2", "pos"),  # web does not sell from s2; nobody sells from s3
    ]


def test_a_campaign_for_every_channel_watches_each_locations_own_channels() -> None:
    campaign = campaign_pb(
        promotions=[percent_promotion_pb("P1", "10", ["A"])],
        channels=(),
        stock_guardrail=GUARD,
        excluded_region_ids=["south"],
    )
    assert guardrail_targets(campaign, LOCATIONS) == [
        ("A", "s1", "pos"),
        ("A", "s1", "web"),
        ("A", "s2", "pos"),
    ]


def test_no_minimum_no_guardrail() -> None:
    campaign = campaign_pb(promotions=[percent_promotion_pb("P1", "10", ["A"])])
    assert guardrail_targets(campaign, LOCATIONS) == []
