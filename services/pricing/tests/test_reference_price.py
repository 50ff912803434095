"""Reference price (EU price-reduction rule) and price history through the Pricer facade."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from retail_pricing.domain.errors import RuleError
from retail_pricing.domain.model import (
    AbsoluteWindow,
    ListKind,
    PriceEntry,
    PriceList,
    PriceQuery,
    TaxTreatment,
)
from retail_pricing.domain.pricer import Pricer, ProductInfo

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
LISTS = {
    "base": PriceList("base", "EUR", ListKind.BASE, TaxTreatment.INCLUDED),
    "markdown": PriceList("markdown", "EUR", ListKind.MARKDOWN, TaxTreatment.INCLUDED),
}
PRODUCT = ProductInfo("SKU", active=True, tax_class="standard")
PRICER = Pricer(LISTS, {}, {("", "standard"): Decimal("0.25")})


def e(entry_id: int, list_id: str, amount: str, start: int, end: int | None = None) -> PriceEntry:
    window = AbsoluteWindow(DAY0 + start * DAY, None if end is None else DAY0 + end * DAY)
    return PriceEntry(entry_id, list_id, "SKU", Decimal(amount), window)


def at(day: float) -> PriceQuery:
    return PriceQuery(sku="SKU", currency="EUR", at=DAY0 + day * DAY)


BASE_100 = e(1, "base", "100.00", 0)
MARKDOWN_80 = e(2, "markdown", "80.00", 30, 37)
MARKDOWN_70 = e(3, "markdown", "70.00", 37)


def test_markdown_after_30_days_at_one_price_reports_that_price() -> None:
    resolved = PRICER.resolve(at(31), PRODUCT, [BASE_100, MARKDOWN_80])
    assert resolved is not None
    assert resolved.amounts.gross == Decimal("80.00")
    assert resolved.effective_since == DAY0 + 30 * DAY
    assert resolved.reference is not None
    assert resolved.reference.gross == Decimal("100.00")
    assert resolved.reference.net == Decimal("80.00")  # 100 / 1.25


def test_second_markdown_a_week_later_reports_lowest_of_prior_30_days() -> None:
    resolved = PRICER.resolve(at(38), PRODUCT, [BASE_100, MARKDOWN_80, MARKDOWN_70])
    assert resolved is not None
    assert resolved.amounts.gross == Decimal("70.00")
    assert resolved.effective_since == DAY0 + 37 * DAY
    assert resolved.reference is not None
    assert resolved.reference.gross == Decimal("80.00")


def test_reference_window_is_the_30_days_before_the_change_only() -> None:
    # 50 for days 0-5, 100 from day 5, markdown 90 from day 40: the 30 days before day 40 start at day 10,
    # so the 50 (days 0-5) is out of range.
    entries = [e(1, "base", "50.00", 0, 5), e(2, "base", "100.00", 5), e(3, "markdown", "90.00", 40)]
    resolved = PRICER.resolve(at(41), PRODUCT, entries)
    assert resolved is not None
    assert resolved.reference is not None
    assert resolved.reference.gross == Decimal("100.00")


def test_same_price_from_another_entry_does_not_restart_effective_since() -> None:
    entries = [e(1, "base", "100.00", 0, 10), e(2, "base", "100.00", 10)]
    resolved = PRICER.resolve(at(20), PRODUCT, entries)
    assert resolved is not None
    assert resolved.effective_since == DAY0
    assert resolved.reference is None  # nothing before the price became effective


def test_inactive_product_is_refused() -> None:
    with pytest.raises(RuleError, match="PRODUCT_INACTIVE"):
        PRICER.resolve(at(1), ProductInfo("SKU", active=False, tax_class="standard"), [BASE_100])


def test_history_periods_between_two_instants() -> None:
    history = PRICER.history(
        at(0), PRODUCT, [BASE_100, MARKDOWN_80, MARKDOWN_70], DAY0 - DAY, DAY0 + 40 * DAY
    )
    summary = [
        (p.period.start, p.period.end, p.amounts.gross if p.amounts else None, p.period.winner is not None)
        for p in history
    ]
    assert summary == [
        (DAY0 - DAY, DAY0, None, False),
        (DAY0, DAY0 + 30 * DAY, Decimal("100.00"), True),
        (DAY0 + 30 * DAY, DAY0 + 37 * DAY, Decimal("80.00"), True),
        (DAY0 + 37 * DAY, DAY0 + 40 * DAY, Decimal("70.00"), True),
    ]
