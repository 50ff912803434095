"""What the gateway projects: one normalized domain change, its entity key, kind and lane."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from retail.channel.v1 import changes_pb2

__all__ = ["Body", "ChangeKind", "DomainChange", "Lane", "LocationTargeting", "entity_key", "lane_of"]


class ChangeKind(enum.StrEnum):
    """Mirrors retail.channel.v1.ChangeKind (value = the suffix of the proto enum name)."""

    PRICE = "PRICE"
    AVAILABILITY = "AVAILABILITY"
    PROMOTION = "PROMOTION"
    CAMPAIGN = "CAMPAIGN"
    PRODUCT = "PRODUCT"
    LOCATION = "LOCATION"
    RESERVATION = "RESERVATION"


Body: TypeAlias = (
    changes_pb2.PriceUpdate
    | changes_pb2.AvailabilityUpdate
    | changes_pb2.PromotionUpdate
    | changes_pb2.CampaignUpdate
    | changes_pb2.ProductUpdate
    | changes_pb2.LocationUpdate
    | changes_pb2.ReservationUpdate
)


class Lane(enum.IntEnum):
    """Delivery lanes; a lower value is always served first."""

    FAST = 1
    BULK = 2


# Price and promotion changes are always FAST; stock follows the channel's stock lane (default BULK).
_ALWAYS_FAST = frozenset({ChangeKind.PRICE, ChangeKind.PROMOTION, ChangeKind.CAMPAIGN})


def lane_of(kind: ChangeKind, stock_lane: Lane = Lane.BULK) -> Lane:
    if kind in _ALWAYS_FAST:
        return Lane.FAST
    if kind is ChangeKind.AVAILABILITY:
        return stock_lane
    return Lane.BULK


def entity_key(kind: ChangeKind, *parts: str) -> str:
    """`<kind>/<part>/...`, parts escaped so "/" inside an id cannot make two entities collide."""
    escaped = (part.replace("%", "%25").replace("/", "%2F") for part in parts)
    return "/".join([kind.value.lower(), *escaped])


@dataclass(frozen=True)
class LocationTargeting:
    """The locations a campaign names: included ones (locations, regions; none of either = everywhere)
    and excluded ones, an exclusion always winning (retail.promotion.v1.Campaign)."""

    location_ids: frozenset[str] = frozenset()
    region_ids: frozenset[str] = frozenset()
    excluded_location_ids: frozenset[str] = frozenset()
    excluded_region_ids: frozenset[str] = frozenset()

    @property
    def everywhere(self) -> bool:
        return not self.location_ids and not self.region_ids


@dataclass(frozen=True)
class DomainChange:
    """A domain event reduced to what projection and payloads need.

    `sku` / `location_id` restrict the change to channels listing the SKU / serving the location
    (None = not restricted by it); `channel_id` / `channel_ids` restrict it to those channels
    (reservations, channel-scoped promotions, campaigns). `body` is the kind's state message;
    `channel_ats` the available-to-sell per channel (the one value that differs per channel).
    `targeting`: a campaign's included / excluded locations (store channels get one entity per targeted
    store); `region_id`: a location change's region (kept for that targeting).
    """

    kind: ChangeKind
    entity_key: str
    version: int
    occurred_at: datetime
    effective_from: datetime | None = None
    effective_until: datetime | None = None
    sku: str | None = None
    skus: tuple[str, ...] = ()
    location_id: str | None = None
    location_ids: tuple[str, ...] = ()
    channel_id: str | None = None
    channel_ids: tuple[str, ...] = ()
    body: Body | None = None
    channel_ats: dict[str, int] = field(default_factory=dict)
    targeting: LocationTargeting | None = None
    region_id: str | None = None
