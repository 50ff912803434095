"""A channel's delivery policy as plain values, with the contract's defaults and bounds applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from retail_channel_gateway.domain.changes import ChangeKind, Lane
from retail_channel_gateway.domain.payload import PayloadFormat, Profile

__all__ = ["DeliveryMode", "DeliverySettings", "settings_from_json", "settings_to_json"]


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
    currency: str = ""  # pushed price changes carry composed amounts in it; empty = no amounts

    @property
    def profile(self) -> Profile:
        return Profile(format=self.payload_format, include_stock_detail=self.include_stock_detail)


def settings_to_json(settings: DeliverySettings) -> dict[str, object]:
    return {
        "mode": settings.mode,
        "webhook_url": settings.webhook_url,
        "lead_time_s": settings.lead_time.total_seconds(),
        "rate_per_second": settings.rate_per_second,
        "burst": settings.burst,
        "batch_size": settings.batch_size,
        "timeout_s": settings.timeout,
        "max_attempts": settings.max_attempts,
        "initial_backoff_s": settings.initial_backoff,
        "max_backoff_s": settings.max_backoff,
        "failure_threshold": settings.failure_threshold,
        "open_for_s": settings.open_for,
        "payload_format": settings.payload_format,
        "change_kinds": sorted(k.value for k in settings.change_kinds),
        "include_stock_detail": settings.include_stock_detail,
        "stock_lane": settings.stock_lane.name,
        "retention_s": settings.retention.total_seconds(),
        "currency": settings.currency,
    }


def settings_from_json(data: dict[str, Any]) -> DeliverySettings:
    return DeliverySettings(
        mode=str(data["mode"]),
        webhook_url=str(data.get("webhook_url", "")),
        lead_time=timedelta(seconds=float(data.get("lead_time_s", 0))),
        rate_per_second=float(data.get("rate_per_second", 0)),
        burst=int(data.get("burst", 0)),
        batch_size=int(data.get("batch_size", 100)),
        timeout=float(data.get("timeout_s", 10)),
        max_attempts=int(data.get("max_attempts", 8)),
        initial_backoff=float(data.get("initial_backoff_s", 0.5)),
        max_backoff=float(data.get("max_backoff_s", 60)),
        failure_threshold=int(data.get("failure_threshold", 5)),
        open_for=float(data.get("open_for_s", 30)),
        payload_format=str(data.get("payload_format", PayloadFormat.JSON)),
        change_kinds=frozenset(ChangeKind(k) for k in data.get("change_kinds", [])),
        include_stock_detail=bool(data.get("include_stock_detail", False)),
        stock_lane=Lane[str(data.get("stock_lane", "BULK"))],
        retention=timedelta(seconds=float(data.get("retention_s", 7 * 86400))),
        currency=str(data.get("currency", "")),
    )
