"""Price over time for one scope: periods of constant price, when the current price became effective,
and the reference price (lowest effective price in the 30 days before that).

A price depends on the winning entry and on the tax rate in effect at the instant (effective-dated
rates), so `PriceOf` takes the instant, and callers add the rate changes to the breakpoints."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from retail_pricing.domain.resolution import Applicable, pick_winner
from retail_pricing.domain.tax import Amounts

__all__ = [
    "REFERENCE_PERIOD",
    "Period",
    "breakpoints",
    "effective_since",
    "periods",
    "reference_price",
]

REFERENCE_PERIOD = timedelta(days=30)
_JUST_BEFORE = timedelta(microseconds=1)  # instants are microsecond-precise (datetime, Postgres)

PriceOf = Callable[[Applicable, datetime], Amounts]


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    winner: Applicable | None


def breakpoints(items: Sequence[Applicable], extra: Sequence[datetime] = ()) -> list[datetime]:
    """Every instant at which some candidate's window starts or ends (and the `extra` instants, such
    as tax rate changes), ascending."""
    points: set[datetime] = set(extra)
    for item in items:
        points.add(item.bounds[0])
        if item.bounds[1] is not None:
            points.add(item.bounds[1])
    return sorted(points)


def periods(
    items: Sequence[Applicable],
    quantity: int,
    start: datetime,
    end: datetime,
    price_of: PriceOf | None = None,
    points: Sequence[datetime] | None = None,
) -> list[Period]:
    """[start, end) cut into periods with one winner each (adjacent periods of one entry merged, unless
    `price_of` prices them differently, e.g. across a tax rate change in `points`)."""
    cuts = [start, *(p for p in (breakpoints(items) if points is None else points) if start < p < end), end]
    result: list[Period] = []
    for lo, hi in itertools.pairwise(cuts):
        winner = pick_winner(items, lo, quantity)
        previous = result[-1] if result else None
        same = previous is not None and (
            (previous.winner is None and winner is None)
            or (
                previous.winner is not None
                and winner is not None
                and previous.winner.entry.entry_id == winner.entry.entry_id
                and (price_of is None or price_of(previous.winner, previous.start) == price_of(winner, lo))
            )
        )
        if previous is not None and same:
            result[-1] = Period(previous.start, hi, previous.winner)
        else:
            result.append(Period(lo, hi, winner))
    return result


def effective_since(
    items: Sequence[Applicable],
    quantity: int,
    at: datetime,
    price_of: PriceOf,
    points: Sequence[datetime] | None = None,
) -> datetime | None:
    """Start of the uninterrupted period ending at `at` during which the price had its value at `at`.
    `points` are the breakpoints of `items` when the caller has them already."""
    current = pick_winner(items, at, quantity)
    if current is None:
        return None
    points = breakpoints(items) if points is None else points
    if len(items) == 1 and not any(current.bounds[0] < p <= at for p in points):
        return current.bounds[0]  # the only candidate, at one rate since its start
    current_price = price_of(current, at)
    earlier = [p for p in points if p <= at]
    for point in reversed(earlier):
        before = pick_winner(items, point - _JUST_BEFORE, quantity)
        if before is None or price_of(before, point - _JUST_BEFORE) != current_price:
            return point
    return earlier[0] if earlier else None


def reference_price(
    items: Sequence[Applicable],
    quantity: int,
    since: datetime,
    price_of: PriceOf,
    points: Sequence[datetime] | None = None,
) -> Amounts | None:
    """The lowest price (by gross) effective during [since - 30 days, since); None if there was none."""
    if all(item.bounds[0] >= since for item in items):  # nothing could apply before `since`
        return None
    start = since - REFERENCE_PERIOD
    points = [start, *(p for p in (breakpoints(items) if points is None else points) if start < p < since)]
    winners = ((p, pick_winner(items, p, quantity)) for p in points)
    prices = [price_of(w, p) for p, w in winners if w is not None]
    return min(prices, key=lambda a: a.gross) if prices else None
