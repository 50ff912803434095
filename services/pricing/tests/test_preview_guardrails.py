"""Preview diff per SKU and scope, and the guardrails evaluated on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from retail_pricing.domain.change_sets import AddEntry, EndEntry, plan_approval
from retail_pricing.domain.guardrails import GuardrailKind, GuardrailPolicy, ProductLimits, Severity, check
from retail_pricing.domain.model import (
    AbsoluteWindow,
    ListKind,
    ListScope,
    Location,
    PriceEntry,
    PriceList,
    TaxTreatment,
)
from retail_pricing.domain.preview import Probe, preview, probes_for
from retail_pricing.domain.pricer import Pricer, ProductInfo

NOW = datetime(2026, 5, 1, tzinfo=UTC)
LISTS = {
    "base": PriceList("base", "EUR", ListKind.BASE, TaxTreatment.INCLUDED),
    "stores": PriceList(
        "stores",
        "EUR",
        ListKind.MARKDOWN,
        TaxTreatment.INCLUDED,
        scope=ListScope(location_ids=frozenset({"S1", "S2"})),
    ),
}
LOCATIONS = {"S1": Location("S1", "R1", "Europe/Berlin"), "S2": Location("S2", "R1", "Europe/Paris")}
PRICER = Pricer(LISTS, LOCATIONS, {})
PRODUCTS = {"SKU": ProductInfo("SKU", True, "standard")}
BASE_10 = PriceEntry(1, "base", "SKU", Decimal("10.00"), AbsoluteWindow(NOW - timedelta(days=5)))


def test_probes_expand_the_list_scope() -> None:
    assert probes_for(LISTS["stores"]) == [Probe(location_id="S1"), Probe(location_id="S2")]
    assert probes_for(LISTS["base"]) == [Probe()]
    both = PriceList(
        "x",
        "EUR",
        ListKind.BASE,
        TaxTreatment.INCLUDED,
        scope=ListScope(
            channel_ids=frozenset({"web"}), region_ids=frozenset({"R1", "R2"}), customer_segment="gold"
        ),
    )
    assert probes_for(both) == [Probe("web", "R1", "", "gold"), Probe("web", "R2", "", "gold")]


def test_preview_shows_old_to_new_per_location_with_percent() -> None:
    start = NOW + timedelta(days=1)
    plan = plan_approval([AddEntry("stores", "SKU", Decimal("4.00"), AbsoluteWindow(start))], {}, NOW)
    diffs = preview(plan, {"SKU": [BASE_10]}, PRICER, PRODUCTS, NOW, first_new_id=100)
    assert [
        (d.probe.location_id, d.at, d.old and d.old.gross, d.new and d.new.gross, d.change_percent)
        for d in diffs
    ] == [
        ("S1", start, Decimal("10.00"), Decimal("4.00"), Decimal("-60.00")),
        ("S2", start, Decimal("10.00"), Decimal("4.00"), Decimal("-60.00")),
    ]


def test_preview_of_ending_the_only_price_shows_no_new_price() -> None:
    plan = plan_approval([EndEntry(1)], {1: BASE_10}, NOW)
    diffs = preview(plan, {"SKU": [BASE_10]}, PRICER, PRODUCTS, NOW, first_new_id=100)
    assert len(diffs) == 1
    assert diffs[0].old is not None
    assert diffs[0].new is None
    assert diffs[0].change_percent is None


def test_preview_omits_changes_shadowed_by_a_higher_priority_list() -> None:
    markdown = PriceEntry(2, "stores", "SKU", Decimal("8.00"), AbsoluteWindow(NOW - timedelta(days=1)))
    plan = plan_approval([AddEntry("base", "SKU", Decimal("12.00"), AbsoluteWindow(NOW))], {}, NOW)
    diffs = preview(plan, {"SKU": [BASE_10, markdown]}, PRICER, PRODUCTS, NOW, first_new_id=100)
    # The global base change shows in the global scope only: the stores keep their markdown.
    assert [(d.probe, d.old and d.old.gross, d.new and d.new.gross) for d in diffs] == [
        (Probe(), Decimal("10.00"), Decimal("12.00"))
    ]


def test_guardrails_cost_floor_blocks_map_and_max_change_warn() -> None:
    plan = plan_approval([AddEntry("stores", "SKU", Decimal("4.00"), AbsoluteWindow(NOW))], {}, NOW)
    diffs = preview(plan, {"SKU": [BASE_10]}, PRICER, PRODUCTS, NOW, first_new_id=100)
    limits = {
        "SKU": ProductLimits(cost=(Decimal("5.00"), "EUR"), minimum_advertised_price=(Decimal("6"), "EUR"))
    }
    findings = check(diffs[:1], limits, GuardrailPolicy(max_change_percent=Decimal(50)))
    assert [(f.kind, f.severity) for f in findings] == [
        (GuardrailKind.BELOW_COST_FLOOR, Severity.BLOCKING),
        (GuardrailKind.BELOW_MINIMUM_ADVERTISED_PRICE, Severity.WARNING),
        (GuardrailKind.CHANGE_ABOVE_MAXIMUM_PERCENT, Severity.WARNING),
    ]


def test_guardrails_pass_within_limits_and_ignore_other_currencies() -> None:
    plan = plan_approval([AddEntry("stores", "SKU", Decimal("9.00"), AbsoluteWindow(NOW))], {}, NOW)
    diffs = preview(plan, {"SKU": [BASE_10]}, PRICER, PRODUCTS, NOW, first_new_id=100)
    limits = {
        "SKU": ProductLimits(cost=(Decimal("20"), "USD"), minimum_advertised_price=(Decimal("8.99"), "EUR"))
    }
    assert check(diffs, limits, GuardrailPolicy(max_change_percent=Decimal(10))) == []
