"""Inbox consumers of the domain events the gateway projects (one durable per source stream).

Each consumer takes its whole domain stream (`retail.<domain>.>`) and dispatches by the event-type
header, the stable contract; one durable per stream keeps the number of consumers small. Events the
gateway does not consume are recorded and skipped.
"""

from __future__ import annotations

import asyncpg
from nats.js import JetStreamContext

from retail_channel_gateway.domain.decode import EventFacts, decode_event
from retail_channel_gateway.projector import Projector
from retail_common.db import Connection
from retail_common.messaging import Envelope, Handler, InboxConsumer

__all__ = ["SOURCES", "domain_consumers", "projection_handler"]

# (stream, durable, filter)
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("PRICING", "channel-gateway-pricing", "retail.pricing.>"),
    ("INVENTORY", "channel-gateway-inventory", "retail.inventory.>"),
    ("PROMOTION", "channel-gateway-promotion", "retail.promotion.>"),
)


def projection_handler(projector: Projector) -> Handler:
    async def handle(conn: Connection, envelope: Envelope) -> None:
        facts = EventFacts(envelope.aggregate_key, envelope.aggregate_version, envelope.occurred_at)
        change = decode_event(envelope.event_type, envelope.payload, facts)
        if change is not None:
            await projector.apply(conn, change)

    return handle


def domain_consumers(
    pool: asyncpg.Pool[asyncpg.Record],
    js: JetStreamContext,
    projector: Projector,
    *,
    batch: int = 200,
    fetch_timeout: float = 1.0,
) -> list[InboxConsumer]:
    handler = projection_handler(projector)
    return [
        InboxConsumer(
            pool,
            js,
            stream=stream,
            durable=durable,
            filter_subject=subject,
            handler=handler,
            batch=batch,
            fetch_timeout=fetch_timeout,
        )
        for stream, durable, subject in SOURCES
    ]
