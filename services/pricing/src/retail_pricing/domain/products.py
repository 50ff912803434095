"""The product master replica: a product's state and what makes an input valid."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from retail_pricing.domain.errors import Violation
from retail_pricing.domain.money import is_currency

__all__ = ["ID_PATTERN", "MAX_BATCH", "Product", "validate_id", "validate_product"]

ID_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")
MAX_BATCH = 1000
Limit = tuple[Decimal, str]


@dataclass(frozen=True)
class Product:
    sku: str
    status: str  # "active" | "inactive"
    tax_class: str
    title: str = ""
    category_ids: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    cost: Limit | None = None
    minimum_advertised_price: Limit | None = None
    version: int = 0
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def same_content(self, other: Product) -> bool:
        """Equal apart from version and update time (an unchanged upsert is not a change)."""
        return (
            self.status,
            self.tax_class,
            self.title,
            self.category_ids,
            self.attributes,
            self.cost,
            self.minimum_advertised_price,
        ) == (
            other.status,
            other.tax_class,
            other.title,
            other.category_ids,
            other.attributes,
            other.cost,
            other.minimum_advertised_price,
        )


def validate_id(value: str, path: str) -> list[Violation]:
    if not ID_PATTERN.match(value):
        return [Violation(path, "must be 1 to 128 characters without whitespace or control characters")]
    return []


def _limit(limit: Limit | None, path: str) -> list[Violation]:
    if limit is None:
        return []
    amount, currency = limit
    problems = []
    if not is_currency(currency):
        problems.append(Violation(f"{path}.currency_code", f"unknown ISO 4217 currency {currency!r}"))
    if amount < 0:
        problems.append(Violation(path, "must not be negative"))
    return problems


def validate_product(product: Product, path: str) -> list[Violation]:
    problems = validate_id(product.sku, f"{path}.sku")
    if product.status not in ("active", "inactive"):
        problems.append(Violation(f"{path}.status", "must be ACTIVE or INACTIVE"))
    if not product.tax_class or len(product.tax_class) > 64:
        problems.append(Violation(f"{path}.tax_class", "required, at most 64 characters"))
    if len(product.title) > 500:
        problems.append(Violation(f"{path}.title", "at most 500 characters"))
    if len(product.category_ids) > 50:
        problems.append(Violation(f"{path}.category_ids", "at most 50"))
    if len(product.attributes) > 100:
        problems.append(Violation(f"{path}.attributes", "at most 100 keys"))
    problems += _limit(product.cost, f"{path}.cost_price")
    problems += _limit(product.minimum_advertised_price, f"{path}.minimum_advertised_price")
    return problems
