"""Parsing and showing the values operators type: money, instants, counts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import decimal_pb2, money_pb2

from retailctl.csvinput import RowError

__all__ = ["decimal_text", "money", "money_text", "parse_instant", "parse_int", "to_timestamp"]

_NANOS = Decimal(1_000_000_000)


def money(text: str, column: str) -> money_pb2.Money:
    """ "12.50 EUR" -> Money (google.type.Money keeps units and nanos with the same sign)."""
    parts = text.split()
    if len(parts) != 2 or len(parts[1]) != 3 or not parts[1].isalpha():
        raise RowError(column, f"{text!r} is not an amount with its currency, e.g. '12.50 EUR'")
    try:
        amount = Decimal(parts[0])
    except InvalidOperation:
        raise RowError(column, f"{parts[0]!r} is not a decimal amount") from None
    if not amount.is_finite() or amount < 0:
        raise RowError(column, f"{parts[0]!r} must be a finite amount, not negative")
    units = int(amount)
    return money_pb2.Money(currency_code=parts[1].upper(), units=units, nanos=int((amount - units) * _NANOS))


def money_text(value: money_pb2.Money) -> str:
    amount = Decimal(value.units) + Decimal(value.nanos) / _NANOS
    return f"{amount.normalize():f} {value.currency_code}" if value.currency_code else "-"


def decimal_text(value: decimal_pb2.Decimal) -> str:
    return value.value or "-"


def parse_instant(text: str, column: str) -> datetime:
    """RFC 3339 with an offset ("2026-03-01T00:00:00Z")."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(column, f"{text!r} is not an RFC 3339 instant, e.g. 2026-03-01T00:00:00Z") from None
    if instant.tzinfo is None:
        raise RowError(column, f"{text!r} needs an offset, e.g. 2026-03-01T00:00:00Z")
    return instant.astimezone(UTC)


def to_timestamp(instant: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(instant)
    return value


def parse_int(text: str, column: str, low: int, high: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise RowError(column, f"{text!r} is not a whole number") from None
    if not low <= number <= high:
        raise RowError(column, f"{number} is outside {low:,}..{high:,}")
    return number
