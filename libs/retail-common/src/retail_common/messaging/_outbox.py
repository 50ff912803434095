"""Outbox writer: an event row written in the caller's transaction, with the aggregate's next version."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.message import Message

from retail_common.clock import Clock, SystemClock
from retail_common.db import Connection
from retail_common.messaging._envelope import new_event_id
from retail_common.messaging._propagation import current_trace_headers

__all__ = ["OutboxWriter", "Payload"]

Payload = Message | bytes | Callable[[int], Message | bytes]

_BUMP = """
insert into aggregate_versions (aggregate_type, aggregate_key, version) values ($1, $2, 1)
on conflict (aggregate_type, aggregate_key) do update set version = aggregate_versions.version + 1
returning version
"""

_INSERT = """
insert into outbox (event_id, subject, event_type, schema_version, aggregate_type, aggregate_key,
                    aggregate_version, payload, occurred_at, traceparent, tracestate)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""


def _bytes(payload: Message | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.SerializeToString(deterministic=True)


class OutboxWriter:
    """Appends events to the outbox inside the caller's transaction (never publishes itself).

    The version bump is an upsert on `aggregate_versions`, which holds that row's lock until the caller
    commits: concurrent writers of one aggregate serialise, so versions are 1..n without gaps among
    committed transactions (a rollback rolls its bump back too), and for one aggregate the outbox ids
    are in version order.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()

    async def append(
        self,
        conn: Connection,
        *,
        subject: str,
        event_type: str,
        aggregate_type: str,
        aggregate_key: str,
        payload: Payload,
        schema_version: int = 1,
        occurred_at: datetime | None = None,
    ) -> tuple[uuid.UUID, int]:
        """Write one event; returns (event id, aggregate version).

        `payload` may be a callable taking the new version, for state-carried events whose body holds it.
        Must be called inside a transaction (the caller's): raises RuntimeError otherwise.
        """
        if not conn.is_in_transaction():
            raise RuntimeError("OutboxWriter.append must run inside the caller's transaction")
        if schema_version < 1:
            raise ValueError("schema_version must be >= 1")
        version = int(await conn.fetchval(_BUMP, aggregate_type, aggregate_key))
        body = _bytes(payload(version) if callable(payload) else payload)
        event_id = new_event_id()
        traceparent, tracestate = current_trace_headers()
        instant = occurred_at or self._clock.now()
        await conn.execute(
            _INSERT,
            event_id,
            subject,
            event_type,
            schema_version,
            aggregate_type,
            aggregate_key,
            version,
            body,
            instant.astimezone(UTC),
            traceparent,
            tracestate,
        )
        return event_id, version
