"""Low-stock thresholds with hysteresis (pure).

A rule is BELOW once the watched ATS falls under its low mark and stays BELOW until ATS comes back to
its restore mark (>= the low mark); in between, the state does not change. So stock hovering around the
low mark announces one crossing per real crossing. Days of cover use integer arithmetic only:
cover = ats / (units_sold / period_days), so `cover < d` <=> `ats * period_days < d * units_sold`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["AbsoluteRule", "DaysOfCoverRule", "Rule", "ThresholdState", "initial_state", "next_state"]


class ThresholdState(enum.StrEnum):
    ABOVE = "ABOVE"
    BELOW = "BELOW"


@dataclass(frozen=True, slots=True)
class AbsoluteRule:
    below_quantity: int
    restore_quantity: int

    def __post_init__(self) -> None:
        if self.below_quantity < 1 or self.restore_quantity < self.below_quantity:
            raise ValueError("need 1 <= below_quantity <= restore_quantity")

    def is_low(self, ats: int) -> bool:
        return ats < self.below_quantity

    def is_restored(self, ats: int) -> bool:
        return ats >= self.restore_quantity


@dataclass(frozen=True, slots=True)
class DaysOfCoverRule:
    units_sold: int
    period_days: int
    below_days: int
    restore_days: int

    def __post_init__(self) -> None:
        if self.units_sold < 1 or self.period_days < 1:
            raise ValueError("need a positive sales rate")
        if self.below_days < 1 or self.restore_days < self.below_days:
            raise ValueError("need 1 <= below_days <= restore_days")

    def is_low(self, ats: int) -> bool:
        return ats * self.period_days < self.below_days * self.units_sold

    def is_restored(self, ats: int) -> bool:
        return ats * self.period_days >= self.restore_days * self.units_sold


Rule = AbsoluteRule | DaysOfCoverRule


def initial_state(rule: Rule, ats: int) -> ThresholdState:
    return ThresholdState.BELOW if rule.is_low(ats) else ThresholdState.ABOVE


def next_state(rule: Rule, state: ThresholdState, ats: int) -> ThresholdState:
    if state is ThresholdState.ABOVE and rule.is_low(ats):
        return ThresholdState.BELOW
    if state is ThresholdState.BELOW and rule.is_restored(ats):
        return ThresholdState.ABOVE
    return state
