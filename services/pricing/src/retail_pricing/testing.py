"""Builders of pricing protos for tests (integration, gRPC, benchmarks)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf import timestamp_pb2
from google.type import money_pb2

from retail.common.v1 import money_pb2 as common_money_pb2
from retail.common.v1 import time_window_pb2
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, products_pb2, resolution_pb2


def ts(instant: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(instant.astimezone(UTC))
    return out


def money(amount: str, currency: str = "EUR") -> money_pb2.Money:
    d = Decimal(amount)
    units = int(d)
    return money_pb2.Money(currency_code=currency, units=units, nanos=int((d - units) * 1_000_000_000))


def as_decimal(m: money_pb2.Money) -> Decimal:
    return Decimal(m.units) + Decimal(m.nanos) / Decimal(1_000_000_000)


def product(
    sku: str, *, active: bool = True, cost: str | None = None, map_price: str | None = None
) -> products_pb2.Product:
    return products_pb2.Product(
        sku=sku,
        title=f"Product {sku}",
        status=products_pb2.PRODUCT_STATUS_ACTIVE if active else products_pb2.PRODUCT_STATUS_INACTIVE,
        tax_class="standard",
        cost_price=None if cost is None else money(cost),
        minimum_advertised_price=None if map_price is None else money(map_price),
    )


def price_list(
    list_id: str,
    kind: int = price_lists_pb2.PRICE_LIST_KIND_BASE,
    *,
    currency: str = "EUR",
    locations: tuple[str, ...] = (),
    channels: tuple[str, ...] = (),
) -> price_lists_pb2.PriceList:
    return price_lists_pb2.PriceList(
        price_list_id=list_id,
        display_name=list_id,
        currency_code=currency,
        kind=kind,  # type: ignore[arg-type]
        scope=price_lists_pb2.PriceListScope(location_ids=list(locations), channel_ids=list(channels)),
        tax_treatment=common_money_pb2.TAX_TREATMENT_INCLUDED,
        status=price_lists_pb2.PRICE_LIST_STATUS_ACTIVE,
    )


def add(
    list_id: str, sku: str, amount: str, start: datetime, end: datetime | None = None, currency: str = "EUR"
) -> change_sets_pb2.ChangeSetItem:
    return change_sets_pb2.ChangeSetItem(
        add_entry=change_sets_pb2.AddPriceEntry(
            price_list_id=list_id,
            sku=sku,
            amount=money(amount, currency),
            window=time_window_pb2.TimeWindow(
                absolute=time_window_pb2.AbsoluteWindow(
                    start_time=ts(start), end_time=None if end is None else ts(end)
                )
            ),
        )
    )


def end(entry_id: int, at: datetime | None = None) -> change_sets_pb2.ChangeSetItem:
    return change_sets_pb2.ChangeSetItem(
        end_entry=change_sets_pb2.EndPriceEntry(entry_id=entry_id, end_time=None if at is None else ts(at))
    )


def query(
    sku: str, at: datetime | None = None, *, location_id: str = "", channel_id: str = "", quantity: int = 0
) -> resolution_pb2.PriceQuery:
    return resolution_pb2.PriceQuery(
        sku=sku,
        currency_code="EUR",
        at_time=None if at is None else ts(at),
        location_id=location_id,
        channel_id=channel_id,
        quantity=quantity,
    )
