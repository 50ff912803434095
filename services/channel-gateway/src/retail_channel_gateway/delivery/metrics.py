"""Delivery metrics (DESIGN §7): backlog and lag per channel, deliveries ok/failed, dead letters,
breaker state. Gauges read the latest values the channel workers publish into `ChannelGauges`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from retail_channel_gateway.domain.breaker import BreakerState

__all__ = ["ChannelGauges", "DeliveryMetrics"]

_BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass
class ChannelGauges:
    backlog: dict[str, int] = field(default_factory=dict)
    lag_seconds: dict[str, float] = field(default_factory=dict)
    breaker: dict[str, BreakerState] = field(default_factory=dict)

    def forget(self, channel_id: str) -> None:
        self.backlog.pop(channel_id, None)
        self.lag_seconds.pop(channel_id, None)
        self.breaker.pop(channel_id, None)


class DeliveryMetrics:
    def __init__(self, meter: Meter) -> None:
        self.gauges = ChannelGauges()
        self.deliveries = meter.create_counter(
            "retail.channel.deliveries",
            unit="{change}",
            description="changes delivered, by channel and outcome",
        )
        self.dead_letters = meter.create_counter(
            "retail.channel.dead_letters", unit="{change}", description="changes dead-lettered, by channel"
        )
        meter.create_observable_gauge(
            "retail.channel.backlog",
            callbacks=[self._backlog],
            unit="{entity}",
            description="undelivered entities",
        )
        meter.create_observable_gauge(
            "retail.channel.lag",
            callbacks=[self._lag],
            unit="s",
            description="age of the oldest undelivered change",
        )
        meter.create_observable_gauge(
            "retail.channel.breaker_state",
            callbacks=[self._breaker],
            description="circuit breaker: 0 closed, 1 half-open, 2 open",
        )

    def _backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"channel": c}) for c, v in list(self.gauges.backlog.items())]

    def _lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"channel": c}) for c, v in list(self.gauges.lag_seconds.items())]

    def _breaker(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(_BREAKER_VALUE[v], {"channel": c}) for c, v in list(self.gauges.breaker.items())]
