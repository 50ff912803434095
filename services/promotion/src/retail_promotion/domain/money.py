"""Money helpers: ISO 4217 minor units and half-even rounding at the end of a computation."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from functools import cache

__all__ = ["ZERO", "from_minor", "minor_unit", "round_down", "round_money", "to_minor"]

ZERO = Decimal(0)
# ISO 4217 exponents that are not 2 (the default).
_EXPONENTS = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0,
    "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip


@cache
def minor_unit(currency: str) -> Decimal:
    """The currency's smallest unit: Decimal('0.01') for EUR, Decimal('1') for JPY."""
    return Decimal(1).scaleb(-_EXPONENTS.get(currency, 2))


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_EVEN)


def round_down(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), rounding=ROUND_DOWN)


def to_minor(amount: Decimal, currency: str) -> int:
    """An amount already on the minor-unit grid as an integer count of minor units."""
    return int(amount / minor_unit(currency))


def from_minor(units: int, currency: str) -> Decimal:
    return (Decimal(units) * minor_unit(currency)).quantize(minor_unit(currency))
