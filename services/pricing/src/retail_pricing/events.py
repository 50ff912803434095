"""The pricing service's events, written to the outbox in the caller's transaction (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from retail.common.v1 import refs_pb2
from retail.pricing.v1 import events_pb2, price_lists_pb2, products_pb2
from retail_common.db import Connection
from retail_common.messaging import OutboxEvent, OutboxWriter, event_name, event_subject
from retail_pricing.convert import timestamp_to_proto
from retail_pricing.domain.preview import Probe

__all__ = [
    "DOMAIN",
    "PRICE_CHANGED",
    "PRICE_LIST_UPSERTED",
    "PRODUCT_UPSERTED",
    "TAX_RATE_CHANGED",
    "PriceChange",
    "price_changed",
    "price_changed_many",
    "price_list_upserted",
    "product_upserted",
    "product_upserted_many",
    "scope_to_proto",
    "subject",
    "tax_rate_changed",
]

DOMAIN = "pricing"
# Event message names; subjects use their snake_case form through the shared subject encoder:
# retail.pricing.v1.<snake_name>.<aggregate key token>.
PRODUCT_UPSERTED = "ProductUpserted"
PRICE_CHANGED = "PriceChanged"
PRICE_LIST_UPSERTED = "PriceListUpserted"
TAX_RATE_CHANGED = "TaxRateChanged"


def subject(event: str, key: str) -> str:
    return event_subject(DOMAIN, event_name(event), key)


async def _append(
    writer: OutboxWriter, conn: Connection, event: str, aggregate: str, key: str, payload: Message
) -> int:
    _, version = await writer.append(
        conn,
        subject=subject(event, key),
        event_type=f"retail.pricing.v1.{event}",
        aggregate_type=aggregate,
        aggregate_key=key,
        payload=payload,
    )
    return version


async def product_upserted_many(
    writer: OutboxWriter, conn: Connection, products: Sequence[products_pb2.Product]
) -> None:
    """ProductUpserted for each product, two statements in all."""
    await writer.append_many(
        conn,
        [
            OutboxEvent(
                subject=subject(PRODUCT_UPSERTED, p.sku),
                event_type=f"retail.pricing.v1.{PRODUCT_UPSERTED}",
                aggregate_type="product",
                aggregate_key=p.sku,
                payload=events_pb2.ProductUpserted(product=p),
            )
            for p in products
        ],
    )


async def product_upserted(writer: OutboxWriter, conn: Connection, product: products_pb2.Product) -> None:
    await _append(
        writer, conn, PRODUCT_UPSERTED, "product", product.sku, events_pb2.ProductUpserted(product=product)
    )


async def price_list_upserted(
    writer: OutboxWriter, conn: Connection, price_list: price_lists_pb2.PriceList
) -> None:
    await _append(
        writer,
        conn,
        PRICE_LIST_UPSERTED,
        "price_list",
        price_list.price_list_id,
        events_pb2.PriceListUpserted(price_list=price_list),
    )


async def tax_rate_changed(writer: OutboxWriter, conn: Connection, tax_rate: price_lists_pb2.TaxRate) -> None:
    key = f"{tax_rate.region_id}/{tax_rate.tax_class}"

    def payload(version: int) -> Message:
        return events_pb2.TaxRateChanged(tax_rate=tax_rate, version=version)

    await writer.append(
        conn,
        subject=subject(TAX_RATE_CHANGED, key),
        event_type=f"retail.pricing.v1.{TAX_RATE_CHANGED}",
        aggregate_type="tax_rate",
        aggregate_key=key,
        payload=payload,
    )


def scope_to_proto(probe: Probe) -> refs_pb2.Scope:
    return refs_pb2.Scope(
        channel_id=probe.channel_id,
        region_id=probe.region_id,
        location_id=probe.location_id,
        customer_segment=probe.customer_segment,
    )


@dataclass(frozen=True)
class PriceChange:
    """One PriceChanged to announce (its version is assigned by the outbox: the SKU's next one)."""

    sku: str
    scopes: frozenset[Probe]
    effective_time: datetime
    cause: events_pb2.PriceChangeCause.ValueType
    change_set_id: str = ""


def _price_changed_event(change: PriceChange) -> OutboxEvent:
    ordered = sorted(
        change.scopes, key=lambda p: (p.channel_id, p.region_id, p.location_id, p.customer_segment)
    )

    def payload(version: int) -> Message:
        return events_pb2.PriceChanged(
            sku=change.sku,
            version=version,
            affected_scopes=[scope_to_proto(p) for p in ordered],
            effective_time=timestamp_to_proto(change.effective_time),
            cause=change.cause,
            change_set_id=change.change_set_id,
        )

    return OutboxEvent(
        subject=subject(PRICE_CHANGED, change.sku),
        event_type=f"retail.pricing.v1.{PRICE_CHANGED}",
        aggregate_type="sku_price",
        aggregate_key=change.sku,
        payload=payload,
    )


async def price_changed_many(
    writer: OutboxWriter, conn: Connection, changes: Sequence[PriceChange], chunk: int = 5000
) -> None:
    """Many PriceChanged events, two statements per chunk (per-SKU versions 1, 2, ... without gaps)."""
    for first in range(0, len(changes), chunk):
        await writer.append_many(conn, [_price_changed_event(c) for c in changes[first : first + chunk]])


async def price_changed(
    writer: OutboxWriter,
    conn: Connection,
    *,
    sku: str,
    scopes: Iterable[Probe],
    effective_time: datetime,
    cause: events_pb2.PriceChangeCause.ValueType,
    change_set_id: str,
) -> int:
    """One PriceChanged for a SKU; returns its version."""
    change = PriceChange(sku, frozenset(scopes), effective_time, cause, change_set_id)
    _, version = await writer.append(conn, **_event_kwargs(_price_changed_event(change)))
    return version


def _event_kwargs(event: OutboxEvent) -> dict[str, Any]:
    return {
        "subject": event.subject,
        "event_type": event.event_type,
        "aggregate_type": event.aggregate_type,
        "aggregate_key": event.aggregate_key,
        "payload": event.payload,
    }
