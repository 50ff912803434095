"""Domain events (by their event type header) reduced to DomainChanges. Pure: bytes in, values out.

Consumed (DESIGN §2): PriceChanged, ProductUpserted (pricing); AvailabilityChanged, ReservationChanged,
LocationUpserted (inventory); PromotionStateChanged, CampaignChanged (promotion). Anything else is not
the gateway's business (None). The entity version is the event's aggregate version (state-carried).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import changes_pb2
from retail.common.v1 import time_window_pb2
from retail.inventory.v1 import events_pb2 as inventory_events
from retail.inventory.v1 import reservation_pb2
from retail.pricing.v1 import events_pb2 as pricing_events
from retail.pricing.v1 import products_pb2
from retail.promotion.v1 import campaign_pb2
from retail.promotion.v1 import events_pb2 as promotion_events
from retail_channel_gateway.domain.changes import ChangeKind, DomainChange, LocationTargeting, entity_key

__all__ = ["CONSUMED_EVENT_TYPES", "EventFacts", "decode_event"]


class EventFacts:
    """Header facts of one event (from the envelope)."""

    __slots__ = ("aggregate_key", "occurred_at", "version")

    def __init__(self, aggregate_key: str, version: int, occurred_at: datetime) -> None:
        self.aggregate_key = aggregate_key
        self.version = version
        self.occurred_at = occurred_at


def _dt(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(UTC)


def _absolute(window: time_window_pb2.TimeWindow) -> tuple[datetime | None, datetime | None]:
    """Absolute windows only; a local window resolves per location (the promotion service's job)."""
    if window.WhichOneof("kind") != "absolute":
        return None, None
    absolute = window.absolute
    start = _dt(absolute.start_time) if absolute.HasField("start_time") else None
    end = _dt(absolute.end_time) if absolute.HasField("end_time") else None
    return start, end


def _price(payload: bytes, facts: EventFacts) -> DomainChange:
    event = pricing_events.PriceChanged.FromString(payload)
    locations = tuple(sorted({s.location_id for s in event.affected_scopes if s.location_id}))
    channel_wide = not event.affected_scopes or any(not s.location_id for s in event.affected_scopes)
    return DomainChange(
        kind=ChangeKind.PRICE,
        entity_key=entity_key(ChangeKind.PRICE, event.sku),
        version=facts.version,
        occurred_at=facts.occurred_at,
        effective_from=_dt(event.effective_time) if event.HasField("effective_time") else None,
        sku=event.sku,
        location_ids=() if channel_wide else locations,
        body=changes_pb2.PriceUpdate(sku=event.sku, location_ids=[] if channel_wide else list(locations)),
    )


def _product(payload: bytes, facts: EventFacts) -> DomainChange:
    product = pricing_events.ProductUpserted.FromString(payload).product
    status = products_pb2.ProductStatus.Name(product.status).removeprefix("PRODUCT_STATUS_")
    return DomainChange(
        kind=ChangeKind.PRODUCT,
        entity_key=entity_key(ChangeKind.PRODUCT, product.sku),
        version=facts.version,
        occurred_at=facts.occurred_at,
        sku=product.sku,
        body=changes_pb2.ProductUpdate(sku=product.sku, status=status, display_name=product.title),
    )


def _availability(payload: bytes, facts: EventFacts) -> DomainChange:
    event = inventory_events.AvailabilityChanged.FromString(payload)
    return DomainChange(
        kind=ChangeKind.AVAILABILITY,
        entity_key=entity_key(ChangeKind.AVAILABILITY, event.sku, event.location_id),
        version=facts.version,
        occurred_at=facts.occurred_at,
        sku=event.sku,
        location_id=event.location_id,
        body=changes_pb2.AvailabilityUpdate(
            sku=event.sku,
            location_id=event.location_id,
            on_hand=event.on_hand,
            reserved_total=event.reserved_total,
        ),
        channel_ats={c.channel_id: c.available_to_sell for c in event.channels},
    )


def _reservation(payload: bytes, facts: EventFacts) -> DomainChange:
    reservation = inventory_events.ReservationChanged.FromString(payload).reservation
    state = reservation_pb2.ReservationState.Name(reservation.state).removeprefix("RESERVATION_STATE_")
    body = changes_pb2.ReservationUpdate(reservation_id=reservation.reservation_id, state=state)
    if reservation.HasField("expire_time"):
        body.expire_time.CopyFrom(reservation.expire_time)
    return DomainChange(
        kind=ChangeKind.RESERVATION,
        entity_key=entity_key(ChangeKind.RESERVATION, reservation.reservation_id),
        version=facts.version,
        occurred_at=facts.occurred_at,
        channel_id=reservation.channel_id,
        body=body,
    )


def _location(payload: bytes, facts: EventFacts) -> DomainChange:
    location = inventory_events.LocationUpserted.FromString(payload).location
    return DomainChange(
        kind=ChangeKind.LOCATION,
        entity_key=entity_key(ChangeKind.LOCATION, location.location_id),
        version=facts.version,
        occurred_at=facts.occurred_at,
        location_id=location.location_id,
        region_id=location.region_id,
        body=changes_pb2.LocationUpdate(
            location_id=location.location_id, active=location.active, time_zone=location.time_zone
        ),
    )


def _promotion(payload: bytes, facts: EventFacts) -> DomainChange:
    event = promotion_events.PromotionStateChanged.FromString(payload)
    start, end = _absolute(event.window)
    change = promotion_events.PromotionStateChange.Name(event.change).removeprefix("PROMOTION_STATE_CHANGE_")
    return DomainChange(
        kind=ChangeKind.PROMOTION,
        entity_key=entity_key(ChangeKind.PROMOTION, facts.aggregate_key),
        version=facts.version,
        occurred_at=facts.occurred_at,
        effective_from=start,
        effective_until=end,
        sku=event.sku or None,
        location_id=event.location_id or None,
        channel_id=event.channel_id or None,
        # A campaign-wide scope concerns the campaign's channels only (empty: every channel).
        channel_ids=tuple(event.campaign_channel_ids),
        body=changes_pb2.PromotionUpdate(
            promotion_id=",".join(event.promotion_ids) or event.campaign_id,
            scope=facts.aggregate_key,
            state=change,
            skus=[event.sku] if event.sku else [],
        ),
    )


# Drafts, submissions and approvals are not offers: channels hear of a campaign once it is launched.
_LAUNCHED = frozenset(
    {
        campaign_pb2.CAMPAIGN_STATE_SCHEDULED,
        campaign_pb2.CAMPAIGN_STATE_ACTIVE,
        campaign_pb2.CAMPAIGN_STATE_ENDED,
        campaign_pb2.CAMPAIGN_STATE_ROLLED_BACK,
    }
)


def _campaign(payload: bytes, facts: EventFacts) -> DomainChange | None:
    campaign = promotion_events.CampaignChanged.FromString(payload).campaign
    if campaign.state not in _LAUNCHED:
        return None
    start, end = _absolute(campaign.window)
    state = campaign_pb2.CampaignState.Name(campaign.state).removeprefix("CAMPAIGN_STATE_")
    return DomainChange(
        kind=ChangeKind.CAMPAIGN,
        entity_key=entity_key(ChangeKind.CAMPAIGN, campaign.campaign_id),
        version=facts.version,
        occurred_at=facts.occurred_at,
        effective_from=start,
        effective_until=end,
        body=changes_pb2.CampaignUpdate(campaign_id=campaign.campaign_id, state=state),
        # A campaign names its channels; an empty list means every channel.
        channel_ids=tuple(campaign.channel_ids),
        targeting=LocationTargeting(
            location_ids=frozenset(campaign.location_ids),
            region_ids=frozenset(campaign.region_ids),
            excluded_location_ids=frozenset(campaign.excluded_location_ids),
            excluded_region_ids=frozenset(campaign.excluded_region_ids),
        ),
    )


_DECODERS: dict[str, Callable[[bytes, EventFacts], DomainChange | None]] = {
    "retail.pricing.v1.PriceChanged": _price,
    "retail.pricing.v1.ProductUpserted": _product,
    "retail.inventory.v1.AvailabilityChanged": _availability,
    "retail.inventory.v1.ReservationChanged": _reservation,
    "retail.inventory.v1.LocationUpserted": _location,
    "retail.promotion.v1.PromotionStateChanged": _promotion,
    "retail.promotion.v1.CampaignChanged": _campaign,
}

CONSUMED_EVENT_TYPES = frozenset(_DECODERS)


def decode_event(event_type: str, payload: bytes, facts: EventFacts) -> DomainChange | None:
    """The DomainChange of a consumed event; None for event types the gateway does not consume (and for
    campaigns not launched yet).
    Raises google.protobuf.message.DecodeError on a corrupt payload (the consumer dead-letters it)."""
    decoder = _DECODERS.get(event_type)
    return None if decoder is None else decoder(payload, facts)
