"""Tracer and meter of the messaging package, plus the `messaging.*` attributes both span kinds share."""

from __future__ import annotations

from opentelemetry import metrics, trace

from retail_common.telemetry import meter as telemetry_meter

__all__ = ["SCOPE", "message_attributes", "meter", "tracer"]

SCOPE = "retail_common.messaging"


def tracer() -> trace.Tracer:
    return trace.get_tracer(SCOPE)


def meter() -> metrics.Meter:
    return telemetry_meter(SCOPE)


def message_attributes(subject: str, message_id: str, size: int, operation: str) -> dict[str, str | int]:
    return {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": operation,
        "messaging.message.id": message_id,
        "messaging.message.body.size": size,
    }
