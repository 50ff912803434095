"""The effective-price diff an approval would cause, per SKU and scope (probed from the lists' scopes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from retail_pricing.domain.change_sets import Insert, Operation, Shorten, apply_plan
from retail_pricing.domain.errors import RuleError
from retail_pricing.domain.model import Location, PriceEntry, PriceList, PriceQuery, Window
from retail_pricing.domain.pricer import Pricer, ProductInfo
from retail_pricing.domain.tax import Amounts
from retail_pricing.domain.windows import bounds

__all__ = ["Diff", "Probe", "preview", "probes_for", "probes_for_rate"]


@dataclass(frozen=True)
class Probe:
    """One concrete scope to evaluate."""

    channel_id: str = ""
    region_id: str = ""
    location_id: str = ""
    customer_segment: str = ""


@dataclass(frozen=True)
class Diff:
    sku: str
    probe: Probe
    at: datetime
    currency: str
    old: Amounts | None
    new: Amounts | None

    @property
    def change_percent(self) -> Decimal | None:
        if self.old is None or self.new is None or self.old.gross == 0:
            return None
        ratio = (self.new.gross - self.old.gross) / self.old.gross * 100
        return ratio.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def probes_for(price_list: PriceList) -> list[Probe]:
    """The scopes a list's change is evaluated in: each location, else each region, else each channel
    (crossed with the channels when both are set), else global; with the list's segment."""
    scope = price_list.scope
    channels = sorted(scope.channel_ids) or [""]
    segment = scope.customer_segment
    if scope.location_ids:
        return [Probe(c, "", loc, segment) for c in channels for loc in sorted(scope.location_ids)]
    if scope.region_ids:
        return [Probe(c, r, "", segment) for c in channels for r in sorted(scope.region_ids)]
    return [Probe(c, "", "", segment) for c in channels]


def probes_for_rate(price_list: PriceList, region_id: str, locations: Mapping[str, Location]) -> list[Probe]:
    """The scopes of a list that a tax rate of `region_id` can reach: its probes in that region (its
    stores there, the region itself, or, for channel-wide and global lists, the region as a query
    region). The default rate (empty region) reaches every region without its own rate, so a wide
    list is probed in each known region and with no region at all."""
    regions = [region_id] if region_id else sorted({""} | {loc.region_id for loc in locations.values()})
    result: list[Probe] = []
    for probe in probes_for(price_list):
        if probe.location_id:
            location = locations.get(probe.location_id)
            if not region_id or (location is not None and location.region_id == region_id):
                result.append(probe)
        elif probe.region_id:
            if not region_id or probe.region_id == region_id:
                result.append(probe)
        else:
            result.extend(Probe(probe.channel_id, r, "", probe.customer_segment) for r in regions)
    return result


def _change_window(op: Operation) -> tuple[Window, bool]:
    """The window whose start (True) or end (False) is when the operation takes effect."""
    if isinstance(op, Insert):
        return op.item.window, True
    if isinstance(op, Shorten):
        return op.window, False
    return op.before.window, True


def _subject(op: Operation) -> tuple[str, str, int]:
    if isinstance(op, Insert):
        return op.item.sku, op.item.price_list_id, op.item.min_quantity
    return op.before.sku, op.before.price_list_id, op.before.min_quantity


def preview(
    plan: Sequence[Operation],
    before: Mapping[str, Sequence[PriceEntry]],
    pricer: Pricer,
    products: Mapping[str, ProductInfo],
    now: datetime,
    first_new_id: int,
) -> list[Diff]:
    """Old and new resolved price at the instant each operation takes effect, for every probe of its
    list, where they differ."""
    after_by_sku: dict[str, list[PriceEntry]] = {}
    ops_by_sku: dict[str, list[Operation]] = {}
    for op in plan:
        ops_by_sku.setdefault(_subject(op)[0], []).append(op)
    for sku, ops in ops_by_sku.items():
        after_by_sku[sku] = apply_plan(before.get(sku, ()), ops, first_new_id)
    diffs: list[Diff] = []
    seen: set[tuple[str, Probe, datetime, int]] = set()
    for op in plan:
        sku, list_id, tier = _subject(op)
        price_list = pricer.lists.get(list_id)
        product = products.get(sku)
        if price_list is None or product is None:
            continue
        window, at_start = _change_window(op)
        for probe in probes_for(price_list):
            location = pricer.locations.get(probe.location_id) if probe.location_id else None
            window_bounds = bounds(window, location.time_zone if location else None)
            if window_bounds is None:
                continue
            instant = window_bounds[0] if at_start else window_bounds[1]
            if instant is None:
                continue
            instant = max(instant, now)
            key = (sku, probe, instant, tier)
            if key in seen:
                continue
            seen.add(key)
            query = PriceQuery(
                sku=sku,
                currency=price_list.currency,
                at=instant,
                channel_id=probe.channel_id,
                location_id=probe.location_id,
                region_id=probe.region_id,
                customer_segment=probe.customer_segment,
                quantity=tier,
            )
            try:
                old = pricer.resolve(query, product, before.get(sku, ()))
                new = pricer.resolve(query, product, after_by_sku[sku])
            except RuleError:
                continue
            old_amounts = old.amounts if old else None
            new_amounts = new.amounts if new else None
            if old_amounts != new_amounts:
                diffs.append(Diff(sku, probe, instant, price_list.currency, old_amounts, new_amounts))
    return diffs
