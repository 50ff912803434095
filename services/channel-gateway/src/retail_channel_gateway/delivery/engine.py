"""Per-channel delivery ownership: one replica at a time delivers a channel (a lease per channel on the
database clock, retail_common's Lease), so its rate limit, breaker and per-entity order hold across
replicas. Every replica runs an engine; each contends for every push-mode channel's lease, runs a
ChannelWorker for the channels it holds and stops it the moment the lease is lost. A replica that dies
(kill -9) stops renewing; after the lease's ttl another replica takes the channel over from the ledger,
which is in the database, so nothing is lost and per-entity versions stay in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

import asyncpg

from retail_channel_gateway.delivery.composer import PriceComposer
from retail_channel_gateway.delivery.metrics import DeliveryMetrics
from retail_channel_gateway.delivery.transports import Transport
from retail_channel_gateway.delivery.worker import ChannelWorker
from retail_channel_gateway.events import EventWriter
from retail_common.clock import Clock
from retail_common.messaging import Lease

__all__ = ["DeliveryEngine", "lease_name"]

_log = logging.getLogger(__name__)

_PUSH_CHANNELS = """
select channel_id, (delivery ->> 'timeout_s')::float8 as timeout from channels
where active and mode <> 'change_stream' order by channel_id
"""


def lease_name(channel_id: str) -> str:
    return f"channel-delivery/{channel_id}"


class DeliveryEngine:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        transports: dict[str, Transport],
        events: EventWriter,
        metrics: DeliveryMetrics,
        clock: Clock,
        lease_ttl: float = 30.0,
        poll: float = 0.05,
        owner: str | None = None,
        composer: PriceComposer | None = None,
    ) -> None:
        self._pool = pool
        self._transports = transports
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._lease_ttl = lease_ttl
        self._poll = poll
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._composer = composer
        self._leases: dict[str, Lease] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(c for c, task in self._workers.items() if not task.done())

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                    _log.warning("delivery engine: %s", exc)
                await asyncio.sleep(min(self._lease_ttl / 6, 1.0))
        finally:
            await self._stop_all()

    async def tick(self) -> None:
        rows = await self._pool.fetch(_PUSH_CHANNELS)
        present = set()
        for row in rows:
            channel_id = row["channel_id"]
            present.add(channel_id)
            lease = self._leases.get(channel_id)
            # The lease must outlive any send started under it (the worker checks remaining > timeout);
            # a channel whose timeout grew gets a longer lease (same name and holder: a renewal).
            ttl = max(self._lease_ttl, 3 * float(row["timeout"] or 10.0))
            if lease is None or lease.ttl < ttl:
                lease = self._leases[channel_id] = Lease(self._pool, lease_name(channel_id), self.owner, ttl)
                running = channel_id in self._workers and not self._workers[channel_id].done()
                if running:  # the worker holds the old Lease object: restart it on the new one
                    await self._stop(channel_id)
            if lease.due():
                await lease.acquire_or_renew()
            running = channel_id in self._workers and not self._workers[channel_id].done()
            if lease.held and not running:
                _log.info("channel %s: delivery owned by %s", channel_id, self.owner)
                self._workers[channel_id] = asyncio.create_task(
                    self._worker(channel_id, lease).run(), name=f"deliver-{channel_id}"
                )
            elif not lease.held and running:
                _log.info("channel %s: lease lost by %s", channel_id, self.owner)
                await self._stop(channel_id)
        for channel_id in set(self._workers) - present:
            await self._stop(channel_id)
            lease = self._leases.pop(channel_id, None)
            if lease is not None:
                await lease.release()

    def _worker(self, channel_id: str, lease: Lease) -> ChannelWorker:
        return ChannelWorker(
            self._pool,
            channel_id,
            lease=lease,
            transports=self._transports,
            events=self._events,
            metrics=self._metrics,
            clock=self._clock,
            owner=self.owner,
            poll=self._poll,
            composer=self._composer,
        )

    async def _stop(self, channel_id: str) -> None:
        task = self._workers.pop(channel_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._metrics.gauges.forget(channel_id)

    async def _stop_all(self) -> None:
        for channel_id in list(self._workers):
            await self._stop(channel_id)
        for lease in self._leases.values():
            await lease.release()
