"""Value types of the pricing domain (immutable)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

__all__ = [
    "DEFAULT_PRIORITY",
    "AbsoluteWindow",
    "ListKind",
    "ListScope",
    "LocalWindow",
    "Location",
    "PriceEntry",
    "PriceList",
    "PriceQuery",
    "ScopeLevel",
    "TaxTreatment",
    "Window",
    "checked_query",
]


class ListKind(enum.StrEnum):
    BASE = "base"
    MARKDOWN = "markdown"
    CLEARANCE = "clearance"


#: Priority of a list whose explicit priority is 0 (DESIGN §6: base < markdown < clearance).
DEFAULT_PRIORITY: dict[ListKind, int] = {ListKind.BASE: 100, ListKind.MARKDOWN: 200, ListKind.CLEARANCE: 300}


class TaxTreatment(enum.StrEnum):
    INCLUDED = "included"  # amounts are gross
    EXCLUDED = "excluded"  # amounts are net


class ScopeLevel(enum.IntEnum):
    """Specificity levels of a scope; a higher value is more specific."""

    GLOBAL = 0
    CHANNEL = 1
    REGION = 2
    LOCATION = 3


@dataclass(frozen=True)
class ListScope:
    """Where a list applies. Each non-empty dimension must contain the request's value."""

    channel_ids: frozenset[str] = field(default_factory=frozenset)
    region_ids: frozenset[str] = field(default_factory=frozenset)
    location_ids: frozenset[str] = field(default_factory=frozenset)
    customer_segment: str = ""

    @property
    def level(self) -> ScopeLevel:
        if self.location_ids:
            return ScopeLevel.LOCATION
        if self.region_ids:
            return ScopeLevel.REGION
        if self.channel_ids:
            return ScopeLevel.CHANNEL
        return ScopeLevel.GLOBAL

    @property
    def specificity(self) -> tuple[int, int]:
        """Compare with `>`: level first, then having a segment."""
        return (int(self.level), 1 if self.customer_segment else 0)


@dataclass(frozen=True)
class PriceList:
    price_list_id: str
    currency: str
    kind: ListKind
    tax_treatment: TaxTreatment
    priority: int = 0  # 0 = default of kind
    scope: ListScope = field(default_factory=ListScope)
    active: bool = True

    @property
    def effective_priority(self) -> int:
        return self.priority or DEFAULT_PRIORITY[self.kind]


@dataclass(frozen=True)
class AbsoluteWindow:
    """[start, end) between two UTC instants; end None = open-ended."""

    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise ValueError("absolute window instants must be timezone-aware")


@dataclass(frozen=True)
class LocalWindow:
    """[start, end) in wall-clock time (naive datetimes), applied in each location's time zone."""

    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or (self.end is not None and self.end.tzinfo is not None):
            raise ValueError("local window times must be naive wall-clock times")


Window = AbsoluteWindow | LocalWindow

#: Extremes of UTC offsets in the tz database; used to compare local windows with instants safely.
MAX_UTC_OFFSET = timedelta(hours=14)
MIN_UTC_OFFSET = timedelta(hours=-12)


@dataclass(frozen=True)
class PriceEntry:
    entry_id: int
    price_list_id: str
    sku: str
    amount: Decimal
    window: Window
    min_quantity: int = 1

    def __post_init__(self) -> None:
        if self.min_quantity < 1:
            object.__setattr__(self, "min_quantity", 1)


@dataclass(frozen=True)
class Location:
    """Replica of the inventory service's location: its region and IANA time zone."""

    location_id: str
    region_id: str
    time_zone: str


@dataclass(frozen=True)
class PriceQuery:
    sku: str
    currency: str
    at: datetime
    channel_id: str = ""
    location_id: str = ""
    region_id: str = ""  # used only without a location
    customer_segment: str = ""
    quantity: int = 1

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("query instant must be timezone-aware")
        if self.quantity < 1:
            object.__setattr__(self, "quantity", 1)


_new = object.__new__
_set = object.__setattr__


def checked_query(
    sku: str,
    currency: str,
    at: datetime,
    channel_id: str,
    location_id: str,
    region_id: str,
    customer_segment: str,
    quantity: int,
) -> PriceQuery:
    """A PriceQuery from values the caller has checked (an aware instant, quantity >= 1), equal to the
    one the constructor builds: the resolution hot path builds one per query, and the frozen dataclass's
    __init__ (one object.__setattr__ per field, then __post_init__) costs three times more."""
    query: PriceQuery = _new(PriceQuery)
    _set(
        query,
        "__dict__",
        {
            "sku": sku,
            "currency": currency,
            "at": at,
            "channel_id": channel_id,
            "location_id": location_id,
            "region_id": region_id,
            "customer_segment": customer_segment,
            "quantity": quantity,
        },
    )
    return query
