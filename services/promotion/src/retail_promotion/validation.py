"""Request validation: every bad field of a request as a FieldViolation naming its proto path, so the
servicer can refuse the request with INVALID_ARGUMENT before changing anything."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from google.type import datetime_pb2, decimal_pb2, money_pb2

from retail.common.v1 import time_window_pb2
from retail.promotion.v1 import campaign_pb2, evaluation_pb2, promotion_pb2
from retail_common.errors import FieldViolation, InvalidArgument

__all__ = ["Checks", "campaign_violations", "cart_violations"]

_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_PROMOTIONS = 1000
MAX_LINES = 200
MAX_CODES = 20
MAX_QUANTITY = 1_000_000


class Checks:
    """Collects violations; `raise_if_any` turns them into one INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field: str, why: str) -> None:
        self.violations.append(FieldViolation(field, why))

    def id(self, field: str, value: str) -> None:
        if not _ID.match(value):
            self.add(field, "required: 1..128 characters without whitespace")

    def optional_id(self, field: str, value: str) -> None:
        if value:
            self.id(field, value)

    def ids(self, field: str, values: list[str] | tuple[str, ...], limit: int = 1000) -> None:
        if len(values) > limit:
            self.add(field, f"at most {limit}")
        for i, v in enumerate(values):
            self.id(f"{field}[{i}]", v)

    def currency(self, field: str, value: str) -> None:
        if not _CURRENCY.match(value):
            self.add(field, "required: an ISO 4217 code")

    def money(self, field: str, money: money_pb2.Money, currency: str, *, positive: bool = False) -> None:
        if money.currency_code != currency:
            self.add(f"{field}.currency_code", f"must be the campaign currency {currency}")
        if money.units < 0 or money.nanos < 0 or not -999_999_999 <= money.nanos <= 999_999_999:
            self.add(field, "must not be negative")
        elif positive and money.units == 0 and money.nanos == 0:
            self.add(field, "must be positive")

    def percent(self, field: str, value: decimal_pb2.Decimal) -> None:
        try:
            d = Decimal(value.value)
        except InvalidOperation:
            self.add(field, "not a decimal number")
            return
        if not (d.is_finite() and Decimal(0) < d <= Decimal(100)):
            self.add(field, "must be > 0 and <= 100")

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)


def _wall(checks: Checks, field: str, value: datetime_pb2.DateTime) -> tuple[int, ...] | None:
    if value.HasField("utc_offset") or value.HasField("time_zone"):
        checks.add(field, "a local wall-clock time must not carry an offset or time zone")
        return None
    try:
        from datetime import datetime

        datetime(value.year, value.month, value.day, value.hours, value.minutes, value.seconds)
    except ValueError:
        checks.add(field, "not a valid date and time")
        return None
    return (value.year, value.month, value.day, value.hours, value.minutes, value.seconds)


def _window(checks: Checks, field: str, window: time_window_pb2.TimeWindow, present: bool) -> None:
    kind = window.WhichOneof("kind") if present else None
    if kind is None:
        checks.add(field, "required: absolute or local")
    elif kind == "absolute":
        if not window.absolute.HasField("start_time"):
            checks.add(f"{field}.absolute.start_time", "required")
        elif window.absolute.HasField("end_time") and (
            window.absolute.end_time.ToNanoseconds() <= window.absolute.start_time.ToNanoseconds()
        ):
            checks.add(f"{field}.absolute.end_time", "must be after start_time")
    else:
        if not window.local.HasField("start_time"):
            checks.add(f"{field}.local.start_time", "required")
            return
        start = _wall(checks, f"{field}.local.start_time", window.local.start_time)
        if window.local.HasField("end_time"):
            end = _wall(checks, f"{field}.local.end_time", window.local.end_time)
            if start is not None and end is not None and end <= start:
                checks.add(f"{field}.local.end_time", "must be after start_time")


def _reward(checks: Checks, field: str, p: promotion_pb2.Promotion, currency: str) -> None:
    reward = p.reward
    kind = reward.WhichOneof("kind") if p.HasField("reward") else None
    line = p.level == promotion_pb2.PROMOTION_LEVEL_LINE
    if kind is None:
        checks.add(field, "required")
    elif kind == "percent_off":
        checks.percent(f"{field}.percent_off", reward.percent_off)
    elif kind == "amount_off":
        checks.money(f"{field}.amount_off", reward.amount_off, currency, positive=True)
    elif kind == "fixed_price":
        checks.money(f"{field}.fixed_price", reward.fixed_price, currency)
        if not line:
            checks.add(f"{field}.fixed_price", "only for LINE promotions")
    elif kind == "buy_x_get_y":
        b = reward.buy_x_get_y
        if not 1 <= b.buy_quantity <= 1000:
            checks.add(f"{field}.buy_x_get_y.buy_quantity", "must be 1..1000")
        if not 1 <= b.get_quantity <= 1000:
            checks.add(f"{field}.buy_x_get_y.get_quantity", "must be 1..1000")
        if b.HasField("percent_off"):
            checks.percent(f"{field}.buy_x_get_y.percent_off", b.percent_off)
        if not line:
            checks.add(f"{field}.buy_x_get_y", "only for LINE promotions")
    else:
        tiers = reward.tiered_spend.tiers
        if not 1 <= len(tiers) <= 20:
            checks.add(f"{field}.tiered_spend.tiers", "1..20 tiers")
        previous = None
        for i, tier in enumerate(tiers):
            path = f"{field}.tiered_spend.tiers[{i}]"
            checks.money(f"{path}.min_spend", tier.min_spend, currency)
            which = tier.WhichOneof("reward")
            if which == "percent_off":
                checks.percent(f"{path}.percent_off", tier.percent_off)
            elif which == "amount_off":
                checks.money(f"{path}.amount_off", tier.amount_off, currency, positive=True)
            else:
                checks.add(path, "percent_off or amount_off required")
            spend = (tier.min_spend.units, tier.min_spend.nanos)
            if previous is not None and spend <= previous:
                checks.add(f"{path}.min_spend", "tiers must have strictly increasing min_spend")
            previous = spend
        if line:
            checks.add(f"{field}.tiered_spend", "only for CART promotions")


def _promotion(checks: Checks, field: str, p: promotion_pb2.Promotion, currency: str) -> None:
    checks.id(f"{field}.promotion_id", p.promotion_id)
    if len(p.display_name) > 200:
        checks.add(f"{field}.display_name", "at most 200 characters")
    if p.level not in (promotion_pb2.PROMOTION_LEVEL_LINE, promotion_pb2.PROMOTION_LEVEL_CART):
        checks.add(f"{field}.level", "required: LINE or CART")
    e = p.eligibility
    for name in ("skus", "category_ids", "excluded_skus", "customer_segments", "code_batch_ids"):
        checks.ids(f"{field}.eligibility.{name}", list(getattr(e, name)))
    for i, code in enumerate(e.codes):
        checks.id(f"{field}.eligibility.codes[{i}]", code)
    for i, a in enumerate(e.attributes):
        if not a.key:
            checks.add(f"{field}.eligibility.attributes[{i}].key", "required")
    if e.min_quantity < 0:
        checks.add(f"{field}.eligibility.min_quantity", "must not be negative")
    if e.HasField("min_amount"):
        checks.money(f"{field}.eligibility.min_amount", e.min_amount, currency)
    _reward(checks, f"{field}.reward", p, currency)
    if p.stacking.mode not in (promotion_pb2.STACKING_MODE_STACKABLE, promotion_pb2.STACKING_MODE_EXCLUSIVE):
        checks.add(f"{field}.stacking.mode", "required: STACKABLE or EXCLUSIVE")
    if not 0 <= p.stacking.priority <= 1_000_000:
        checks.add(f"{field}.stacking.priority", "must be 0..1000000")
    checks.optional_id(f"{field}.stacking.group", p.stacking.group)
    if p.limits.HasField("budget"):
        checks.money(f"{field}.limits.budget", p.limits.budget, currency)
    if p.limits.max_redemptions < 0:
        checks.add(f"{field}.limits.max_redemptions", "must not be negative")


def campaign_violations(c: campaign_pb2.Campaign, field: str = "campaign") -> list[FieldViolation]:
    checks = Checks()
    checks.id(f"{field}.campaign_id", c.campaign_id)
    if len(c.display_name) > 200:
        checks.add(f"{field}.display_name", "at most 200 characters")
    checks.currency(f"{field}.currency_code", c.currency_code)
    _window(checks, f"{field}.window", c.window, c.HasField("window"))
    if not c.channel_ids:
        checks.add(f"{field}.channel_ids", "at least one channel")
    checks.ids(f"{field}.channel_ids", list(c.channel_ids), 64)
    for name in ("region_ids", "location_ids", "excluded_region_ids", "excluded_location_ids"):
        checks.ids(f"{field}.{name}", list(getattr(c, name)), 10_000)
    if c.HasField("budget"):
        checks.money(f"{field}.budget", c.budget, c.currency_code)
    if c.stock_guardrail.min_available_to_sell < 0:
        checks.add(f"{field}.stock_guardrail.min_available_to_sell", "must not be negative")
    if not 1 <= len(c.promotions) <= MAX_PROMOTIONS:
        checks.add(f"{field}.promotions", f"1..{MAX_PROMOTIONS} promotions")
    seen: set[str] = set()
    for i, p in enumerate(c.promotions):
        _promotion(checks, f"{field}.promotions[{i}]", p, c.currency_code)
        if p.promotion_id in seen:
            checks.add(f"{field}.promotions[{i}].promotion_id", "duplicate promotion_id")
        seen.add(p.promotion_id)
    return checks.violations


def cart_violations(
    checks: Checks,
    scope: evaluation_pb2.CartScope,
    currency: str,
    lines: list[evaluation_pb2.CartLine] | tuple[evaluation_pb2.CartLine, ...],
    codes: list[str] | tuple[str, ...],
) -> None:
    checks.id("scope.channel_id", scope.channel_id)
    checks.optional_id("scope.location_id", scope.location_id)
    checks.optional_id("scope.customer_segment", scope.customer_segment)
    checks.currency("currency_code", currency)
    if not 1 <= len(lines) <= MAX_LINES:
        checks.add("lines", f"1..{MAX_LINES} lines")
    for i, line in enumerate(lines):
        checks.id(f"lines[{i}].sku", line.sku)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            checks.add(f"lines[{i}].quantity", f"must be 1..{MAX_QUANTITY}")
    if len(codes) > MAX_CODES:
        checks.add("codes", f"at most {MAX_CODES}")
    for i, code in enumerate(codes):
        checks.id(f"codes[{i}]", code)
