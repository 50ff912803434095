"""The resolution facade: one SKU's entries + lists + locations + tax rates -> a resolved price.

Tax rates are effective-dated: every amount uses the rate in effect at its own instant, and the rate's
changes are breakpoints of the price history like entry windows are."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from retail_pricing.domain.errors import RuleError
from retail_pricing.domain.history import Period, breakpoints, effective_since, periods, reference_price
from retail_pricing.domain.model import Location, PriceEntry, PriceList, PriceQuery
from retail_pricing.domain.resolution import (
    Applicable,
    PreparedEntry,
    Resolution,
    applicable_entries,
    applicable_prepared,
    explain,
    pick_winner,
    prepare_entries,
    query_region,
)
from retail_pricing.domain.tax import Amounts, split_tax
from retail_pricing.domain.tax_rates import RateTimeline, TaxRates

__all__ = ["PricedPeriod", "Pricer", "ProductInfo", "Resolved"]

_PREPARED_BOUND = 250_000  # SKUs whose prepared entries a Pricer keeps (cleared wholesale beyond)


@dataclass(frozen=True)
class ProductInfo:
    sku: str
    active: bool
    tax_class: str


class Resolved(NamedTuple):  # a tuple: built once per resolved query, several times cheaper than a dataclass
    query: PriceQuery
    winner: Applicable
    amounts: Amounts
    tax_rate: Decimal
    effective_since: datetime
    reference: Amounts | None


@dataclass(frozen=True)
class PricedPeriod:
    period: Period
    amounts: Amounts | None


class Pricer:
    """Stateless over its inputs; the caller supplies a consistent snapshot."""

    def __init__(
        self,
        lists: Mapping[str, PriceList],
        locations: Mapping[str, Location],
        tax_rates: TaxRates | Mapping[tuple[str, str], Decimal],
    ) -> None:
        """`tax_rates`: the history, or plain current rates (each then in effect at every instant)."""
        self.lists = lists
        self.locations = locations
        self.tax_rates = tax_rates if isinstance(tax_rates, TaxRates) else TaxRates.constant(tax_rates)
        # Prepared entries per SKU entry tuple (the catalog's, immutable), keyed by identity and holding
        # the tuple itself so a recycled id is never confused with it. Valid for this Pricer's lists.
        self._prepared: dict[int, tuple[Sequence[PriceEntry], tuple[PreparedEntry, ...]]] = {}

    def _prepare(self, entries: Sequence[PriceEntry]) -> tuple[PreparedEntry, ...]:
        if type(entries) is not tuple:  # a mutable sequence may change under its identity
            return prepare_entries(entries, self.lists)
        hit = self._prepared.get(id(entries))
        if hit is not None and hit[0] is entries:
            return hit[1]
        if len(self._prepared) >= _PREPARED_BOUND:
            self._prepared.clear()
        prepared = prepare_entries(entries, self.lists)
        self._prepared[id(entries)] = (entries, prepared)
        return prepared

    def _location(self, query: PriceQuery) -> Location | None:
        return self.locations.get(query.location_id) if query.location_id else None

    def _timeline(self, query: PriceQuery, product: ProductInfo) -> RateTimeline:
        return self.tax_rates.timeline(query_region(query, self._location(query)), product.tax_class)

    def tax_rate(self, query: PriceQuery, product: ProductInfo) -> Decimal:
        """The rate applied at the query's instant."""
        return self._timeline(query, product).at(query.at)

    def _check(self, product: ProductInfo) -> None:
        if not product.active:
            raise RuleError("PRODUCT_INACTIVE", product.sku, "the product is not active")

    def resolve(
        self, query: PriceQuery, product: ProductInfo, entries: Sequence[PriceEntry]
    ) -> Resolved | None:
        if not product.active:
            self._check(product)
        location = self.locations.get(query.location_id) if query.location_id else None
        items = applicable_prepared(query, self._prepare(entries), location)
        at = query.at
        winner = pick_winner(items, at, query.quantity)
        if winner is None:
            return None
        timeline = self.tax_rates.timeline(query_region(query, location), product.tax_class)
        start, starts = winner.bounds[0], timeline.starts
        if len(items) == 1 and (len(starts) == 1 or bisect_right(starts, start) == bisect_right(starts, at)):
            # A lone candidate and no rate change since its start: its price has held since then, and
            # nothing applied before (what effective_since / reference_price find, without the search).
            rate = timeline.at(at)
            amounts = split_tax(winner.entry.amount, winner.price_list.tax_treatment, rate, query.currency)
            return Resolved(query, winner, amounts, rate, start, None)
        price_of = _PriceOf(query.currency, timeline)
        points = breakpoints(items, timeline.changes)
        since = effective_since(items, query.quantity, query.at, price_of, points)
        assert since is not None
        reference = reference_price(items, query.quantity, since, price_of, points)
        return Resolved(query, winner, price_of(winner, query.at), timeline.at(query.at), since, reference)

    def explain(
        self, query: PriceQuery, product: ProductInfo, entries: Sequence[PriceEntry]
    ) -> tuple[Resolution, Resolved | None, Decimal]:
        resolution = explain(query, entries, self.lists, self._location(query))
        resolved = self.resolve(query, product, entries)
        return resolution, resolved, self.tax_rate(query, product)

    def history(
        self,
        query: PriceQuery,
        product: ProductInfo,
        entries: Sequence[PriceEntry],
        start: datetime,
        end: datetime,
    ) -> list[PricedPeriod]:
        items = applicable_entries(query, entries, self.lists, self._location(query))
        timeline = self._timeline(query, product)
        price_of = _PriceOf(query.currency, timeline)
        points = breakpoints(items, timeline.changes)
        return [
            PricedPeriod(p, None if p.winner is None else price_of(p.winner, p.start))
            for p in periods(items, query.quantity, start, end, price_of, points)
        ]


@dataclass(frozen=True)
class _PriceOf:
    currency: str
    rates: RateTimeline

    def __call__(self, item: Applicable, at: datetime) -> Amounts:
        rate = self.rates.at(at)
        return split_tax(item.entry.amount, item.price_list.tax_treatment, rate, self.currency)
