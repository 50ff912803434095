"""Campaign entities per store of a POS store group: which stores, what each gets, how it is read back."""

from __future__ import annotations

from datetime import UTC, datetime

from retail.channel.v1 import changes_pb2
from retail_channel_gateway.domain.changes import ChangeKind, DomainChange, LocationTargeting
from retail_channel_gateway.domain.payload import Profile, render
from retail_channel_gateway.domain.store_scope import per_store, store_of, targeted_stores, tracks_per_store

SERVED = ["s1", "s2", "s3", "s4"]
REGIONS = {"s1": "north", "s2": "north", "s3": "south"}  # s4's region is not known yet


def test_a_campaign_naming_no_location_targets_every_served_store_but_the_excluded() -> None:
    targeting = LocationTargeting(excluded_location_ids=frozenset({"s2"}))
    assert targeted_stores(targeting, SERVED, REGIONS) == ["s1", "s3", "s4"]


def test_regions_include_and_exclude_stores_and_an_exclusion_wins() -> None:
    north = LocationTargeting(region_ids=frozenset({"north"}), location_ids=frozenset({"s4"}))
    assert targeted_stores(north, SERVED, REGIONS) == ["s1", "s2", "s4"]
    no_south = LocationTargeting(excluded_region_ids=frozenset({"south"}), location_ids=frozenset({"s3"}))
    assert targeted_stores(no_south, SERVED, REGIONS) == []
    elsewhere = LocationTargeting(location_ids=frozenset({"x9"}))
    assert targeted_stores(elsewhere, SERVED, REGIONS) == []


def test_each_store_gets_its_own_entity_naming_it_and_is_read_back_from_the_payload() -> None:
    change = DomainChange(
        kind=ChangeKind.CAMPAIGN,
        entity_key="campaign/C%2F1",
        version=7,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        body=changes_pb2.CampaignUpdate(campaign_id="C/1", state="ACTIVE"),
    )
    parts = per_store(change, ["s2", "s1"])
    assert [p.entity_key for p in parts] == ["campaign/C%2F1/s1", "campaign/C%2F1/s2"]
    assert {p.version for p in parts} == {7}
    rendered = render(parts[1], "pos", Profile())
    assert rendered.campaign.location_id == "s2"
    assert store_of(rendered) == ("campaign/C%2F1", "s2")
    assert store_of(render(change, "web", Profile())) is None


def test_only_campaigns_of_store_groups_are_tracked_per_store() -> None:
    campaign = DomainChange(ChangeKind.CAMPAIGN, "campaign/C", 1, datetime(2026, 1, 1, tzinfo=UTC))
    price = DomainChange(ChangeKind.PRICE, "price/A", 1, datetime(2026, 1, 1, tzinfo=UTC))
    assert tracks_per_store("POS_STORE_GROUP", campaign)
    assert not tracks_per_store("ECOMMERCE", campaign)
    assert not tracks_per_store("POS_STORE_GROUP", price)
