"""The resolution facade: one SKU's entries + lists + locations + tax rates -> a resolved price."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from retail_pricing.domain.errors import RuleError
from retail_pricing.domain.history import Period, breakpoints, effective_since, periods, reference_price
from retail_pricing.domain.model import Location, PriceEntry, PriceList, PriceQuery
from retail_pricing.domain.resolution import (
    Applicable,
    Resolution,
    applicable_entries,
    explain,
    pick_winner,
    query_region,
)
from retail_pricing.domain.tax import Amounts, split_tax

__all__ = ["PricedPeriod", "Pricer", "ProductInfo", "Resolved", "tax_rate_for"]


@dataclass(frozen=True)
class ProductInfo:
    sku: str
    active: bool
    tax_class: str


@dataclass(frozen=True)
class Resolved:
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


def tax_rate_for(rates: Mapping[tuple[str, str], Decimal], region: str, tax_class: str) -> Decimal:
    """The rate of (region, tax class), else the default (empty region) of the class, else 0."""
    rate = rates.get((region, tax_class))
    if rate is None:
        rate = rates.get(("", tax_class), Decimal(0))
    return rate


class Pricer:
    """Stateless over its inputs; the caller supplies a consistent snapshot."""

    def __init__(
        self,
        lists: Mapping[str, PriceList],
        locations: Mapping[str, Location],
        tax_rates: Mapping[tuple[str, str], Decimal],
    ) -> None:
        self.lists = lists
        self.locations = locations
        self.tax_rates = tax_rates

    def _location(self, query: PriceQuery) -> Location | None:
        return self.locations.get(query.location_id) if query.location_id else None

    def tax_rate(self, query: PriceQuery, product: ProductInfo) -> Decimal:
        return tax_rate_for(self.tax_rates, query_region(query, self._location(query)), product.tax_class)

    def _check(self, product: ProductInfo) -> None:
        if not product.active:
            raise RuleError("PRODUCT_INACTIVE", product.sku, "the product is not active")

    def _price_of(self, query: PriceQuery, rate: Decimal) -> _PriceOf:
        return _PriceOf(query.currency, rate)

    def resolve(
        self, query: PriceQuery, product: ProductInfo, entries: Sequence[PriceEntry]
    ) -> Resolved | None:
        self._check(product)
        items = applicable_entries(query, entries, self.lists, self._location(query))
        winner = pick_winner(items, query.at, query.quantity)
        if winner is None:
            return None
        rate = self.tax_rate(query, product)
        price_of = self._price_of(query, rate)
        points = breakpoints(items)
        since = effective_since(items, query.quantity, query.at, price_of, points)
        assert since is not None
        reference = reference_price(items, query.quantity, since, price_of, points)
        return Resolved(query, winner, price_of(winner), rate, since, reference)

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
        price_of = self._price_of(query, self.tax_rate(query, product))
        return [
            PricedPeriod(p, None if p.winner is None else price_of(p.winner))
            for p in periods(items, query.quantity, start, end)
        ]


@dataclass(frozen=True)
class _PriceOf:
    currency: str
    rate: Decimal

    def __call__(self, item: Applicable) -> Amounts:
        return split_tax(item.entry.amount, item.price_list.tax_treatment, self.rate, self.currency)
