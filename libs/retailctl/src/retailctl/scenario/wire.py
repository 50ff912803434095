"""Small conversions to and from wire types (google.type.Money / Decimal, Timestamp)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from google.type.decimal_pb2 import Decimal as PbDecimal
from google.type.money_pb2 import Money

__all__ = ["amount", "money", "pb_decimal", "timestamp", "to_datetime"]


def money(value: str | Decimal, currency: str) -> Money:
    d = Decimal(value)
    units = int(d)
    return Money(currency_code=currency, units=units, nanos=int((d - units) * 1_000_000_000))


def amount(m: Money) -> Decimal:
    return Decimal(m.units) + Decimal(m.nanos) / Decimal(1_000_000_000)


def pb_decimal(value: str) -> PbDecimal:
    return PbDecimal(value=value)


def timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at.astimezone(UTC))
    return ts


def to_datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)
