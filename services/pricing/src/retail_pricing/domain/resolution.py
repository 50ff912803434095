"""Price resolution (DESIGN §6): filters, then precedence. Deterministic and explainable.

Filters, in order (a candidate is removed by the first it fails): list active; currency; scope
(channel, region, location, segment); a local window needs a time zone; instant inside [start, end);
quantity >= min_quantity; within one list only the highest tier reached. Ranking of the rest:
list priority, then scope specificity, then latest start, then lowest entry id.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from retail_pricing.domain.model import AbsoluteWindow, Location, PriceEntry, PriceList, PriceQuery
from retail_pricing.domain.windows import Bounds, bounds, contains

__all__ = [
    "Applicable",
    "Candidate",
    "Outcome",
    "PreparedEntry",
    "Resolution",
    "applicable_entries",
    "applicable_prepared",
    "explain",
    "pick_winner",
    "precedence_key",
    "prepare_entries",
    "query_region",
]


class Outcome(enum.Enum):
    WINNER = "winner"
    LIST_INACTIVE = "list_inactive"
    CURRENCY_MISMATCH = "currency_mismatch"
    CHANNEL_MISMATCH = "channel_mismatch"
    REGION_MISMATCH = "region_mismatch"
    LOCATION_MISMATCH = "location_mismatch"
    SEGMENT_MISMATCH = "segment_mismatch"
    NO_TIME_ZONE = "no_time_zone"
    OUTSIDE_WINDOW = "outside_window"
    BELOW_TIER = "below_tier"
    HIGHER_TIER_APPLIES = "higher_tier_applies"
    LOWER_PRIORITY = "lower_priority"
    LESS_SPECIFIC_SCOPE = "less_specific_scope"
    EARLIER_START = "earlier_start"
    HIGHER_ENTRY_ID = "higher_entry_id"


@dataclass(frozen=True)
class Applicable:
    """An entry that passed the time-independent filters, with its window as instants."""

    entry: PriceEntry
    price_list: PriceList
    bounds: Bounds


@dataclass(frozen=True)
class Candidate:
    entry: PriceEntry
    price_list: PriceList | None
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Resolution:
    candidates: tuple[Candidate, ...]  # by entry id
    winner: Applicable | None


def _scope_outcome(price_list: PriceList, query: PriceQuery, region: str) -> tuple[Outcome, str] | None:
    scope = price_list.scope
    if scope.channel_ids and query.channel_id not in scope.channel_ids:
        return Outcome.CHANNEL_MISMATCH, f"channel {query.channel_id!r} not in {sorted(scope.channel_ids)}"
    if scope.region_ids and region not in scope.region_ids:
        return Outcome.REGION_MISMATCH, f"region {region!r} not in {sorted(scope.region_ids)}"
    if scope.location_ids and query.location_id not in scope.location_ids:
        return Outcome.LOCATION_MISMATCH, f"location {query.location_id!r} not in the list's locations"
    if scope.customer_segment and scope.customer_segment != query.customer_segment:
        return Outcome.SEGMENT_MISMATCH, f"segment {query.customer_segment!r} != {scope.customer_segment!r}"
    return None


def query_region(query: PriceQuery, location: Location | None) -> str:
    """The request's region: its location's (from the replica) when a location is given."""
    if query.location_id:
        return location.region_id if location is not None else ""
    return query.region_id


def applicable_entries(
    query: PriceQuery,
    entries: Iterable[PriceEntry],
    lists: Mapping[str, PriceList],
    location: Location | None,
    removed: list[Candidate] | None = None,
) -> list[Applicable]:
    """Apply the filters that do not depend on the instant or the quantity (list, currency, scope,
    time zone). Removed candidates are appended to `removed` when given."""
    region = query_region(query, location)
    time_zone = location.time_zone if location is not None and query.location_id else None
    kept: list[Applicable] = []
    for entry in entries:
        price_list = lists.get(entry.price_list_id)
        outcome: tuple[Outcome, str] | None
        if price_list is None or not price_list.active:
            outcome = Outcome.LIST_INACTIVE, "list is not active"
        elif price_list.currency != query.currency:
            outcome = Outcome.CURRENCY_MISMATCH, f"list currency {price_list.currency}"
        else:
            outcome = _scope_outcome(price_list, query, region)
        entry_bounds = None
        if outcome is None:
            entry_bounds = bounds(entry.window, time_zone)
            if entry_bounds is None:
                outcome = Outcome.NO_TIME_ZONE, "local window needs a location with a time zone"
        if outcome is not None or entry_bounds is None or price_list is None:
            if removed is not None and outcome is not None:
                removed.append(Candidate(entry, price_list, outcome[0], outcome[1]))
            continue
        kept.append(Applicable(entry, price_list, entry_bounds))
    return kept


# An entry of a usable (known, active) list, prepared once per configuration snapshot: its list, whether
# the list has any scope dimension, and for an absolute window its Applicable (the same for every query).
PreparedEntry = tuple[PriceEntry, PriceList, bool, Applicable | None]


def prepare_entries(
    entries: Iterable[PriceEntry], lists: Mapping[str, PriceList]
) -> tuple[PreparedEntry, ...]:
    """The query-independent part of `applicable_entries`: entries of missing or inactive lists dropped."""
    prepared: list[PreparedEntry] = []
    for entry in entries:
        price_list = lists.get(entry.price_list_id)
        if price_list is None or not price_list.active:
            continue
        s = price_list.scope
        scoped = bool(s.channel_ids or s.region_ids or s.location_ids or s.customer_segment)
        window = entry.window
        absolute = (
            Applicable(entry, price_list, (window.start, window.end))
            if isinstance(window, AbsoluteWindow)
            else None
        )
        prepared.append((entry, price_list, scoped, absolute))
    return tuple(prepared)


def applicable_prepared(
    query: PriceQuery, prepared: Iterable[PreparedEntry], location: Location | None
) -> list[Applicable]:
    """`applicable_entries` over prepared entries (the hot path): the same filters, the same order."""
    region = query_region(query, location)
    time_zone = location.time_zone if location is not None and query.location_id else None
    currency = query.currency
    kept: list[Applicable] = []
    for entry, price_list, scoped, absolute in prepared:
        if price_list.currency != currency or (
            scoped and _scope_outcome(price_list, query, region) is not None
        ):
            continue
        if absolute is not None:
            kept.append(absolute)
            continue
        entry_bounds = bounds(entry.window, time_zone)
        if entry_bounds is not None:
            kept.append(Applicable(entry, price_list, entry_bounds))
    return kept


def precedence_key(item: Applicable) -> tuple[int, tuple[int, int], datetime, int]:
    """Larger is better: priority, specificity, latest start, then lowest entry id."""
    return (
        item.price_list.effective_priority,
        item.price_list.scope.specificity,
        item.bounds[0],
        -item.entry.entry_id,
    )


def _in_effect(items: Sequence[Applicable], at: datetime, quantity: int) -> list[Applicable]:
    """Candidates inside their window and tier, keeping only the highest tier reached per list."""
    fitting = [i for i in items if contains(i.bounds, at) and i.entry.min_quantity <= quantity]
    top_tier: dict[str, int] = {}
    for item in fitting:
        list_id = item.entry.price_list_id
        top_tier[list_id] = max(top_tier.get(list_id, 0), item.entry.min_quantity)
    return [i for i in fitting if i.entry.min_quantity == top_tier[i.entry.price_list_id]]


def pick_winner(items: Sequence[Applicable], at: datetime, quantity: int) -> Applicable | None:
    """The winning applicable entry at an instant for a quantity (the hot path: no explanation)."""
    if len(items) == 1:  # the common case: a lone candidate wins if it is in effect
        item = items[0]
        return item if contains(item.bounds, at) and item.entry.min_quantity <= quantity else None
    remaining = _in_effect(items, at, quantity)
    return max(remaining, key=precedence_key) if remaining else None


def _ranking_outcome(loser: Applicable, winner: Applicable) -> tuple[Outcome, str]:
    lp, wp = loser.price_list.effective_priority, winner.price_list.effective_priority
    if lp != wp:
        return Outcome.LOWER_PRIORITY, f"priority {lp} < {wp} of entry {winner.entry.entry_id}"
    ls, ws = loser.price_list.scope.specificity, winner.price_list.scope.specificity
    if ls != ws:
        return (
            Outcome.LESS_SPECIFIC_SCOPE,
            f"scope {ls} less specific than {ws} of entry {winner.entry.entry_id}",
        )
    if loser.bounds[0] != winner.bounds[0]:
        return (
            Outcome.EARLIER_START,
            f"starts {loser.bounds[0].isoformat()}, before entry {winner.entry.entry_id}",
        )
    return Outcome.HIGHER_ENTRY_ID, f"entry id above {winner.entry.entry_id}"


def explain(
    query: PriceQuery,
    entries: Iterable[PriceEntry],
    lists: Mapping[str, PriceList],
    location: Location | None,
) -> Resolution:
    """Every entry of the SKU with the first rule that removed it, and the winner."""
    candidates: list[Candidate] = []
    items = applicable_entries(query, entries, lists, location, removed=candidates)
    dated: list[Applicable] = []
    for item in items:
        if not contains(item.bounds, query.at):
            candidates.append(
                Candidate(item.entry, item.price_list, Outcome.OUTSIDE_WINDOW, "outside window")
            )
        elif item.entry.min_quantity > query.quantity:
            detail = f"quantity {query.quantity} < {item.entry.min_quantity}"
            candidates.append(Candidate(item.entry, item.price_list, Outcome.BELOW_TIER, detail))
        else:
            dated.append(item)
    remaining = _in_effect(dated, query.at, query.quantity)
    kept_ids = {i.entry.entry_id for i in remaining}
    for item in dated:
        if item.entry.entry_id not in kept_ids:
            candidates.append(
                Candidate(item.entry, item.price_list, Outcome.HIGHER_TIER_APPLIES, "a higher tier applies")
            )
    winner = max(remaining, key=precedence_key) if remaining else None
    for item in remaining:
        if item is winner:
            candidates.append(Candidate(item.entry, item.price_list, Outcome.WINNER))
        else:
            assert winner is not None
            outcome, detail = _ranking_outcome(item, winner)
            candidates.append(Candidate(item.entry, item.price_list, outcome, detail))
    candidates.sort(key=lambda c: c.entry.entry_id)
    return Resolution(tuple(candidates), winner)
