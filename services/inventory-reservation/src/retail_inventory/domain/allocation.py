"""Planning a reservation: which units of which SKU at which location (pure).

Explicit-location lines take their location. Region lines pick among candidate locations (active,
serving the channel) by strategy: LOCATION_PRIORITY (lowest priority number, then location_id) or
MOST_STOCK (most available-to-sell, then location_id). Without split, the first location in that order
that can cover the whole line takes it; with split, locations are taken in that order until covered.
Lines are planned in request order, explicit lines first, each seeing what earlier lines consumed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Allocation",
    "AllocationStrategy",
    "Candidate",
    "OutOfStockError",
    "RequestLine",
    "allocate",
    "plan_reservation",
]


class AllocationStrategy(enum.StrEnum):
    LOCATION_PRIORITY = "LOCATION_PRIORITY"
    MOST_STOCK = "MOST_STOCK"


@dataclass(frozen=True, slots=True)
class Candidate:
    location_id: str
    priority: int
    available: int


@dataclass(frozen=True, slots=True)
class RequestLine:
    sku: str
    quantity: int
    location_id: str | None = None
    region_id: str | None = None
    strategy: AllocationStrategy = AllocationStrategy.LOCATION_PRIORITY
    allow_split: bool = False


@dataclass(frozen=True, slots=True)
class Allocation:
    request_line_index: int
    sku: str
    location_id: str
    quantity: int


class OutOfStockError(Exception):
    def __init__(self, request_line_index: int, sku: str) -> None:
        self.request_line_index = request_line_index
        self.sku = sku
        super().__init__(f"not enough available-to-sell for SKU {sku}")


def _order(candidates: Sequence[Candidate], strategy: AllocationStrategy) -> list[Candidate]:
    if strategy is AllocationStrategy.MOST_STOCK:
        return sorted(candidates, key=lambda c: (-c.available, c.location_id))
    return sorted(candidates, key=lambda c: (c.priority, c.location_id))


def allocate(
    candidates: Sequence[Candidate], quantity: int, strategy: AllocationStrategy, allow_split: bool
) -> list[tuple[str, int]] | None:
    """[(location_id, units)] covering `quantity`, or None if it cannot be covered."""
    ordered = [c for c in _order(candidates, strategy) if c.available > 0]
    if not allow_split:
        for c in ordered:
            if c.available >= quantity:
                return [(c.location_id, quantity)]
        return None
    taken: list[tuple[str, int]] = []
    missing = quantity
    for c in ordered:
        if missing == 0:
            break
        units = min(missing, c.available)
        taken.append((c.location_id, units))
        missing -= units
    return taken if missing == 0 else None


def plan_reservation(
    lines: Sequence[RequestLine],
    available: Mapping[tuple[str, str], int],
    region_candidates: Mapping[tuple[str, str], Sequence[Candidate]],
) -> list[Allocation]:
    """Allocate every line or raise OutOfStockError for the first line that cannot be covered.

    `available[(sku, location)]` is the channel's ATS; `region_candidates[(sku, region)]` the region's
    candidate locations for that SKU (their `available` is ignored in favour of `available`).
    """
    remaining = dict(available)
    allocations: list[Allocation] = []
    order = [i for i, line in enumerate(lines) if line.location_id is not None]
    order += [i for i, line in enumerate(lines) if line.location_id is None]
    for index in order:
        line = lines[index]
        if line.location_id is not None:
            key = (line.sku, line.location_id)
            if remaining.get(key, 0) < line.quantity:
                raise OutOfStockError(index, line.sku)
            remaining[key] -= line.quantity
            allocations.append(Allocation(index, line.sku, line.location_id, line.quantity))
            continue
        assert line.region_id is not None
        candidates = [
            Candidate(c.location_id, c.priority, remaining.get((line.sku, c.location_id), 0))
            for c in region_candidates.get((line.sku, line.region_id), ())
        ]
        picked = allocate(candidates, line.quantity, line.strategy, line.allow_split)
        if picked is None:
            raise OutOfStockError(index, line.sku)
        for location_id, units in picked:
            remaining[(line.sku, location_id)] -= units
            allocations.append(Allocation(index, line.sku, location_id, units))
    allocations.sort(key=lambda a: a.request_line_index)
    return allocations
