"""Applies a DomainChange to the ledgers of the channels it concerns, in the caller's transaction
(the inbox transaction of the event), so an event is projected exactly when it is marked consumed.
Price changes of channels with composed amounts that serve several locations become one entity per
location (domain/price_scope.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from retail_channel_gateway.domain.changes import DomainChange, lane_of
from retail_channel_gateway.domain.ledger import due_at
from retail_channel_gateway.domain.payload import render
from retail_channel_gateway.domain.policy import DeliveryMode
from retail_channel_gateway.domain.price_scope import per_location, splits_prices
from retail_channel_gateway.domain.projection import concerned_channels
from retail_channel_gateway.repository import ChannelRecord, ChannelRepository, LedgerRepository
from retail_common.clock import Clock
from retail_common.db import Connection

__all__ = ["Projector"]


class Projector:
    """`registry_ttl`: how long the channel registry is cached (seconds). A channel created or changed
    is seen by projection at most this late; 0 disables the cache."""

    def __init__(self, clock: Clock, *, registry_ttl: float = 1.0) -> None:
        self._clock = clock
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
