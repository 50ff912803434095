"""Reservation metrics (DESIGN §7): reservations by event and out-of-stock refusals, by channel.

Counted after the transaction commits, and only when it changed something (an idempotent retry that
returns the stored response counts nothing). One instrument set per Meter, shared by the servicer and
the expiry sweep.
"""

from __future__ import annotations

import functools
from enum import StrEnum

from opentelemetry.metrics import Meter

__all__ = ["ReservationEvent", "ReservationMetrics", "reservation_metrics"]


class ReservationEvent(StrEnum):
    CREATED = "created"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class ReservationMetrics:
    def __init__(self, meter: Meter) -> None:
        self._reservations = meter.create_counter(
            "retail.inventory.reservations",
            unit="{reservation}",
            description="reservations created, confirmed, released or expired (event), by channel",
        )
        self._refusals = meter.create_counter(
            "retail.inventory.out_of_stock_refusals",
            unit="{request}",
            description="reserve requests refused as out of stock, by channel",
        )

    def record(self, event: ReservationEvent, channel: str | None, count: int = 1) -> None:
        """`channel` None where the caller does not know it (the expiry sweep counts in bulk)."""
        if count:
            attributes = {"event": event.value} | ({"channel": channel} if channel else {})
            self._reservations.add(count, attributes)

    def refused(self, channel: str) -> None:
        self._refusals.add(1, {"channel": channel})


@functools.cache
def reservation_metrics(meter: Meter) -> ReservationMetrics:
    """The instruments of `meter` (created once: a second create_* of the same name only warns)."""
    return ReservationMetrics(meter)
