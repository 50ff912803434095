"""Guardrails run at submit over the preview diff: cost floor, minimum advertised price, maximum change."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from retail_pricing.domain.preview import Diff

__all__ = ["Finding", "GuardrailKind", "GuardrailPolicy", "ProductLimits", "Severity", "check"]


class GuardrailKind(enum.StrEnum):
    BELOW_COST_FLOOR = "below_cost_floor"
    BELOW_MINIMUM_ADVERTISED_PRICE = "below_minimum_advertised_price"
    CHANGE_ABOVE_MAXIMUM_PERCENT = "change_above_maximum_percent"


class Severity(enum.StrEnum):
    WARNING = "warning"
    BLOCKING = "blocking"


@dataclass(frozen=True)
class GuardrailPolicy:
    max_change_percent: Decimal = Decimal(50)
    cost_floor: Severity = Severity.BLOCKING
    minimum_advertised_price: Severity = Severity.WARNING
    max_change: Severity = Severity.WARNING


@dataclass(frozen=True)
class ProductLimits:
    """Cost (net) and minimum advertised price (gross), each with its currency; None = not set."""

    cost: tuple[Decimal, str] | None = None
    minimum_advertised_price: tuple[Decimal, str] | None = None


@dataclass(frozen=True)
class Finding:
    kind: GuardrailKind
    severity: Severity
    diff: Diff
    message: str


def check(
    diffs: Sequence[Diff], limits: Mapping[str, ProductLimits], policy: GuardrailPolicy
) -> list[Finding]:
    findings: list[Finding] = []
    for diff in diffs:
        new = diff.new
        product = limits.get(diff.sku, ProductLimits())
        if new is not None and product.cost is not None:
            cost, currency = product.cost
            if currency == diff.currency and new.net < cost:
                findings.append(
                    Finding(
                        GuardrailKind.BELOW_COST_FLOOR,
                        policy.cost_floor,
                        diff,
                        f"net {new.net} < cost {cost}",
                    )
                )
        if new is not None and product.minimum_advertised_price is not None:
            floor, currency = product.minimum_advertised_price
            if currency == diff.currency and new.gross < floor:
                findings.append(
                    Finding(
                        GuardrailKind.BELOW_MINIMUM_ADVERTISED_PRICE,
                        policy.minimum_advertised_price,
                        diff,
                        f"gross {new.gross} < minimum advertised price {floor}",
                    )
                )
        percent = diff.change_percent
        if percent is not None and abs(percent) > policy.max_change_percent:
            findings.append(
                Finding(
                    GuardrailKind.CHANGE_ABOVE_MAXIMUM_PERCENT,
                    policy.max_change,
                    diff,
                    f"change {percent}% beyond ±{policy.max_change_percent}%",
                )
            )
    return findings
