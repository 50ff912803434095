"""Delivers one channel's queue while this replica holds the channel's lease.

Loop: next batch (FAST lane first, then projection order; only due entries) -> rate limit -> breaker ->
deliver by mode -> record the outcome in one transaction (ledger, stats, events). A failure backs each
change off with full jitter and dead-letters it after the policy's attempts; while the breaker is open
nothing is attempted, so the backlog waits intact. A 429 pauses the channel without counting attempts.
Per-store entities of a store group (domain/store_scope.py) go in webhook requests of one store each,
so one store's failure retries and dead-letters that store's changes only and does not count toward
the group's breaker (which guards the group's endpoint, not each store). Their events list the stores
of the batch (one per entity version and outcome), in every mode.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import asyncpg
import grpc
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from retail.channel.v1 import changes_pb2, events_pb2
from retail_channel_gateway.delivery.composer import PriceComposer
from retail_channel_gateway.delivery.metrics import DeliveryMetrics
from retail_channel_gateway.delivery.transports import DeliveryOutcome, Transport
from retail_channel_gateway.domain.backoff import backoff_delay
from retail_channel_gateway.domain.breaker import BreakerState, CircuitBreaker
from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.domain.ratelimit import TokenBucket
from retail_channel_gateway.domain.store_scope import by_store, store_of
from retail_channel_gateway.events import TRACKED_KINDS, EventWriter
from retail_channel_gateway.repository import ChannelRepository, LedgerRepository, PendingRow
from retail_common.clock import Clock
from retail_common.db import transaction
from retail_common.errors import DomainError
from retail_common.messaging import Lease, extract_context

__all__ = ["ChannelWorker"]

_log = logging.getLogger(__name__)
_TRACER = trace.get_tracer("retail_channel_gateway.delivery")


class ChannelWorker:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        channel_id: str,
        *,
        lease: Lease,
        transports: dict[str, Transport],
        events: EventWriter,
        metrics: DeliveryMetrics,
        clock: Clock,
        owner: str,
        poll: float = 0.05,
        gauge_interval: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        composer: PriceComposer | None = None,
    ) -> None:
        self._pool = pool
        self.channel_id = channel_id
        self._lease = lease
        self._transports = transports
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._owner = owner
        self._poll = poll
        self._gauge_interval = gauge_interval
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._composer = composer
        self._channels = ChannelRepository()
        self._ledger = LedgerRepository()
        self._settings: DeliverySettings | None = None
        self._served: tuple[str, ...] = ()  # the channel's locations, for composed prices
        self._breaker: CircuitBreaker | None = None
        self._bucket: TokenBucket | None = None
        self._stored_state: BreakerState | None = None
        self._gauges_at = -1e18

    # ------------------------------------------------------------------------------------------ loop

    async def run(self) -> None:
        while True:
            try:
                pause = await self.step()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                _log.warning("channel %s: delivery step failed: %s", self.channel_id, exc)
                pause = 1.0
            if pause > 0:
                await asyncio.sleep(pause)

    async def step(self) -> float:
        """One iteration; returns how long to pause before the next."""
        settings = await self._load_settings()
        if settings is None:
            return 1.0
        transport = self._transports.get(settings.mode)
        if transport is None:
            return 1.0
        breaker, bucket = self._governors(settings)
        await self._sync_breaker(breaker.state)
        await self._publish_gauges()
        if self._lease.remaining() <= settings.timeout:
            return self._poll  # the engine renews the lease; never start a send that could outlive it
        async with self._pool.acquire() as conn:
            rows = await self._ledger.pending(conn, self.channel_id, self._clock.now(), settings.batch_size)
        if not rows:
            return self._poll
        wait = bucket.wait_time()
        if wait > 0:
            return wait
        if breaker.state is BreakerState.OPEN:
            return min(max(breaker.retry_in(), 0.01), 1.0)
        changes = [self._change(row) for row in rows]
        if settings.mode == DeliveryMode.WEBHOOK:
            rows, changes = _one_store(rows, changes)
        if not await self._compose(settings, changes):
            return 1.0  # pricing/promotion unavailable: retry later, not the channel's failure
        if not breaker.allow():
            return min(max(breaker.retry_in(), 0.01), 1.0)
        bucket.try_take()
        with self._delivery_span(settings, rows) as span:
            outcome = await transport.deliver(self.channel_id, settings, changes)
            span.set_attribute("retail.delivery.ok", outcome.ok)
            if not outcome.ok:
                span.set_status(Status(StatusCode.ERROR, outcome.error))
        return await self._record(settings, breaker, rows, outcome, changes)

    # ------------------------------------------------------------------------------------- outcomes

    async def _record(
        self,
        settings: DeliverySettings,
        breaker: CircuitBreaker,
        rows: list[PendingRow],
        outcome: DeliveryOutcome,
        changes: list[changes_pb2.ChannelChange],
    ) -> float:
        now = self._clock.now()
        attrs = {"channel": self.channel_id}
        if outcome.ok:
            breaker.record_success()
            async with transaction(self._pool) as conn:
                items = [(row.entity_key, row.version) for row in rows]
                await self._ledger.mark_delivered(
                    conn, self.channel_id, items, acknowledged=outcome.acknowledged
                )
                await self._ledger.record_composed(conn, self.channel_id, _composed(rows, changes))
                await self._ledger.record_outcome(conn, self.channel_id, ok=len(rows), failed=0, now=now)
                state = (
                    events_pb2.DELIVERY_STATE_ACKNOWLEDGED
                    if outcome.acknowledged
                    else events_pb2.DELIVERY_STATE_DELIVERED
                )
                tracked = [
                    (row.entity_key, row.kind, row.version) for row in rows if row.kind in TRACKED_KINDS
                ]
                for key, kind, version, stores in by_store(tracked):
                    await self._events.delivery_state(
                        conn, channel_id=self.channel_id, entity_key=key, kind=kind, version=version,
                        state=state, detail="", at=now, location_ids=stores,
                    )  # fmt: skip
            self._metrics.deliveries.add(len(rows), attrs | {"outcome": "ok"})
            await self._sync_breaker(breaker.state)
            return 0.0
        if outcome.throttled_for is not None:
            _log.info("channel %s paused %.1fs: %s", self.channel_id, outcome.throttled_for, outcome.error)
            return outcome.throttled_for
        if settings.mode != DeliveryMode.WEBHOOK or _store(changes[0]) is None:
            breaker.record_failure()  # a store's failed request is that store's, not the group's
        failures = [
            (row.entity_key, row.version, now + timedelta(seconds=self._backoff(settings, row.attempts + 1)))
            for row in rows
        ]
        async with transaction(self._pool) as conn:
            dead = await self._ledger.mark_failed(
                conn, self.channel_id, failures, error=outcome.error, max_attempts=settings.max_attempts
            )
            await self._ledger.record_outcome(conn, self.channel_id, ok=0, failed=len(rows), now=now)
            letters = [(letter.entity_key, letter.kind, letter.version) for letter in dead]
            for key, kind, version, stores in by_store(letters):
                await self._events.delivery_state(
                    conn, channel_id=self.channel_id, entity_key=key, kind=kind, version=version,
                    state=events_pb2.DELIVERY_STATE_DEAD_LETTERED, detail=outcome.error, at=now,
                    location_ids=stores,
                )  # fmt: skip
        self._metrics.deliveries.add(len(rows), attrs | {"outcome": "failed"})
        if dead:
            self._metrics.dead_letters.add(len(dead), attrs)
        _log.warning(
            "channel %s: delivery of %d change(s) failed: %s", self.channel_id, len(rows), outcome.error
        )
        await self._sync_breaker(breaker.state)
        return 0.0

    def _delivery_span(
        self, settings: DeliverySettings, rows: list[PendingRow]
    ) -> AbstractContextManager[Span]:
        """A CLIENT span per delivery continuing the changes' traces: child of the one projection that
        queued a single change, linked to each projection for a batch (DESIGN §7)."""
        contexts = [
            extract_context(row.traceparent, row.tracestate) for row in rows if row.traceparent is not None
        ]
        remote = [trace.get_current_span(c).get_span_context() for c in contexts]
        attributes: dict[str, str | int] = {
            "retail.channel.id": self.channel_id,
            "retail.delivery.mode": settings.mode,
            "retail.delivery.changes": len(rows),
        }
        name = f"deliver {self.channel_id}"
        if len(rows) == 1 and contexts:
            return _TRACER.start_as_current_span(
                name, context=contexts[0], kind=SpanKind.CLIENT, attributes=attributes
            )
        return _TRACER.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, links=[Link(c) for c in remote if c.is_valid]
        )

    async def _compose(self, settings: DeliverySettings, changes: list[changes_pb2.ChannelChange]) -> bool:
        """Amounts for price changes (channels with a currency); False if a dependency failed."""
        if self._composer is None or not settings.currency:
            return True
        try:
            await self._composer.compose(self.channel_id, settings.currency, changes, self._served)
        except (DomainError, grpc.aio.AioRpcError, OSError, TimeoutError) as exc:
            _log.warning("channel %s: cannot compose prices now: %s", self.channel_id, exc)
            return False
        return True

    def _backoff(self, settings: DeliverySettings, attempt: int) -> float:
        return backoff_delay(attempt, settings.initial_backoff, settings.max_backoff, self._rng.uniform)

    def _change(self, row: PendingRow) -> changes_pb2.ChannelChange:
        change = changes_pb2.ChannelChange.FromString(row.payload)
        change.cursor = str(row.seq)
        if row.resend:
            change.resync = True
        return change

    # ------------------------------------------------------------------------------ settings, state

    async def _load_settings(self) -> DeliverySettings | None:
        async with self._pool.acquire() as conn:
            record = await self._channels.get(conn, self.channel_id, count_assortment=False)
        if record is None or not record.active:
            return None
        self._served = record.location_ids
        return record.settings

    def _governors(self, settings: DeliverySettings) -> tuple[CircuitBreaker, TokenBucket]:
        """Breaker and bucket live as long as their own settings do (a breaker keeps its state)."""
        old = self._settings
        if (
            self._breaker is None
            or old is None
            or (old.failure_threshold, old.open_for)
            != (
                settings.failure_threshold,
                settings.open_for,
            )
        ):
            self._breaker = CircuitBreaker(settings.failure_threshold, settings.open_for, self._monotonic)
        if (
            self._bucket is None
            or old is None
            or (old.rate_per_second, old.burst)
            != (
                settings.rate_per_second,
                settings.burst,
            )
        ):
            self._bucket = TokenBucket(settings.rate_per_second, settings.burst, self._monotonic)
        self._settings = settings
        return self._breaker, self._bucket

    async def _sync_breaker(self, state: BreakerState) -> None:
        """Persist breaker transitions; opening and closing announce ChannelHealthChanged."""
        if state is self._stored_state:
            return
        now = self._clock.now()
        async with transaction(self._pool) as conn:
            previous = await self._ledger.set_breaker(conn, self.channel_id, state.value, self._owner)
            # Announce condition changes only: degraded (open or half-open) <-> healthy (closed).
            degraded = state is not BreakerState.CLOSED
            if previous is not None and degraded != (previous != BreakerState.CLOSED.value):
                health = await self._ledger.health(conn, self.channel_id, now)
                backlog = 0 if health is None else health.backlog_fast + health.backlog_bulk
                detail = "breaker opened" if state is BreakerState.OPEN else "breaker closed"
                await self._events.channel_health(
                    conn, channel_id=self.channel_id, state=state, backlog=backlog, detail=detail, at=now
                )
        self._stored_state = state
        self._metrics.gauges.breaker[self.channel_id] = state

    async def _publish_gauges(self) -> None:
        now = self._monotonic()
        if now - self._gauges_at < self._gauge_interval:
            return
        self._gauges_at = now
        async with self._pool.acquire() as conn:
            health = await self._ledger.health(conn, self.channel_id, self._clock.now())
        if health is None:
            return
        gauges = self._metrics.gauges
        gauges.backlog[self.channel_id] = health.backlog_fast + health.backlog_bulk
        oldest = health.oldest_pending_at
        gauges.lag_seconds[self.channel_id] = _age(self._clock.now(), oldest)


def _store(change: changes_pb2.ChannelChange) -> str | None:
    found = store_of(change)
    return found[1] if found else None


def _one_store(
    rows: list[PendingRow], changes: list[changes_pb2.ChannelChange]
) -> tuple[list[PendingRow], list[changes_pb2.ChannelChange]]:
    """The batch narrowed to the store of its first change (per-store entities), or to the changes that
    are not per store: one webhook request per store, so a store's answer is about its changes only.
    The rest stay due and come in the next batches."""
    store = _store(changes[0])
    keep = [i for i, change in enumerate(changes) if _store(change) == store]
    return [rows[i] for i in keep], [changes[i] for i in keep]


def _age(now: datetime, then: datetime | None) -> float:
    return 0.0 if then is None else max(0.0, (now - then).total_seconds())


def _composed(
    rows: list[PendingRow], changes: list[changes_pb2.ChannelChange]
) -> list[tuple[str, int, bytes]]:
    """The delivered payloads of composed price changes (amounts filled in at send time)."""
    out = []
    for row, change in zip(rows, changes, strict=True):
        if change.WhichOneof("body") == "price" and change.price.HasField("list_price"):
            stored = changes_pb2.ChannelChange.FromString(row.payload)
            stored.price.CopyFrom(change.price)
            out.append((row.entity_key, row.version, stored.SerializeToString(deterministic=True)))
    return out
