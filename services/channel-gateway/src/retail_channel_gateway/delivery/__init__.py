"""Outbound delivery: per owned channel, by mode, under rate limit, retries, breaker and lanes."""

from retail_channel_gateway.delivery.engine import DeliveryEngine
from retail_channel_gateway.delivery.transports import (
    DeliveryOutcome,
    NatsTransport,
    Transport,
    WebhookTransport,
    delivery_subject,
)

__all__ = [
    "DeliveryEngine",
    "DeliveryOutcome",
    "NatsTransport",
    "Transport",
    "WebhookTransport",
    "delivery_subject",
]
