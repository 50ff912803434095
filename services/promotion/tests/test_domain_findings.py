"""Validation rules (pure): every finding with where it is, ordered by kind, SKU, channel, location."""

from __future__ import annotations

from datetime import UTC, datetime

from retail_promotion.domain.findings import Facts, FindingKind, findings
from retail_promotion.domain.model import Mode, PercentOff
from retail_promotion.domain.windows import Window
from retail_promotion.testing import D, campaign, promo

JULY = Window(datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC))


def _facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "products": {"A": (True, True), "B": (True, True)},
        "priced": {("A", "web"): True, ("B", "web"): True},
        "location_regions": {},
        "available": {},
        "others": [],
    }
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def _run(
    facts: Facts, *, exclusive: bool = False, **kw: object
) -> list[tuple[FindingKind, str, str, str, str]]:
    mine = campaign("C1", channels=frozenset({"web"}))
    args: dict[str, object] = {
        "campaign_id": "C1",
        "channels": ["web"],
        "regions": [],
        "locations": [],
        "excluded_regions": [],
        "excluded_locations": [],
        "promotions": [promo("P1", PercentOff(D(10)), skus=["A", "B"], exclusive=exclusive, of=mine)],
        "min_available": 0,
        "budget_required": False,
        "has_budget": False,
        "facts": facts,
    }
    args.update(kw)
    return [(f.kind, f.sku, f.channel_id, f.location_id, f.region_id) for f in findings(**args)]  # type: ignore[arg-type]


def test_a_clean_campaign_has_no_finding() -> None:
    assert _run(_facts()) == []


def test_each_problem_is_found_with_where_it_is() -> None:
    facts = _facts(
        products={"A": (True, True), "B": (True, False)},
        priced={("A", "web"): False},
        location_regions={"L1": "north", "L2": "south"},
        available={("A", "L2", "web"): 1},
    )
    found = _run(
        facts,
        locations=["L1", "L2"],
        excluded_regions=["north"],
        min_available=5,
        budget_required=True,
    )
    assert found == [
        (FindingKind.INACTIVE_SKU, "B", "", "", ""),
        (FindingKind.UNPRICED_SKU, "A", "web", "", ""),
        (FindingKind.EXCLUDED_SCOPE, "", "", "L1", "north"),
        (FindingKind.LOW_STOCK, "A", "web", "L2", ""),
        (FindingKind.MISSING_BUDGET, "", "", "", ""),
    ]


def test_conflicting_exclusive_needs_shared_sku_channel_and_overlapping_window() -> None:
    other = promo(
        "OX", PercentOff(D(20)), skus=["A"], exclusive=True, of=campaign("C2", channels=frozenset({"web"}))
    )
    assert other.mode is Mode.EXCLUSIVE
    found = _run(_facts(others=[other]), exclusive=True)
    assert found == [(FindingKind.CONFLICTING_EXCLUSIVE, "A", "web", "", "")]
    later = promo("OX", PercentOff(D(20)), skus=["A"], exclusive=True, of=campaign("C2", window=JULY))
    assert _run(_facts(others=[later]), exclusive=True) == []
    elsewhere = promo(
        "OX", PercentOff(D(20)), skus=["A"], exclusive=True, of=campaign("C2", channels=frozenset({"pos"}))
    )
    assert _run(_facts(others=[elsewhere]), exclusive=True) == []
    assert _run(_facts(others=[other]), exclusive=False) == []  # a stackable one does not conflict
