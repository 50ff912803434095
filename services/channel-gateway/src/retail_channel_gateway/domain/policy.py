"""A channel's delivery policy as plain values, with the contract's defaults and bounds applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from retail_channel_gateway.domain.changes import ChangeKind, Lane
from retail_channel_gateway.domain.payload import PayloadFormat, Profile

__all__ = ["DeliveryMode", "DeliverySettings"]


class DeliveryMode:
    WEBHOOK = "webhook"
    NATS = "nats_subject"
    STREAM = "change_stream"


@dataclass(frozen=True)
class DeliverySettings:
    mode: str
    webhook_url: str = ""
    lead_time: timedelta = timedelta(0)
    rate_per_second: float = 0.0
    burst: int = 0
    batch_size: int = 100
    timeout: float = 10.0
    max_attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 60.0
    failure_threshold: int = 5
    open_for: float = 30.0
    payload_format: str = PayloadFormat.JSON
    change_kinds: frozenset[ChangeKind] = frozenset()
    include_stock_detail: bool = False
    stock_lane: Lane = Lane.BULK
    retention: timedelta = timedelta(days=7)

    @property
    def profile(self) -> Profile:
        return Profile(format=self.payload_format, include_stock_detail=self.include_stock_detail)
