"""Proto <-> domain conversions, validating input and naming the bad field (proto field paths)."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import timestamp_pb2
from google.type import datetime_pb2, decimal_pb2, money_pb2

from retail.common.v1 import money_pb2 as common_money_pb2
from retail.common.v1 import refs_pb2, time_window_pb2
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, products_pb2, resolution_pb2
from retail_pricing.domain.change_sets import AddEntry, EndEntry, Item, State
from retail_pricing.domain.errors import Violation
from retail_pricing.domain.model import (
    AbsoluteWindow,
    ListKind,
    ListScope,
    LocalWindow,
    PriceEntry,
    PriceList,
    TaxTreatment,
    Window,
)
from retail_pricing.domain.money import from_units_nanos, is_currency, to_units_nanos
from retail_pricing.domain.pricer import Resolved
from retail_pricing.domain.products import Product
from retail_pricing.domain.tax import Amounts
from retail_pricing.repository.change_sets import StoredChangeSet
from retail_pricing.repository.price_lists import StoredPriceList

__all__ = [
    "amounts_to_proto",
    "change_set_to_proto",
    "decimal_to_proto",
    "entry_to_proto",
    "fill_resolved",
    "item_from_proto",
    "items_to_proto",
    "money_from_proto",
    "money_to_proto",
    "price_list_from_proto",
    "price_list_to_proto",
    "product_from_proto",
    "product_to_proto",
    "resolved_to_proto",
    "timestamp",
    "timestamp_to_proto",
    "window_from_proto",
]

Problems = list[Violation]

_KINDS = {
    price_lists_pb2.PRICE_LIST_KIND_BASE: ListKind.BASE,
    price_lists_pb2.PRICE_LIST_KIND_MARKDOWN: ListKind.MARKDOWN,
    price_lists_pb2.PRICE_LIST_KIND_CLEARANCE: ListKind.CLEARANCE,
}
_KINDS_OUT = {v: k for k, v in _KINDS.items()}
_TREATMENTS = {
    common_money_pb2.TAX_TREATMENT_INCLUDED: TaxTreatment.INCLUDED,
    common_money_pb2.TAX_TREATMENT_EXCLUDED: TaxTreatment.EXCLUDED,
}
_TREATMENTS_OUT = {v: k for k, v in _TREATMENTS.items()}
STATES_OUT = {
    State.DRAFT: change_sets_pb2.CHANGE_SET_STATE_DRAFT,
    State.SUBMITTED: change_sets_pb2.CHANGE_SET_STATE_SUBMITTED,
    State.APPROVED: change_sets_pb2.CHANGE_SET_STATE_APPROVED,
    State.REJECTED: change_sets_pb2.CHANGE_SET_STATE_REJECTED,
}
STATES_IN = {v: k for k, v in STATES_OUT.items()}


# --- scalars ------------------------------------------------------------------------------------------


def timestamp(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_to_proto(instant: datetime | None) -> timestamp_pb2.Timestamp | None:
    if instant is None:
        return None
    delta = instant - _EPOCH  # exact: timedelta arithmetic, no float
    seconds = delta.days * 86_400 + delta.seconds
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def money_to_proto(amount: Decimal, currency: str) -> money_pb2.Money:
    units, nanos = to_units_nanos(amount)
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def money_from_proto(money: money_pb2.Money, path: str, problems: Problems) -> tuple[Decimal, str] | None:
    """A non-negative amount in a known currency, else None with the problems recorded."""
    if not is_currency(money.currency_code):
        problems.append(
            Violation(f"{path}.currency_code", f"unknown ISO 4217 currency {money.currency_code!r}")
        )
        return None
    try:
        amount = from_units_nanos(money.units, money.nanos)
    except ValueError as exc:
        problems.append(Violation(path, str(exc)))
        return None
    if amount < 0:
        problems.append(Violation(path, "must not be negative"))
        return None
    return amount, money.currency_code


def decimal_to_proto(value: Decimal) -> decimal_pb2.Decimal:
    return decimal_pb2.Decimal(value=str(value))


def decimal_from_proto(value: decimal_pb2.Decimal, path: str, problems: Problems) -> Decimal | None:
    try:
        result = Decimal(value.value)
    except InvalidOperation:
        problems.append(Violation(path, f"{value.value!r} is not a decimal number"))
        return None
    if not result.is_finite():
        problems.append(Violation(path, "must be finite"))
        return None
    return result


# --- windows ------------------------------------------------------------------------------------------


def _local(dt: datetime_pb2.DateTime, path: str, problems: Problems) -> datetime | None:
    if dt.HasField("utc_offset") or dt.HasField("time_zone"):
        problems.append(Violation(path, "a local time must not carry an offset or time zone"))
        return None
    try:
        return datetime(dt.year, dt.month, dt.day, dt.hours, dt.minutes, dt.seconds, dt.nanos // 1000)
    except ValueError as exc:
        problems.append(Violation(path, f"invalid date/time: {exc}"))
        return None


def window_from_proto(window: time_window_pb2.TimeWindow, path: str, problems: Problems) -> Window | None:
    kind = window.WhichOneof("kind")
    if kind == "absolute":
        a = window.absolute
        if not a.HasField("start_time"):
            problems.append(Violation(f"{path}.absolute.start_time", "required"))
            return None
        start = timestamp(a.start_time)
        end = timestamp(a.end_time) if a.HasField("end_time") else None
        if end is not None and end <= start:
            problems.append(Violation(f"{path}.absolute.end_time", "must be after start_time"))
            return None
        return AbsoluteWindow(start, end)
    if kind == "local":
        local = window.local
        if not local.HasField("start_time"):
            problems.append(Violation(f"{path}.local.start_time", "required"))
            return None
        start_local = _local(local.start_time, f"{path}.local.start_time", problems)
        end_local = (
            _local(local.end_time, f"{path}.local.end_time", problems) if local.HasField("end_time") else None
        )
        if start_local is None or (local.HasField("end_time") and end_local is None):
            return None
        if end_local is not None and end_local <= start_local:
            problems.append(Violation(f"{path}.local.end_time", "must be after start_time"))
            return None
        return LocalWindow(start_local, end_local)
    problems.append(Violation(path, "exactly one of absolute or local is required"))
    return None


def _local_to_proto(wall: datetime) -> datetime_pb2.DateTime:
    return datetime_pb2.DateTime(
        year=wall.year,
        month=wall.month,
        day=wall.day,
        hours=wall.hour,
        minutes=wall.minute,
        seconds=wall.second,
        nanos=wall.microsecond * 1000,
    )


def window_to_proto(window: Window) -> time_window_pb2.TimeWindow:
    if isinstance(window, AbsoluteWindow):
        return time_window_pb2.TimeWindow(
            absolute=time_window_pb2.AbsoluteWindow(
                start_time=timestamp_to_proto(window.start), end_time=timestamp_to_proto(window.end)
            )
        )
    return time_window_pb2.TimeWindow(
        local=time_window_pb2.LocalWindow(
            start_time=_local_to_proto(window.start),
            end_time=None if window.end is None else _local_to_proto(window.end),
        )
    )


# --- products -----------------------------------------------------------------------------------------

_STATUS_IN = {products_pb2.PRODUCT_STATUS_ACTIVE: "active", products_pb2.PRODUCT_STATUS_INACTIVE: "inactive"}
_STATUS_OUT = {v: k for k, v in _STATUS_IN.items()}


def product_from_proto(p: products_pb2.Product, path: str, problems: Problems) -> Product:
    cost = (
        money_from_proto(p.cost_price, f"{path}.cost_price", problems) if p.HasField("cost_price") else None
    )
    floor = (
        money_from_proto(p.minimum_advertised_price, f"{path}.minimum_advertised_price", problems)
        if p.HasField("minimum_advertised_price")
        else None
    )
    return Product(
        sku=p.sku,
        status=_STATUS_IN.get(p.status, ""),
        tax_class=p.tax_class,
        title=p.title,
        category_ids=tuple(p.category_ids),
        attributes=dict(p.attributes),
        cost=cost,
        minimum_advertised_price=floor,
    )


def product_to_proto(p: Product) -> products_pb2.Product:
    return products_pb2.Product(
        sku=p.sku,
        title=p.title,
        status=_STATUS_OUT.get(p.status, products_pb2.PRODUCT_STATUS_UNSPECIFIED),
        tax_class=p.tax_class,
        category_ids=list(p.category_ids),
        attributes=p.attributes,
        cost_price=None if p.cost is None else money_to_proto(*p.cost),
        minimum_advertised_price=(
            None if p.minimum_advertised_price is None else money_to_proto(*p.minimum_advertised_price)
        ),
        version=p.version,
        etag=str(p.version),
        update_time=timestamp_to_proto(p.updated_at),
    )


# --- price lists ----------------------------------------------------------------------------------------


def price_list_from_proto(
    pl: price_lists_pb2.PriceList, path: str, problems: Problems
) -> tuple[PriceList, str]:
    from retail_pricing.domain.products import validate_id

    problems += validate_id(pl.price_list_id, f"{path}.price_list_id")
    if not is_currency(pl.currency_code):
        problems.append(Violation(f"{path}.currency_code", f"unknown ISO 4217 currency {pl.currency_code!r}"))
    kind = _KINDS.get(pl.kind)
    if kind is None:
        problems.append(Violation(f"{path}.kind", "required: BASE, MARKDOWN or CLEARANCE"))
    treatment = _TREATMENTS.get(pl.tax_treatment)
    if treatment is None:
        problems.append(Violation(f"{path}.tax_treatment", "required: INCLUDED or EXCLUDED"))
    if pl.status == price_lists_pb2.PRICE_LIST_STATUS_UNSPECIFIED:
        problems.append(Violation(f"{path}.status", "required: ACTIVE or INACTIVE"))
    if not 0 <= pl.priority <= 1000:
        problems.append(Violation(f"{path}.priority", "must be 0 (default of the kind) to 1000"))
    if len(pl.display_name) > 200:
        problems.append(Violation(f"{path}.display_name", "at most 200 characters"))
    scope = pl.scope
    for name, values, bound in (
        ("channel_ids", scope.channel_ids, 100),
        ("region_ids", scope.region_ids, 100),
        ("location_ids", scope.location_ids, 1000),
    ):
        if len(values) > bound:
            problems.append(Violation(f"{path}.scope.{name}", f"at most {bound}"))
        for i, value in enumerate(values):
            problems += validate_id(value, f"{path}.scope.{name}[{i}]")
    domain = PriceList(
        price_list_id=pl.price_list_id,
        currency=pl.currency_code,
        kind=kind or ListKind.BASE,
        tax_treatment=treatment or TaxTreatment.INCLUDED,
        priority=pl.priority,
        scope=ListScope(
            frozenset(scope.channel_ids),
            frozenset(scope.region_ids),
            frozenset(scope.location_ids),
            scope.customer_segment,
        ),
        active=pl.status == price_lists_pb2.PRICE_LIST_STATUS_ACTIVE,
    )
    return domain, pl.display_name


def price_list_to_proto(stored: StoredPriceList) -> price_lists_pb2.PriceList:
    pl = stored.price_list
    return price_lists_pb2.PriceList(
        price_list_id=pl.price_list_id,
        display_name=stored.display_name,
        currency_code=pl.currency,
        kind=_KINDS_OUT[pl.kind],
        priority=pl.priority,
        effective_priority=pl.effective_priority,
        scope=price_lists_pb2.PriceListScope(
            channel_ids=sorted(pl.scope.channel_ids),
            region_ids=sorted(pl.scope.region_ids),
            location_ids=sorted(pl.scope.location_ids),
            customer_segment=pl.scope.customer_segment,
        ),
        tax_treatment=_TREATMENTS_OUT[pl.tax_treatment],
        status=price_lists_pb2.PRICE_LIST_STATUS_ACTIVE
        if pl.active
        else price_lists_pb2.PRICE_LIST_STATUS_INACTIVE,
        version=stored.version,
        etag=str(stored.version),
        create_time=timestamp_to_proto(stored.created_at),
        update_time=timestamp_to_proto(stored.updated_at),
    )


def bare_price_list_to_proto(pl: PriceList) -> price_lists_pb2.PriceList:
    return price_lists_pb2.PriceList(
        price_list_id=pl.price_list_id,
        currency_code=pl.currency,
        kind=_KINDS_OUT[pl.kind],
        priority=pl.priority,
        effective_priority=pl.effective_priority,
        tax_treatment=_TREATMENTS_OUT[pl.tax_treatment],
        status=price_lists_pb2.PRICE_LIST_STATUS_ACTIVE
        if pl.active
        else price_lists_pb2.PRICE_LIST_STATUS_INACTIVE,
        scope=price_lists_pb2.PriceListScope(
            channel_ids=sorted(pl.scope.channel_ids),
            region_ids=sorted(pl.scope.region_ids),
            location_ids=sorted(pl.scope.location_ids),
            customer_segment=pl.scope.customer_segment,
        ),
    )


def entry_to_proto(
    entry: PriceEntry,
    currency: str,
    change_set_id: uuid.UUID | None = None,
    created_at: datetime | None = None,
) -> price_lists_pb2.PriceEntry:
    return price_lists_pb2.PriceEntry(
        entry_id=entry.entry_id,
        price_list_id=entry.price_list_id,
        sku=entry.sku,
        min_quantity=entry.min_quantity,
        amount=money_to_proto(entry.amount, currency),
        window=window_to_proto(entry.window),
        change_set_id="" if change_set_id is None else str(change_set_id),
        create_time=timestamp_to_proto(created_at),
    )


# --- change sets --------------------------------------------------------------------------------------


def item_from_proto(
    item: change_sets_pb2.ChangeSetItem, path: str, problems: Problems
) -> tuple[Item, str] | None:
    """The item and, for an ADD, the currency of its amount ('' for END)."""
    which = item.WhichOneof("change")
    if which == "add_entry":
        add = item.add_entry
        before = len(problems)
        if not add.price_list_id:
            problems.append(Violation(f"{path}.add_entry.price_list_id", "required"))
        problems += validate_sku(add.sku, f"{path}.add_entry.sku")
        if add.min_quantity < 0:
            problems.append(Violation(f"{path}.add_entry.min_quantity", "must not be negative"))
        money = None
        if not add.HasField("amount"):
            problems.append(Violation(f"{path}.add_entry.amount", "required"))
        else:
            money = money_from_proto(add.amount, f"{path}.add_entry.amount", problems)
        window = window_from_proto(add.window, f"{path}.add_entry.window", problems)
        if len(problems) > before or money is None or window is None:
            return None
        return AddEntry(add.price_list_id, add.sku, money[0], window, max(1, add.min_quantity)), money[1]
    if which == "end_entry":
        end = item.end_entry
        if end.entry_id <= 0:
            problems.append(Violation(f"{path}.end_entry.entry_id", "required"))
            return None
        return EndEntry(end.entry_id, timestamp(end.end_time) if end.HasField("end_time") else None), ""
    problems.append(Violation(path, "exactly one of add_entry or end_entry is required"))
    return None


def validate_sku(sku: str, path: str) -> Problems:
    from retail_pricing.domain.products import validate_id

    return validate_id(sku, path)


def items_to_proto(items: list[Item], currencies: dict[str, str]) -> list[change_sets_pb2.ChangeSetItem]:
    out = []
    for item in items:
        if isinstance(item, EndEntry):
            out.append(
                change_sets_pb2.ChangeSetItem(
                    end_entry=change_sets_pb2.EndPriceEntry(
                        entry_id=item.entry_id, end_time=timestamp_to_proto(item.end)
                    )
                )
            )
        else:
            currency = currencies.get(item.price_list_id, "XXX")
            out.append(
                change_sets_pb2.ChangeSetItem(
                    add_entry=change_sets_pb2.AddPriceEntry(
                        price_list_id=item.price_list_id,
                        sku=item.sku,
                        min_quantity=item.min_quantity,
                        amount=money_to_proto(item.amount, currency),
                        window=window_to_proto(item.window),
                    )
                )
            )
    return out


_GUARD_KINDS = {
    "below_cost_floor": change_sets_pb2.GUARDRAIL_KIND_BELOW_COST_FLOOR,
    "below_minimum_advertised_price": change_sets_pb2.GUARDRAIL_KIND_BELOW_MINIMUM_ADVERTISED_PRICE,
    "change_above_maximum_percent": change_sets_pb2.GUARDRAIL_KIND_CHANGE_ABOVE_MAXIMUM_PERCENT,
}
_SEVERITIES = {
    "warning": change_sets_pb2.GUARDRAIL_SEVERITY_WARNING,
    "blocking": change_sets_pb2.GUARDRAIL_SEVERITY_BLOCKING,
}


def finding_to_proto(finding: dict[str, str]) -> change_sets_pb2.GuardrailFinding:
    return change_sets_pb2.GuardrailFinding(
        kind=_GUARD_KINDS.get(finding["kind"], change_sets_pb2.GUARDRAIL_KIND_UNSPECIFIED),
        severity=_SEVERITIES.get(finding["severity"], change_sets_pb2.GUARDRAIL_SEVERITY_UNSPECIFIED),
        sku=finding["sku"],
        scope=refs_pb2.Scope(
            channel_id=finding.get("channel_id", ""),
            region_id=finding.get("region_id", ""),
            location_id=finding.get("location_id", ""),
            customer_segment=finding.get("customer_segment", ""),
        ),
        message=finding["message"],
    )


def change_set_to_proto(
    cs: StoredChangeSet, items: list[Item], currencies: dict[str, str]
) -> change_sets_pb2.ChangeSet:
    return change_sets_pb2.ChangeSet(
        change_set_id=str(cs.change_set_id),
        description=cs.description,
        state=STATES_OUT[cs.state],
        items=items_to_proto(items, currencies),
        author_id=cs.author_id,
        reviewer_id=cs.reviewer_id or "",
        rejection_reason=cs.rejection_reason or "",
        findings=[finding_to_proto(f) for f in cs.findings],
        reverts_change_set_id="" if cs.reverts_id is None else str(cs.reverts_id),
        reverted_by_change_set_id="" if cs.reverted_by_id is None else str(cs.reverted_by_id),
        etag=str(cs.version),
        create_time=timestamp_to_proto(cs.created_at),
        submit_time=timestamp_to_proto(cs.submitted_at),
        review_time=timestamp_to_proto(cs.reviewed_at),
        item_count=cs.item_count,
    )


# --- resolution ---------------------------------------------------------------------------------------


def amounts_to_proto(amounts: Amounts, currency: str) -> change_sets_pb2.PriceAmounts:
    return change_sets_pb2.PriceAmounts(
        net=money_to_proto(amounts.net, currency),
        tax=money_to_proto(amounts.tax, currency),
        gross=money_to_proto(amounts.gross, currency),
    )


class _ProtoCache:
    """Protos of immutable domain values (entries, lists), reused across resolutions.

    Keyed by object identity and holding the object itself, so a key is never confused with a new
    object at a recycled address; cleared wholesale when it grows past its bound."""

    def __init__(self, bound: int = 200_000) -> None:
        self._bound = bound
        self._items: dict[int, tuple[object, Any]] = {}

    def get(self, value: object, build: Any) -> Any:
        hit = self._items.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        if len(self._items) >= self._bound:
            self._items.clear()
        proto = build()
        self._items[id(value)] = (value, proto)
        return proto


_ENTRIES = _ProtoCache()
_LISTS = _ProtoCache()


@functools.lru_cache(maxsize=65_536)
def _amounts_cached(
    net: Decimal, tax: Decimal, gross: Decimal, currency: str
) -> change_sets_pb2.PriceAmounts:
    return amounts_to_proto(Amounts(net, tax, gross), currency)


@functools.lru_cache(maxsize=1024)
def _decimal_cached(value: Decimal) -> decimal_pb2.Decimal:
    return decimal_to_proto(value)


def _set_timestamp(target: timestamp_pb2.Timestamp, instant: datetime) -> None:
    delta = instant - _EPOCH
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def _build_resolved(resolved: Resolved) -> resolution_pb2.ResolvedPrice:
    """A resolution without its instant, mostly from cached sub-messages."""
    currency = resolved.query.currency
    winner = resolved.winner
    amounts = resolved.amounts
    reference = resolved.reference
    out = resolution_pb2.ResolvedPrice(sku=resolved.query.sku, currency_code=currency)
    out.price.CopyFrom(_amounts_cached(amounts.net, amounts.tax, amounts.gross, currency))
    out.tax_rate.CopyFrom(_decimal_cached(resolved.tax_rate))
    out.entry.CopyFrom(_ENTRIES.get(winner.entry, lambda: entry_to_proto(winner.entry, currency)))
    out.price_list.CopyFrom(
        _LISTS.get(winner.price_list, lambda: bare_price_list_to_proto(winner.price_list))
    )
    _set_timestamp(out.effective_since, resolved.effective_since)
    if reference is not None:
        out.reference_price.CopyFrom(_amounts_cached(reference.net, reference.tax, reference.gross, currency))
    return out


# The last answer built per winning candidate (by identity, holding it): the answer for every query that
# the candidate wins with the same amounts, rate, effective-since and reference, as one message to copy.
_Answer = tuple[object, Amounts, Decimal, datetime, Amounts | None, str, str, resolution_pb2.ResolvedPrice]
_ANSWERS: dict[int, _Answer] = {}
_ANSWERS_BOUND = 200_000
_last_at: list[Any] = [None, 0, 0]  # the last instant written and its Timestamp seconds and nanos


def fill_resolved(target: resolution_pb2.ResolvedPrice, resolved: Resolved) -> None:
    """Write a resolution into `target` (the hot path of ResolvePrice / BatchResolvePrices): one copy of
    the answer built for an identical resolution before (compared by the identity of its cached parts,
    so a miss only costs a rebuild; the rate by value, as each region's timeline holds its own), then
    the query's instant."""
    winner = resolved.winner
    query = resolved.query
    hit = _ANSWERS.get(id(winner))
    if (
        hit is None
        or hit[0] is not winner
        or hit[1] is not resolved.amounts
        or hit[2] != resolved.tax_rate
        or hit[3] != resolved.effective_since
        or hit[4] is not resolved.reference
        or hit[5] != query.currency
        or hit[6] != query.sku
    ):
        if len(_ANSWERS) >= _ANSWERS_BOUND:
            _ANSWERS.clear()
        hit = _ANSWERS[id(winner)] = (
            winner,
            resolved.amounts,
            resolved.tax_rate,
            resolved.effective_since,
            resolved.reference,
            query.currency,
            query.sku,
            _build_resolved(resolved),
        )
    target.CopyFrom(hit[7])
    at = query.at
    if at != _last_at[0]:  # a batch's queries mostly share their instant (the batch's "now")
        delta = at - _EPOCH
        _last_at[:] = at, delta.days * 86_400 + delta.seconds, delta.microseconds * 1000
    at_time = target.at_time
    at_time.seconds, at_time.nanos = _last_at[1], _last_at[2]


def resolved_to_proto(resolved: Resolved) -> resolution_pb2.ResolvedPrice:
    out = resolution_pb2.ResolvedPrice()
    fill_resolved(out, resolved)
    return out
