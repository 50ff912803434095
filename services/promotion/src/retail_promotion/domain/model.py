"""Value types of the promotion domain: campaigns as the evaluator sees them, promotions, rewards,
eligibility, carts and the product replica. Immutable; money is Decimal in the campaign's currency."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum

from retail_promotion.domain.windows import Window

__all__ = [
    "AmountOff",
    "BuyXGetY",
    "CampaignScope",
    "Cart",
    "Eligibility",
    "FixedPrice",
    "Level",
    "Line",
    "Mode",
    "PercentOff",
    "Product",
    "Promotion",
    "Reward",
    "SpendTier",
    "Suspensions",
    "TieredSpend",
]


class Level(Enum):
    LINE = "LINE"
    CART = "CART"


class Mode(Enum):
    STACKABLE = "STACKABLE"
    EXCLUSIVE = "EXCLUSIVE"


@dataclass(frozen=True, slots=True)
class PercentOff:
    percent: Decimal


@dataclass(frozen=True, slots=True)
class AmountOff:
    amount: Decimal


@dataclass(frozen=True, slots=True)
class FixedPrice:
    price: Decimal


@dataclass(frozen=True, slots=True)
class BuyXGetY:
    buy: int
    get: int
    percent: Decimal = Decimal(100)


@dataclass(frozen=True, slots=True)
class SpendTier:
    min_spend: Decimal
    percent: Decimal | None = None
    amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TieredSpend:
    tiers: tuple[SpendTier, ...]


Reward = PercentOff | AmountOff | FixedPrice | BuyXGetY | TieredSpend


@dataclass(frozen=True, slots=True)
class Eligibility:
    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    attributes: frozenset[tuple[str, str]] = frozenset()
    excluded_skus: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()  # upper-cased public codes
    code_batches: frozenset[str] = frozenset()
    min_quantity: int = 0
    min_amount: Decimal | None = None

    @property
    def needs_code(self) -> bool:
        return bool(self.codes or self.code_batches)

    @property
    def matches_everything(self) -> bool:
        return not (self.skus or self.categories or self.attributes)

    def matches(self, sku: str, product: Product | None) -> bool:
        if sku in self.excluded_skus:
            return False
        if self.matches_everything or sku in self.skus:
            return True
        if product is None:
            return False
        return bool(self.categories & product.categories or self.attributes & product.attributes)


@dataclass(frozen=True, slots=True)
class CampaignScope:
    """What of a campaign the evaluator needs: state, window, where it applies."""

    campaign_id: str
    active: bool
    window: Window
    channels: frozenset[str]
    currency: str = ""
    regions: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    excluded_regions: frozenset[str] = frozenset()
    excluded_locations: frozenset[str] = frozenset()
    budgeted: bool = False  # the campaign has a budget (checked at evaluation, consumed at redemption)


@dataclass(frozen=True, slots=True)
class Promotion:
    promotion_id: str
    campaign: CampaignScope
    level: Level
    reward: Reward
    eligibility: Eligibility = field(default_factory=Eligibility)
    mode: Mode = Mode.STACKABLE
    priority: int = 0
    group: str = ""
    limited: bool = False  # has a budget or a usage limit of its own

    @property
    def order_key(self) -> tuple[int, str]:
        """Stacking order: higher priority first, then lower id."""
        return (-self.priority, self.promotion_id)


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    categories: frozenset[str] = frozenset()
    attributes: frozenset[tuple[str, str]] = frozenset()
    active: bool = True


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class Cart:
    currency: str
    channel: str
    at: datetime
    lines: tuple[Line, ...]
    location_id: str | None = None
    region_id: str | None = None
    time_zone: str | None = None
    segment: str | None = None
    codes: frozenset[str] = frozenset()  # upper-cased public codes entered
    batch_codes: Mapping[str, str] = field(default_factory=dict)  # entered unused code -> batch id


@dataclass(frozen=True, slots=True)
class Suspensions:
    """Suspended scopes per campaign: (channel, location, sku), None = wildcard."""

    scopes: Mapping[str, frozenset[tuple[str | None, str | None, str | None]]] = field(default_factory=dict)

    def campaign_suspended(self, campaign_id: str, channel: str, location: str | None) -> bool:
        if campaign_id not in self.scopes:
            return False
        return any(
            sku is None and ch in (None, channel) and loc in (None, location)
            for ch, loc, sku in self.scopes.get(campaign_id, ())
        )

    def sku_suspended(self, campaign_id: str, channel: str, location: str | None, sku: str) -> bool:
        if campaign_id not in self.scopes:
            return False
        return any(
            s in (None, sku) and ch in (None, channel) and loc in (None, location)
            for ch, loc, s in self.scopes.get(campaign_id, ())
        )
