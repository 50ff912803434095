"""Outbox relay: publishes committed, unpublished outbox rows to JetStream, then marks them.

- Scans `published_at is null` in id order (never a high-water mark over ids: a row whose transaction
  commits late has a smaller id than rows already published and would be skipped forever).
- Publishes a batch pipelined (publish_async, all in flight at once, sent in id order on one
  connection), awaits every PubAck; a row whose ack does not come is retried on a later pass with the
  same Nats-Msg-Id, so the stream's duplicate window makes it exactly-once into the stream.
- Marks only acknowledged rows. No row lock is held across the network: a single active relay is
  guaranteed by a lease, and a rare overlap at lease hand-over only produces deduplicated re-publishes.
- Adaptive polling: immediately again while batches come back full, otherwise back off from
  `min_poll` to `max_poll`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from retail_common.db import DATABASE_ERRORS
from retail_common.messaging._envelope import (
    H_AGGREGATE_KEY,
    H_AGGREGATE_TYPE,
    H_AGGREGATE_VERSION,
    H_EVENT_TYPE,
    H_MSG_ID,
    H_OCCURRED_AT,
    H_SCHEMA_VERSION,
    format_instant,
)
from retail_common.messaging._lease import Lease
from retail_common.messaging._propagation import extract_context, inject_context
from retail_common.messaging._telemetry import message_attributes
from retail_common.messaging._telemetry import meter as default_meter
from retail_common.messaging._telemetry import tracer as default_tracer

__all__ = ["OutboxRelay"]

_log = logging.getLogger(__name__)
_DB_ERRORS = DATABASE_ERRORS

_SELECT = """
select id, event_id, subject, event_type, schema_version, aggregate_type, aggregate_key,
       aggregate_version, payload, occurred_at, traceparent, tracestate,
       extract(epoch from clock_timestamp() - created_at)::float8 as age
from outbox where published_at is null order by id limit $1
"""

_MARK = """
update outbox set published_at = now(), stream = x.stream, stream_seq = x.seq
from unnest($1::bigint[], $2::text[], $3::bigint[]) as x(id, stream, seq)
where outbox.id = x.id and outbox.published_at is null
"""

_PRUNE = """
delete from outbox where id in (
    select id from outbox where published_at < now() - make_interval(secs => $1) limit $2)
"""


@dataclass(frozen=True)
class _Published:
    row_id: int
    stream: str
    seq: int


class OutboxRelay:
    """One per service process; only the lease holder publishes, the others stand by."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        js: JetStreamContext,
        *,
        lease_name: str,
        holder_id: str | None = None,
        batch_size: int = 500,
        lease_ttl: float = 10.0,
        publish_timeout: float = 5.0,
        min_poll: float = 0.005,
        max_poll: float = 0.2,
        retention: float = 7 * 24 * 3600.0,
        prune_interval: float = 60.0,
        tracer: trace.Tracer | None = None,
        meter: metrics.Meter | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._pool = pool
        self._js = js
        self.holder_id = holder_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease = Lease(pool, lease_name, self.holder_id, lease_ttl)
        self._batch_size = batch_size
        self._publish_timeout = publish_timeout
        self._min_poll = min_poll
        self._max_poll = max_poll
        self._retention = retention
        self._prune_interval = prune_interval
        self._tracer = tracer or default_tracer()
        self._stopping = asyncio.Event()
        self._lag = 0.0
        self.published_count = 0
        m = meter or default_meter()
        attrs = {"lease": lease_name}
        self._published_counter = m.create_counter(
            "retail.outbox.published", unit="{event}", description="outbox events published and acked"
        )
        self._failed_counter = m.create_counter(
            "retail.outbox.publish_failures", unit="{event}", description="publishes not acked (retried)"
        )
        m.create_observable_gauge(
            "retail.outbox.lag",
            callbacks=[lambda _options: [metrics.Observation(self._lag, attrs)]],
            unit="s",
            description="age of the oldest unpublished outbox row (0 when caught up)",
        )
        self._attrs = attrs

    @property
    def is_active(self) -> bool:
        return self._lease.held

    @property
    def lag_seconds(self) -> float:
        return self._lag

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Relay until `stop()` (or cancellation); releases the lease on the way out."""
        delay = self._min_poll
        next_prune = time.monotonic() + self._prune_interval
        try:
            while not self._stopping.is_set():
                if self._lease.due() and not await self._lease.acquire_or_renew():
                    self._lag = 0.0
                    await self._sleep(self._lease.ttl / 4)
                    continue
                try:
                    selected, failed = await self.relay_once()
                except _DB_ERRORS as exc:
                    _log.warning("outbox relay: database error: %s", exc)
                    await self._sleep(0.5)
                    continue
                if failed:
                    delay = min(max(delay * 2, 0.05), 1.0)
                elif selected >= self._batch_size:
                    delay = 0.0
                elif selected:
                    delay = self._min_poll
                else:
                    delay = min(max(delay * 2, self._min_poll), self._max_poll)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self._prune_interval
                    with contextlib.suppress(*_DB_ERRORS):
                        await self.prune()
                if delay:
                    await self._sleep(delay)
                else:
                    await asyncio.sleep(0)
        finally:
            await self._lease.release()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def relay_once(self) -> tuple[int, int]:
        """One pass: select a batch, publish it, mark what was acked. Returns (selected, failed)."""
        rows = await self._pool.fetch(_SELECT, self._batch_size, timeout=10.0)
        self._lag = max((float(r["age"]) for r in rows), default=0.0)
        if not rows or not self._lease.held:
            return len(rows), 0
        done = await self._publish(rows)
        if done:
            await self._pool.execute(
                _MARK,
                [d.row_id for d in done],
                [d.stream for d in done],
                [d.seq for d in done],
                timeout=10.0,
            )
            self.published_count += len(done)
            self._published_counter.add(len(done), self._attrs)
        failed = len(rows) - len(done)
        if failed:
            self._failed_counter.add(failed, self._attrs)
        return len(rows), failed

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> list[_Published]:
        in_flight: list[tuple[asyncpg.Record, trace.Span, asyncio.Future[PubAck]]] = []
        for row in rows:
            span = self._start_span(row)
            try:
                future = await self._js.publish_async(
                    row["subject"], row["payload"], headers=_headers(row, span)
                )
            except Exception as exc:
                _end_failed(span, exc)
                break  # keep per-aggregate order: nothing after a row that could not be sent
            in_flight.append((row, span, future))
        if not in_flight:
            return []
        futures = [f for _, _, f in in_flight]
        await asyncio.wait(futures, timeout=self._publish_timeout)
        done: list[_Published] = []
        for row, span, future in in_flight:
            if future.done() and not future.cancelled() and future.exception() is None:
                ack = future.result()
                span.set_attribute("messaging.nats.stream.sequence", ack.seq)
                if ack.duplicate:
                    span.set_attribute("messaging.nats.duplicate", True)
                span.end()
                done.append(_Published(row["id"], ack.stream, ack.seq))
            else:
                error = future.exception() if future.done() and not future.cancelled() else None
                future.cancel()
                _end_failed(span, error or TimeoutError("no PubAck in time"))
        return done

    def _start_span(self, row: asyncpg.Record) -> trace.Span:
        parent = extract_context(row["traceparent"], row["tracestate"])
        attributes: dict[str, Any] = message_attributes(
            row["subject"], str(row["event_id"]), len(row["payload"]), "send"
        )
        attributes["messaging.operation.name"] = "publish"
        attributes["retail.event.type"] = row["event_type"]
        attributes["retail.aggregate.key"] = row["aggregate_key"]
        attributes["retail.aggregate.version"] = row["aggregate_version"]
        return self._tracer.start_span(
            f"publish {row['subject']}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )

    async def prune(self, limit: int = 5000) -> int:
        """Delete published rows older than the retention; returns how many were deleted."""
        status = await self._pool.execute(_PRUNE, self._retention, limit, timeout=30.0)
        return int(status.split()[-1])


def _headers(row: asyncpg.Record, span: trace.Span) -> dict[str, str]:
    headers = {
        H_MSG_ID: str(row["event_id"]),
        H_EVENT_TYPE: row["event_type"],
        H_SCHEMA_VERSION: str(row["schema_version"]),
        H_AGGREGATE_TYPE: row["aggregate_type"],
        H_AGGREGATE_KEY: row["aggregate_key"],
        H_AGGREGATE_VERSION: str(row["aggregate_version"]),
        H_OCCURRED_AT: format_instant(row["occurred_at"]),
    }
    headers.update(inject_context(trace.set_span_in_context(span)))
    return headers


def _end_failed(span: trace.Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()
