"""Money on the wire (google.type.Money) <-> Decimal, and the one customer-facing rounding
(half-even to the currency's minor unit; DESIGN §4)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from google.type import money_pb2

__all__ = ["from_money", "round_money", "to_money"]

_NANOS = Decimal(1_000_000_000)
# ISO 4217 exponents that differ from 2 (the rest of the common currencies use 2).
_EXPONENT = {
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "CLP": 0,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}


def from_money(money: money_pb2.Money) -> Decimal:
    return Decimal(money.units) + Decimal(money.nanos) / _NANOS


def to_money(amount: Decimal, currency: str) -> money_pb2.Money:
    units = int(amount)
    nanos = int(((amount - units) * _NANOS).to_integral_value(rounding=ROUND_HALF_EVEN))
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def round_money(amount: Decimal, currency: str) -> Decimal:
    exponent = _EXPONENT.get(currency.upper(), 2)
    return amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_EVEN)
