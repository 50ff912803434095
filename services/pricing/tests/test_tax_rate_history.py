"""Effective-dated tax rates in resolution: hand-written golden tables at instants before, at and after
scheduled changes, with the region default; effective_since, reference price and history across a
rate change (pure domain, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from retail_pricing.domain.model import (
    AbsoluteWindow,
    ListKind,
    Location,
    PriceEntry,
    PriceList,
    PriceQuery,
    TaxTreatment,
)
from retail_pricing.domain.pricer import Pricer, ProductInfo
from retail_pricing.domain.tax_rates import SINCE_ALWAYS, TaxRates

CHANGE = datetime(2027, 1, 1, tzinfo=UTC)  # the VAT change scheduled ahead
R2_OWN = CHANGE + timedelta(days=30)  # region R2 gets its own rate later
DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)

RATES = TaxRates(
    {
        ("", "standard"): [(SINCE_ALWAYS, Decimal("0.19")), (CHANGE, Decimal("0.21"))],
        ("R1", "standard"): [(SINCE_ALWAYS, Decimal("0.10"))],
        ("R2", "standard"): [(R2_OWN, Decimal("0.05"))],
        ("R3", "standard"): [(SINCE_ALWAYS, Decimal("0.19")), (CHANGE, Decimal("0.19"))],  # a no-op
    }
)
LISTS = {
    "gross": PriceList("gross", "EUR", ListKind.BASE, TaxTreatment.INCLUDED),
    "net": PriceList("net", "EUR", ListKind.BASE, TaxTreatment.EXCLUDED),
}
LOCATIONS = {"S1": Location("S1", "R1", "Europe/Berlin"), "S2": Location("S2", "R2", "Europe/Paris")}
PRICER = Pricer(LISTS, LOCATIONS, RATES)
PRODUCT = ProductInfo("SKU", active=True, tax_class="standard")
SINCE = CHANGE - 365 * DAY
GROSS = [PriceEntry(1, "gross", "SKU", Decimal("11.90"), AbsoluteWindow(SINCE))]
NET = [PriceEntry(2, "net", "SKU", Decimal("10.00"), AbsoluteWindow(SINCE))]


def q(at: datetime, *, region: str = "", location: str = "") -> PriceQuery:
    return PriceQuery(sku="SKU", currency="EUR", at=at, region_id=region, location_id=location)


# (case, entries, query, rate, net, tax, gross)
GOLDEN = [
    ("default, just before the change", GROSS, q(CHANGE - TICK), "0.19", "10.00", "1.90", "11.90"),
    ("default, at the change", GROSS, q(CHANGE), "0.21", "9.83", "2.07", "11.90"),
    ("default, a year later", GROSS, q(CHANGE + 365 * DAY), "0.21", "9.83", "2.07", "11.90"),
    ("net list, before", NET, q(CHANGE - DAY), "0.19", "10.00", "1.90", "11.90"),
    ("net list, after", NET, q(CHANGE + DAY), "0.21", "10.00", "2.10", "12.10"),
    ("own rate, unaffected by the default's change", GROSS, q(CHANGE + DAY, region="R1"), "0.10", "10.82",
     "1.08", "11.90"),
    ("store of R1 resolves R1's rate", NET, q(CHANGE - DAY, location="S1"), "0.10", "10.00", "1.00",
     "11.00"),
    ("region whose own rate starts later: default before it", NET, q(R2_OWN - TICK, region="R2"), "0.21",
     "10.00", "2.10", "12.10"),
    ("... and its own rate from its start", NET, q(R2_OWN, location="S2"), "0.05", "10.00", "0.50", "10.50"),
    ("region without rates: the default", NET, q(CHANGE, region="R9"), "0.21", "10.00", "2.10", "12.10"),
    ("unknown tax class: 0", NET, q(CHANGE), None, "10.00", "0.00", "10.00"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "entries", "query", "rate", "net", "tax", "gross"), GOLDEN, ids=[g[0] for g in GOLDEN]
)
def test_golden_resolution_at_instants_around_scheduled_changes(
    case: str,
    entries: list[PriceEntry],
    query: PriceQuery,
    rate: str | None,
    net: str,
    tax: str,
    gross: str,
) -> None:
    product = PRODUCT if rate is not None else ProductInfo("SKU", active=True, tax_class="books")
    resolved = PRICER.resolve(query, product, entries)
    assert resolved is not None
    assert resolved.tax_rate == Decimal(rate or "0")
    assert (resolved.amounts.net, resolved.amounts.tax, resolved.amounts.gross) == (
        Decimal(net),
        Decimal(tax),
        Decimal(gross),
    )


def test_timeline_merges_the_default_and_drops_no_op_changes() -> None:
    assert RATES.timeline("R2", "standard").starts == (SINCE_ALWAYS, CHANGE, R2_OWN)
    assert RATES.timeline("R3", "standard").changes == ()  # 0.19 -> 0.19 moves nothing
    assert RATES.timeline("R1", "standard").changes == ()
    assert TaxRates({}).rate("R1", "standard", CHANGE) == 0


def test_a_rate_change_restarts_effective_since_and_keeps_the_reference_price() -> None:
    # Gross-entered: net and tax move at the change, so the price is "new" from then on; the reference
    # (lowest gross in the 30 days before) is the same gross.
    after = PRICER.resolve(q(CHANGE + 5 * DAY), PRODUCT, GROSS)
    assert after is not None
    assert after.effective_since == CHANGE
    assert after.reference is not None
    assert after.reference.gross == Decimal("11.90")
    assert after.reference.net == Decimal("10.00")  # priced at the rate of its own time
    before = PRICER.resolve(q(CHANGE - 5 * DAY), PRODUCT, GROSS)
    assert before is not None
    assert before.effective_since == SINCE
    assert before.reference is None
    # A region the change does not reach keeps its effective_since.
    own = PRICER.resolve(q(CHANGE + 5 * DAY, region="R1"), PRODUCT, GROSS)
    assert own is not None
    assert own.effective_since == SINCE
    # Net-entered: the gross rises at the change; the reference is the lower gross before it.
    net_after = PRICER.resolve(q(CHANGE + 5 * DAY), PRODUCT, NET)
    assert net_after is not None
    assert net_after.effective_since == CHANGE
    assert net_after.reference is not None
    assert net_after.reference.gross == Decimal("11.90")


def test_history_cuts_a_period_at_the_rate_change_with_each_periods_amounts() -> None:
    periods = PRICER.history(q(CHANGE), PRODUCT, NET, CHANGE - 2 * DAY, CHANGE + 2 * DAY)
    assert [(p.period.start, p.period.end, p.amounts and p.amounts.gross) for p in periods] == [
        (CHANGE - 2 * DAY, CHANGE, Decimal("11.90")),
        (CHANGE, CHANGE + 2 * DAY, Decimal("12.10")),
    ]
    unaffected = PRICER.history(q(CHANGE, region="R1"), PRODUCT, NET, CHANGE - 2 * DAY, CHANGE + 2 * DAY)
    assert len(unaffected) == 1
