"""Net/tax/gross with half-even rounding to the ISO 4217 minor unit, once at the end."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retail_pricing.domain.model import TaxTreatment
from retail_pricing.domain.money import from_units_nanos, is_currency, minor_unit, round_money, to_units_nanos
from retail_pricing.domain.tax import split_tax

D = Decimal


@pytest.mark.parametrize(
    ("amount", "treatment", "rate", "currency", "net", "tax", "gross"),
    [
        ("9.99", TaxTreatment.INCLUDED, "0.19", "EUR", "8.39", "1.60", "9.99"),
        ("10.00", TaxTreatment.EXCLUDED, "0.19", "EUR", "10.00", "1.90", "11.90"),
        ("1000", TaxTreatment.INCLUDED, "0.10", "JPY", "909", "91", "1000"),
        ("1.000", TaxTreatment.EXCLUDED, "0.05", "BHD", "1.000", "0.050", "1.050"),
        # half-even: 0.125 -> 0.12, 0.135 -> 0.14 (not half-up)
        ("0.125", TaxTreatment.EXCLUDED, "0", "EUR", "0.12", "0.00", "0.12"),
        ("0.135", TaxTreatment.EXCLUDED, "0", "EUR", "0.14", "0.00", "0.14"),
        # rounded at the end: 1.005 net * 1.2 = 1.206 -> 1.21 (rounding the net first would give 1.20)
        ("1.005", TaxTreatment.EXCLUDED, "0.2", "EUR", "1.00", "0.21", "1.21"),
        ("0", TaxTreatment.INCLUDED, "0.19", "EUR", "0.00", "0.00", "0.00"),
    ],
)
def test_split_tax_golden(amount, treatment, rate, currency, net, tax, gross) -> None:
    result = split_tax(D(amount), treatment, D(rate), currency)
    assert (result.net, result.tax, result.gross) == (D(net), D(tax), D(gross))
    assert str(result.gross) == gross  # the exponent is the currency's minor unit


@given(
    st.decimals(min_value=0, max_value=10**6, places=4),
    st.sampled_from(list(TaxTreatment)),
    st.decimals(min_value=0, max_value=1, places=3),
    st.sampled_from(["EUR", "JPY", "BHD"]),
)
def test_split_tax_always_adds_up_and_is_rounded(amount, treatment, rate, currency) -> None:
    result = split_tax(amount, treatment, rate, currency)
    assert result.net + result.tax == result.gross
    assert result.tax >= 0
    for part in (result.net, result.tax, result.gross):
        assert part == round_money(part, currency)


def test_currencies_and_minor_units() -> None:
    assert is_currency("EUR")
    assert not is_currency("EURO")
    assert not is_currency("eur")
    assert (minor_unit("EUR"), minor_unit("JPY"), minor_unit("KWD")) == (2, 0, 3)
    with pytest.raises(ValueError, match="XXY"):
        minor_unit("XXY")


@given(st.decimals(min_value=-(10**12), max_value=10**12, places=9))
def test_money_units_nanos_round_trip(amount) -> None:
    units, nanos = to_units_nanos(amount)
    assert from_units_nanos(units, nanos) == amount


def test_money_refuses_sub_nano_precision_and_mixed_signs() -> None:
    with pytest.raises(ValueError, match="9 fraction digits"):
        to_units_nanos(D("0.0000000001"))
    with pytest.raises(ValueError, match="same sign"):
        from_units_nanos(1, -5)
