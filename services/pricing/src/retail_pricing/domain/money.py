"""Currencies and rounding: Decimal only, half-even to the ISO 4217 minor unit, once at the end."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["MINOR_UNITS", "from_units_nanos", "is_currency", "minor_unit", "round_money", "to_units_nanos"]

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS = "CLF UYW"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL "
    "GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD "
    "LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN "
    "PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL "
    "THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD YER ZAR ZMW ZWL"
)

#: ISO 4217 minor unit (exponent) of every active currency code.
MINOR_UNITS: dict[str, int] = {
    **{code: 0 for code in _ZERO_DECIMALS.split()},
    **{code: 2 for code in _TWO_DECIMALS.split()},
    **{code: 3 for code in _THREE_DECIMALS.split()},
    **{code: 4 for code in _FOUR_DECIMALS.split()},
}

_NANOS = Decimal(1_000_000_000)


def is_currency(code: str) -> bool:
    return code in MINOR_UNITS


def minor_unit(code: str) -> int:
    try:
        return MINOR_UNITS[code]
    except KeyError:
        raise ValueError(f"unknown ISO 4217 currency {code!r}") from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half-even to the currency's minor unit (the one rounding of a customer-facing amount)."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_EVEN)


def from_units_nanos(units: int, nanos: int) -> Decimal:
    """google.type.Money parts to Decimal (exact). Signs must agree, as the Money contract demands."""
    if not -999_999_999 <= nanos <= 999_999_999:
        raise ValueError("nanos out of range")
    if (units > 0 and nanos < 0) or (units < 0 and nanos > 0):
        raise ValueError("units and nanos must have the same sign")
    return Decimal(units) + Decimal(nanos) / _NANOS


def to_units_nanos(amount: Decimal) -> tuple[int, int]:
    """Decimal to google.type.Money parts; more than 9 fraction digits is an error (never silent)."""
    units = int(amount)  # truncates toward zero, like Money's units
    nanos_exact = (amount - units) * _NANOS
    if nanos_exact != nanos_exact.to_integral_value():
        raise ValueError(f"{amount} has more than 9 fraction digits")
    return units, int(nanos_exact)
