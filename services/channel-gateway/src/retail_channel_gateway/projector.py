"""Applies a DomainChange to the ledgers of the channels it concerns, in the caller's transaction
(the inbox transaction of the event), so an event is projected exactly when it is marked consumed.
Price changes of channels with composed amounts that serve several locations become one entity per
location (domain/price_scope.py); campaign changes of POS store groups one entity per targeted store
(domain/store_scope.py), announced with one DeliveryStateChanged PENDING listing those stores."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from retail.channel.v1 import events_pb2
from retail_channel_gateway.domain.changes import DomainChange, Lane, lane_of
from retail_channel_gateway.domain.ledger import due_at
from retail_channel_gateway.domain.payload import render
from retail_channel_gateway.domain.policy import DeliveryMode
from retail_channel_gateway.domain.price_scope import per_location, splits_prices
from retail_channel_gateway.domain.projection import concerned_channels
from retail_channel_gateway.domain.store_scope import per_store, targeted_stores, tracks_per_store
from retail_channel_gateway.events import EventWriter
from retail_channel_gateway.repository import ChannelRecord, ChannelRepository, LedgerRepository
from retail_channel_gateway.repository.regions import regions_of, upsert_region
from retail_common.clock import Clock
from retail_common.db import Connection

__all__ = ["Projector"]


class Projector:
    """`registry_ttl`: how long the channel registry is cached (seconds). A channel created or changed
    is seen by projection at most this late; 0 disables the cache. `events`: where per-store PENDING
    announcements go (without it, per-store entities are queued unannounced)."""

    def __init__(self, clock: Clock, *, registry_ttl: float = 1.0, events: EventWriter | None = None) -> None:
        self._clock = clock
        self._events = events
        self._channels = ChannelRepository()
        self._ledger = LedgerRepository()
        self._ttl = registry_ttl
        self._cached: list[ChannelRecord] = []
        self._cached_at = -1e18

    def invalidate(self) -> None:
        self._cached_at = -1e18

    async def _registry(self, conn: Connection) -> Sequence[ChannelRecord]:
        now = time.monotonic()
        if now - self._cached_at >= self._ttl:
            self._cached = await self._channels.all(conn)
            self._cached_at = now
        return self._cached

    async def apply(self, conn: Connection, change: DomainChange) -> list[str]:
        """Project `change`; returns the channels whose ledger took it (newer than what they had)."""
        if change.region_id is not None and change.location_id is not None:
            await upsert_region(conn, change.location_id, change.region_id)
        registry = await self._registry(conn)
        by_id = {record.channel_id: record for record in registry}
        skus = [change.sku] if change.sku else list(change.skus)
        listed = await self._channels.listing_channels(conn, skus) if skus else set()
        targets = concerned_channels(
            change, (r.scope for r in registry), lambda channel, sku: (channel, sku) in listed
        )
        now = self._clock.now()
        taken = []
        for channel_id in targets:
            if await self._project(conn, by_id[channel_id], change, now):
                taken.append(channel_id)
        return taken

    async def _project(
        self, conn: Connection, record: ChannelRecord, change: DomainChange, now: datetime
    ) -> bool:
        settings = record.settings
        channel_id = record.channel_id
        kind, lane = change.kind.value, lane_of(change.kind, settings.stock_lane)
        due = due_at(change.effective_from, now, settings.lead_time)
        stream = settings.mode == DeliveryMode.STREAM
        if tracks_per_store(record.kind, change):
            return await self._project_stores(conn, record, change, now, due, lane)
        if splits_prices(bool(settings.currency), record.location_ids):
            parts = [
                render(p, channel_id, settings.profile) for p in per_location(change, record.location_ids)
            ]
            seqs = await self._ledger.project_many(
                conn, channel_id=channel_id, changes=parts, kind=kind, lane=lane, projected_at=now,
                due_at=due, change_log=stream,
            )  # fmt: skip
            return bool(seqs)
        seq = await self._ledger.project(
            conn, channel_id=channel_id, change=render(change, channel_id, settings.profile), kind=kind,
            lane=lane, projected_at=now, due_at=due, change_log=stream,
        )  # fmt: skip
        return seq is not None

    async def _project_stores(
        self,
        conn: Connection,
        record: ChannelRecord,
        change: DomainChange,
        now: datetime,
        due: datetime,
        lane: Lane,
    ) -> bool:
        """One entity per targeted store; PENDING for the stores that took it (a replayed, older event
        queues and announces nothing)."""
        settings = record.settings
        regions = await regions_of(conn, record.location_ids)
        stores = targeted_stores(change.targeting, record.location_ids, regions)
        parts = [render(p, record.channel_id, settings.profile) for p in per_store(change, stores)]
        seqs = await self._ledger.project_many(
            conn, channel_id=record.channel_id, changes=parts, kind=change.kind.value, lane=lane,
            projected_at=now, due_at=due, change_log=settings.mode == DeliveryMode.STREAM,
        )  # fmt: skip
        if seqs and self._events is not None:
            await self._events.delivery_state(
                conn, channel_id=record.channel_id, entity_key=change.entity_key, kind=change.kind.value,
                version=change.version, state=events_pb2.DELIVERY_STATE_PENDING, detail="", at=now,
                location_ids=stores,
            )  # fmt: skip
        return bool(seqs)
