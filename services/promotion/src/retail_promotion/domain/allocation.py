"""Pro-rata allocation of a cart discount to lines in whole minor units."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal

__all__ = ["allocate"]


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def allocate(units: int, weights: Sequence[Decimal], keys: Sequence[tuple[str, int, Decimal]]) -> list[int]:
    """Split `units` minor units over lines by weight (their current amounts, in minor units).

    Each line gets floor(units * weight / total); the remaining units go to the line with the largest
    weight (ties: smallest key), without exceeding any line's weight (then to the next largest).
    Units that fit nowhere are dropped, so no line ever goes below zero.
    """
    total = sum(weights, Decimal(0))
    if units <= 0 or total <= 0:
        return [0] * len(weights)
    shares = [min(_floor(units * w / total), _floor(w)) for w in weights]
    rest = units - sum(shares)
    order = sorted(range(len(weights)), key=lambda j: (-weights[j], keys[j], j))
    for j in order:
        if rest <= 0:
            break
        give = min(rest, _floor(weights[j] - shares[j]))
        if give > 0:
            shares[j] += give
            rest -= give
    return shares
