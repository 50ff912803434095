"""ValidateCampaign's rules, pure: given what pricing, inventory and the other campaigns say, every
finding with where it is (SKU, channel, location, region), ordered by kind, SKU, channel, location."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from retail_promotion.domain.model import Mode, Promotion

__all__ = ["Facts", "Finding", "FindingKind", "findings"]


class FindingKind(Enum):
    UNKNOWN_SKU = 1
    INACTIVE_SKU = 2
    UNPRICED_SKU = 3
    EXCLUDED_SCOPE = 4
    LOW_STOCK = 5
    CONFLICTING_EXCLUSIVE = 6
    MISSING_BUDGET = 7


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    sku: str = ""
    channel_id: str = ""
    location_id: str = ""
    region_id: str = ""
    promotion_id: str = ""
    message: str = ""

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return (self.kind.value, self.sku, self.channel_id, self.location_id, self.region_id) < (
            other.kind.value,
            other.sku,
            other.channel_id,
            other.location_id,
            other.region_id,
        )


@dataclass(frozen=True)
class Facts:
    """What validation learned from the other services and the database."""

    products: Mapping[str, tuple[bool, bool]]  # sku -> (exists, active)
    priced: Mapping[tuple[str, str], bool]  # (sku, channel) -> has a price
    location_regions: Mapping[str, str]  # targeted location -> region (replica)
    available: Mapping[tuple[str, str, str], int]  # (sku, location, channel) -> ATS
    others: Sequence[Promotion]  # exclusive promotions of other live/approved campaigns


def findings(
    *,
    campaign_id: str,
    channels: Sequence[str],
    regions: Iterable[str],
    locations: Iterable[str],
    excluded_regions: Iterable[str],
    excluded_locations: Iterable[str],
    promotions: Sequence[Promotion],
    min_available: int,
    budget_required: bool,
    has_budget: bool,
    facts: Facts,
) -> list[Finding]:
    out: list[Finding] = []
    skus = sorted({sku for p in promotions for sku in p.eligibility.skus})
    for sku in skus:
        exists, active = facts.products.get(sku, (False, False))
        if not exists:
            out.append(Finding(FindingKind.UNKNOWN_SKU, sku, message="not in the product master"))
            continue
        if not active:
            out.append(Finding(FindingKind.INACTIVE_SKU, sku, message="product is not ACTIVE"))
            continue
        for channel in channels:
            if not facts.priced.get((sku, channel), False):
                out.append(Finding(FindingKind.UNPRICED_SKU, sku, channel, message="no resolvable price"))
    ex_regions, ex_locations = set(excluded_regions), set(excluded_locations)
    for region in sorted(set(regions) & ex_regions):
        out.append(Finding(FindingKind.EXCLUDED_SCOPE, region_id=region, message="region is excluded"))
    for location in sorted(set(locations)):
        region = facts.location_regions.get(location, "")
        if location in ex_locations:
            out.append(
                Finding(FindingKind.EXCLUDED_SCOPE, location_id=location, message="location is excluded")
            )
        elif region in ex_regions:
            out.append(
                Finding(
                    FindingKind.EXCLUDED_SCOPE,
                    location_id=location,
                    region_id=region,
                    message=f"location is in excluded region {region}",
                )
            )
    if min_available > 0:
        for (sku, location, channel), ats in sorted(facts.available.items()):
            if ats < min_available:
                out.append(
                    Finding(
                        FindingKind.LOW_STOCK,
                        sku,
                        channel,
                        location,
                        message=f"available-to-sell {ats} < guardrail minimum {min_available}",
                    )
                )
    mine = [p for p in promotions if p.mode is Mode.EXCLUSIVE]
    for p in mine:
        for other in facts.others:
            if other.campaign.campaign_id == campaign_id or other.mode is not Mode.EXCLUSIVE:
                continue
            shared_channels = sorted(set(channels) & other.campaign.channels)
            shared_skus = sorted(p.eligibility.skus & other.eligibility.skus)
            if (
                not shared_channels
                or not shared_skus
                or not p.campaign.window.overlaps(other.campaign.window)
            ):
                continue
            for sku in shared_skus:
                for channel in shared_channels:
                    out.append(
                        Finding(
                            FindingKind.CONFLICTING_EXCLUSIVE,
                            sku,
                            channel,
                            promotion_id=other.promotion_id,
                            message=f"{p.promotion_id} and {other.promotion_id} of campaign "
                            f"{other.campaign.campaign_id} are both exclusive in overlapping windows",
                        )
                    )
    if budget_required and not has_budget:
        out.append(Finding(FindingKind.MISSING_BUDGET, message="the campaign requires a budget"))
    return sorted(out)
