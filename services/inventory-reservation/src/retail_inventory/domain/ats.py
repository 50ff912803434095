"""Available-to-sell per channel (DESIGN.md §6).

    ATS_c = max(0, on_hand - reserved_total - safety_stock - Σ_{c'≠c} max(0, fence_c' - reserved_c'))

A fence is a fixed number of units or a share of on-hand (basis points, rounded down). A negative
on-hand (a source reported more out than in) counts as zero everywhere. The SQL function
`inv_fence_hold` in the migrations is the same formula; the repository tests hold both to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from retail_inventory.domain.limits import BASIS_POINTS

__all__ = ["AtsBreakdown", "Fence", "Position", "ats", "fence_hold"]


@dataclass(frozen=True, slots=True)
class Fence:
    """Units kept for one channel: exactly one of `fixed` and `share_bp` is set."""

    fixed: int | None = None
    share_bp: int | None = None

    def __post_init__(self) -> None:
        if (self.fixed is None) == (self.share_bp is None):
            raise ValueError("a fence is either fixed or a share")
        if self.fixed is not None and self.fixed < 0:
            raise ValueError("fixed fence must be >= 0")
        if self.share_bp is not None and not 0 <= self.share_bp <= BASIS_POINTS:
            raise ValueError("share must be 0..10000 basis points")

    def units(self, on_hand: int) -> int:
        if self.fixed is not None:
            return self.fixed
        assert self.share_bp is not None
        return max(0, on_hand) * self.share_bp // BASIS_POINTS


@dataclass(frozen=True, slots=True)
class Position:
    """One SKU at one location, as far as availability is concerned."""

    on_hand: int
    reserved_total: int = 0
    safety_stock: int = 0
    fences: Mapping[str, Fence] = field(default_factory=dict)
    channel_reserved: Mapping[str, int] = field(default_factory=dict)

    def reserved_by(self, channel: str) -> int:
        return self.channel_reserved.get(channel, 0)


@dataclass(frozen=True, slots=True)
class AtsBreakdown:
    available_to_sell: int
    fenced_for_other_channels: int
    channel_fence: int
    channel_reserved: int


def fence_hold(position: Position, *, exclude: str | None) -> int:
    """Units fenced for channels other than `exclude` and not yet reserved by them."""
    return sum(
        max(0, fence.units(position.on_hand) - position.reserved_by(channel))
        for channel, fence in position.fences.items()
        if channel != exclude
    )


def ats(position: Position, channel: str) -> AtsBreakdown:
    others = fence_hold(position, exclude=channel)
    own = position.fences.get(channel)
    value = max(0, position.on_hand - position.reserved_total - position.safety_stock - others)
    return AtsBreakdown(
        available_to_sell=value,
        fenced_for_other_channels=others,
        channel_fence=own.units(position.on_hand) if own else 0,
        channel_reserved=position.reserved_by(channel),
    )
