"""Promotion events as channels see them: campaigns only once launched, campaign-wide scopes only on the
campaign's channels (pure: decode + projection)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retail.promotion.v1 import campaign_pb2
from retail.promotion.v1 import events_pb2 as promotion_events
from retail_channel_gateway.domain.changes import ChangeKind
from retail_channel_gateway.domain.decode import EventFacts, decode_event
from retail_channel_gateway.domain.projection import ChannelScope, concerned_channels

FACTS = EventFacts("C1", 3, datetime(2026, 6, 1, tzinfo=UTC))
CHANNELS = [
    ChannelScope("web", frozenset(), frozenset()),
    ChannelScope("app", frozenset(), frozenset()),
]


def campaign_changed(state: campaign_pb2.CampaignState.ValueType) -> bytes:
    campaign = campaign_pb2.Campaign(campaign_id="C1", state=state, channel_ids=["web"])
    return promotion_events.CampaignChanged(campaign=campaign).SerializeToString()


@pytest.mark.parametrize(
    "state",
    [
        campaign_pb2.CAMPAIGN_STATE_DRAFT,
        campaign_pb2.CAMPAIGN_STATE_SUBMITTED,
        campaign_pb2.CAMPAIGN_STATE_APPROVED,
    ],
)
def test_a_campaign_not_launched_reaches_no_channel(state: campaign_pb2.CampaignState.ValueType) -> None:
    assert decode_event("retail.promotion.v1.CampaignChanged", campaign_changed(state), FACTS) is None


def test_a_launched_campaign_reaches_its_channels_only() -> None:
    change = decode_event(
        "retail.promotion.v1.CampaignChanged", campaign_changed(campaign_pb2.CAMPAIGN_STATE_SCHEDULED), FACTS
    )
    assert change is not None
    assert change.kind is ChangeKind.CAMPAIGN
    assert concerned_channels(change, CHANNELS, lambda channel, sku: True) == ["web"]


def test_a_campaign_wide_promotion_state_reaches_the_campaigns_channels_only() -> None:
    event = promotion_events.PromotionStateChanged(
        campaign_id="C1",
        change=promotion_events.PROMOTION_STATE_CHANGE_ACTIVATED,
        campaign_channel_ids=["web"],
    )
    change = decode_event("retail.promotion.v1.PromotionStateChanged", event.SerializeToString(), FACTS)
    assert change is not None
    assert concerned_channels(change, CHANNELS, lambda channel, sku: True) == ["web"]
    everywhere = promotion_events.PromotionStateChanged(
        campaign_id="C2", change=promotion_events.PROMOTION_STATE_CHANGE_ACTIVATED
    )
    change = decode_event("retail.promotion.v1.PromotionStateChanged", everywhere.SerializeToString(), FACTS)
    assert change is not None
    assert concerned_channels(change, CHANNELS, lambda channel, sku: True) == ["app", "web"]
