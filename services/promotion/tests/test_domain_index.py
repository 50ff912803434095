"""The promotion index returns exactly the promotions that can concern a cart, without scanning."""

from __future__ import annotations

from decimal import Decimal

from retail_promotion.domain.index import PromotionIndex
from retail_promotion.domain.model import PercentOff, Product
from retail_promotion.testing import campaign, cart, promo, run

TEN = PercentOff(Decimal(10))


def test_index_by_channel_sku_category_attribute_and_wildcard() -> None:
    pos_only = campaign("C2", channels=frozenset({"pos"}))
    promotions = [
        promo("by-sku", TEN, skus=["A"]),
        promo("by-cat", TEN, categories=frozenset({"dairy"})),
        promo("by-attr", TEN, attributes=frozenset({("brand", "acme")})),
        promo("everything", TEN),
        promo("other-sku", TEN, skus=["Z"]),
        promo("other-channel", TEN, skus=["A"], of=pos_only),
    ]
    products = {
        "A": Product("A", frozenset({"dairy"})),
        "B": Product("B", attributes=frozenset({("brand", "acme")})),
    }
    index = PromotionIndex(promotions)
    found = index.for_cart(cart(("A", 1, "1.00"), ("B", 1, "1.00")), products)
    assert [p.promotion_id for p in found] == ["by-attr", "by-cat", "by-sku", "everything"]
    assert [p.promotion_id for p in index.for_skus("pos", ["A"], products)] == ["other-channel"]


def test_indexed_evaluation_equals_evaluation_over_all_promotions() -> None:
    promotions = [promo(f"P{i:05d}", TEN, skus=[f"S{i}"]) for i in range(2000)]
    c = cart(("S7", 1, "10.00"), ("S1999", 2, "5.00"))
    index = PromotionIndex(promotions)
    candidates = index.for_cart(c, {})
    assert len(candidates) == 2
    full = run(c, *promotions)
    indexed = run(c, *candidates)
    assert [ln.final for ln in indexed.lines] == [ln.final for ln in full.lines]
