"""How each reward changes prices. Line rewards work on unit-price buckets so compounding after a
buy-X-get-Y (which discounts only some units of a line) stays exact; cart rewards on a subtotal."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from retail_promotion.domain.model import (
    AmountOff,
    BuyXGetY,
    FixedPrice,
    PercentOff,
    Reward,
    TieredSpend,
)
from retail_promotion.domain.money import ZERO

__all__ = ["Buckets", "LineKey", "apply_line_reward", "cart_discount", "total"]

HUNDRED = Decimal(100)
LineKey = tuple[str, int, Decimal]  # (sku, quantity, unit price): order-independent tie-break
# A line's units as [unit price, count] pairs (full precision).
Buckets = list[tuple[Decimal, int]]


def total(buckets: Buckets) -> Decimal:
    return sum((price * count for price, count in buckets), ZERO)


def _per_unit(buckets: Buckets, reward: Reward) -> Buckets:
    out: Buckets = []
    for price, count in buckets:
        if isinstance(reward, PercentOff):
            new = price - price * reward.percent / HUNDRED
        elif isinstance(reward, AmountOff):
            new = price - min(reward.amount, price)
        elif isinstance(reward, FixedPrice):
            new = min(price, reward.price)
        else:  # not a per-unit reward
            new = price
        out.append((max(new, ZERO), count))
    return out


def _buy_x_get_y(
    lines: Sequence[tuple[LineKey, Buckets]], reward: BuyXGetY
) -> tuple[list[Buckets], list[int]]:
    """Discount the cheapest units of the pool: per (buy + get) units, `get` of them.

    `lines` are (tie-break key, buckets); units are ranked by (price, key) so the result does not depend
    on the order of the lines.
    """
    pool = sum(count for _, buckets in lines for _, count in buckets)
    free = (pool // (reward.buy + reward.get)) * reward.get
    ranked = sorted(
        (price, key, pos, bucket_pos)
        for pos, (key, buckets) in enumerate(lines)
        for bucket_pos, (price, _) in enumerate(buckets)
    )
    taken: dict[tuple[int, int], int] = {}
    for _, _, pos, bucket_pos in ranked:
        if free == 0:
            break
        n = min(free, lines[pos][1][bucket_pos][1])
        taken[(pos, bucket_pos)] = n
        free -= n
    out: list[Buckets] = []
    touched = [0] * len(lines)
    factor = (HUNDRED - reward.percent) / HUNDRED
    for pos, (_, buckets) in enumerate(lines):
        new: Buckets = []
        for bucket_pos, (price, count) in enumerate(buckets):
            n = taken.get((pos, bucket_pos), 0)
            if n:
                new.append((price * factor, n))
                touched[pos] += n
            if count - n:
                new.append((price, count - n))
        out.append(new)
    return out, touched


def apply_line_reward(
    reward: Reward, lines: Sequence[tuple[LineKey, Buckets]]
) -> tuple[list[Buckets], list[int]]:
    """New buckets per line and the units the reward touched per line."""
    if isinstance(reward, BuyXGetY):
        return _buy_x_get_y(lines, reward)
    new = [_per_unit(buckets, reward) for _, buckets in lines]
    units = [sum(c for _, c in b) for _, b in lines]
    return new, units


def cart_discount(reward: Reward, subtotal: Decimal) -> Decimal:
    """Unrounded discount of a cart reward on an eligible subtotal (never above it)."""
    if subtotal <= 0:
        return ZERO
    if isinstance(reward, PercentOff):
        value = subtotal * reward.percent / HUNDRED
    elif isinstance(reward, AmountOff):
        value = reward.amount
    elif isinstance(reward, TieredSpend):
        reached = [t for t in reward.tiers if t.min_spend <= subtotal]
        if not reached:
            return ZERO
        tier = max(reached, key=lambda t: t.min_spend)
        value = subtotal * tier.percent / HUNDRED if tier.percent is not None else tier.amount or ZERO
    else:
        value = ZERO
    return min(value, subtotal)
