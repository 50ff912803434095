"""An index of promotions by channel and by SKU / category / attribute, so evaluating a cart touches
only the promotions that can concern its lines, never all of them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from retail_promotion.domain.model import Cart, Product, Promotion

__all__ = ["PromotionIndex"]


class PromotionIndex:
    def __init__(self, promotions: Iterable[Promotion]) -> None:
        self._by_sku: dict[tuple[str, str], list[Promotion]] = defaultdict(list)
        self._by_category: dict[tuple[str, str], list[Promotion]] = defaultdict(list)
        self._by_attribute: dict[tuple[str, tuple[str, str]], list[Promotion]] = defaultdict(list)
        self._any_sku: dict[str, list[Promotion]] = defaultdict(list)
        self._count = 0
        for p in promotions:
            self._count += 1
            e = p.eligibility
            for channel in p.campaign.channels:
                if e.matches_everything:
                    self._any_sku[channel].append(p)
                for sku in e.skus:
                    self._by_sku[(channel, sku)].append(p)
                for category in e.categories:
                    self._by_category[(channel, category)].append(p)
                for attribute in e.attributes:
                    self._by_attribute[(channel, attribute)].append(p)

    def __len__(self) -> int:
        return self._count

    def for_skus(self, channel: str, skus: Iterable[str], products: Mapping[str, Product]) -> list[Promotion]:
        """Promotions of campaigns targeting `channel` that may match one of `skus`, by promotion_id."""
        found: dict[str, Promotion] = {p.promotion_id: p for p in self._any_sku.get(channel, ())}
        for sku in set(skus):
            for p in self._by_sku.get((channel, sku), ()):
                found[p.promotion_id] = p
            product = products.get(sku)
            if product is None:
                continue
            for category in product.categories:
                for p in self._by_category.get((channel, category), ()):
                    found[p.promotion_id] = p
            for attribute in product.attributes:
                for p in self._by_attribute.get((channel, attribute), ()):
                    found[p.promotion_id] = p
        return [found[k] for k in sorted(found)]

    def for_cart(self, cart: Cart, products: Mapping[str, Product]) -> list[Promotion]:
        return self.for_skus(cart.channel, (line.sku for line in cart.lines), products)
