"""Net / tax / gross of a unit price: full precision, rounded half-even once at the end."""

from __future__ import annotations

import decimal
import functools
from dataclasses import dataclass
from decimal import Decimal

from retail_pricing.domain.model import TaxTreatment
from retail_pricing.domain.money import round_money

__all__ = ["Amounts", "split_tax"]

_CONTEXT = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Amounts:
    """A unit price, each part rounded to the currency's minor unit; gross == net + tax exactly."""

    net: Decimal
    tax: Decimal
    gross: Decimal


@functools.lru_cache(maxsize=65_536)  # pure; prices repeat a lot across SKUs and stores
def split_tax(amount: Decimal, treatment: TaxTreatment, rate: Decimal, currency: str) -> Amounts:
    """Entered amount (gross or net per the list) -> rounded net, tax, gross.

    The side that was entered is kept as entered (rounded); the other side is computed exactly and
    rounded; tax is their difference, so the three always add up.
    """
    one_plus = _CONTEXT.add(Decimal(1), rate)
    if treatment is TaxTreatment.INCLUDED:
        gross = round_money(amount, currency)
        net = round_money(_CONTEXT.divide(amount, one_plus), currency)
    else:
        net = round_money(amount, currency)
        gross = round_money(_CONTEXT.multiply(amount, one_plus), currency)
    return Amounts(net=net, tax=gross - net, gross=gross)
