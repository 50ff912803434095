"""ResolvedPrice messages from resolutions: answers copied from an earlier identical resolution of the
same winning candidate must still carry each resolution's own amounts, effective-since, reference,
SKU and instant (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from retail.pricing.v1 import resolution_pb2
from retail.pricing.v1.change_sets_pb2 import PriceAmounts
from retail_pricing.convert import fill_resolved
from retail_pricing.domain.model import (
    AbsoluteWindow,
    ListKind,
    ListScope,
    Location,
    PriceEntry,
    PriceList,
    PriceQuery,
    TaxTreatment,
)
from retail_pricing.domain.pricer import Pricer, ProductInfo, Resolved
from retail_pricing.domain.tax import Amounts
from retail_pricing.domain.tax_rates import SINCE_ALWAYS, TaxRates
from retail_pricing.testing import as_decimal

CHANGE = datetime(2027, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
START = CHANGE - 100 * DAY
LISTS = {
    "base": PriceList("base", "EUR", ListKind.BASE, TaxTreatment.INCLUDED),
    "store": PriceList(
        "store",
        "EUR",
        ListKind.MARKDOWN,
        TaxTreatment.INCLUDED,
        scope=ListScope(location_ids=frozenset({"S1"})),
    ),
}
LOCATIONS = {"S1": Location("S1", "R1", "UTC"), "S2": Location("S2", "R1", "UTC")}
RATES = TaxRates({("", "standard"): [(SINCE_ALWAYS, Decimal("0.19")), (CHANGE, Decimal("0.21"))]})
PRICER = Pricer(LISTS, LOCATIONS, RATES)
PRODUCT = ProductInfo("SKU", active=True, tax_class="standard")
ENTRIES = (  # a tuple, as the catalog holds them: the Pricer prepares it once and reuses its candidates
    PriceEntry(1, "base", "SKU", Decimal("11.90"), AbsoluteWindow(START)),
    PriceEntry(2, "store", "SKU", Decimal("9.90"), AbsoluteWindow(CHANGE + 10 * DAY)),
)


def resolve(at: datetime, location: str = "") -> Resolved:
    resolved = PRICER.resolve(PriceQuery("SKU", "EUR", at, location_id=location), PRODUCT, ENTRIES)
    assert resolved is not None
    return resolved


def amounts(message: PriceAmounts) -> Amounts:
    return Amounts(as_decimal(message.net), as_decimal(message.tax), as_decimal(message.gross))


def check(resolved: Resolved) -> None:
    out = resolution_pb2.ResolvedPrice()
    fill_resolved(out, resolved)
    assert out.sku == resolved.query.sku
    assert out.currency_code == "EUR"
    assert out.at_time.ToDatetime(tzinfo=UTC) == resolved.query.at
    assert out.effective_since.ToDatetime(tzinfo=UTC) == resolved.effective_since
    assert out.entry.entry_id == resolved.winner.entry.entry_id
    assert out.price_list.price_list_id == resolved.winner.price_list.price_list_id
    assert Decimal(out.tax_rate.value) == resolved.tax_rate
    assert amounts(out.price) == resolved.amounts
    assert out.HasField("reference_price") == (resolved.reference is not None)
    if resolved.reference is not None:
        assert amounts(out.reference_price) == resolved.reference


def test_one_winner_across_a_rate_change_keeps_each_answer_its_own() -> None:
    before, after = resolve(CHANGE - DAY), resolve(CHANGE + DAY)
    assert before.winner is after.winner  # the same prepared candidate: the copied answer must not leak
    assert (before.effective_since, after.effective_since) == (START, CHANGE)
    assert before.amounts != after.amounts
    assert before.reference is None
    assert after.reference == before.amounts
    for resolved in (before, after, before, resolve(CHANGE - 2 * DAY), after):
        check(resolved)


def test_two_winners_in_two_scopes_keep_their_own_answers() -> None:
    marked = resolve(CHANGE + 20 * DAY, "S1")
    plain = resolve(CHANGE + 20 * DAY, "S2")
    assert (marked.winner.entry.entry_id, plain.winner.entry.entry_id) == (2, 1)
    assert marked.effective_since == CHANGE + 10 * DAY
    assert plain.effective_since == CHANGE
    for resolved in (marked, plain, marked, resolve(CHANGE + 25 * DAY, "S1"), resolve(CHANGE - DAY, "S1")):
        check(resolved)


def test_same_price_and_reference_after_two_interruptions_keeps_each_effective_since() -> None:
    sale = PriceList("sale", "EUR", ListKind.MARKDOWN, TaxTreatment.INCLUDED)
    pricer = Pricer({**LISTS, "sale": sale}, LOCATIONS, RATES)
    first, second = CHANGE + 10 * DAY, CHANGE + 40 * DAY
    entries = (
        ENTRIES[0],
        PriceEntry(3, "sale", "SKU", Decimal("9.90"), AbsoluteWindow(first, first + 5 * DAY)),
        PriceEntry(4, "sale", "SKU", Decimal("9.90"), AbsoluteWindow(second, second + 5 * DAY)),
    )
    answers = [
        pricer.resolve(PriceQuery("SKU", "EUR", at), PRODUCT, entries)
        for at in (first + 7 * DAY, second + 7 * DAY, first + 8 * DAY)
    ]
    since = [a.effective_since if a else None for a in answers]
    assert since == [first + 5 * DAY, second + 5 * DAY, first + 5 * DAY]
    assert len({(id(a.winner), id(a.amounts), id(a.reference)) for a in answers if a}) == 1  # all else alike
    for resolved in answers:
        assert resolved is not None
        check(resolved)
