"""A per-replica cache of what every façade call checks first: the calling channel's registry record and
whether the requested SKUs are in its assortment (two queries per call otherwise, most of a warm
GetOffers' cost).

Invalidation is by Postgres NOTIFY at commit (migration 0004: any change to `channels` or `assortments`
notifies `retail_channel_registry` with the channel id, '*' on TRUNCATE), heard on one dedicated LISTEN
connection; this replica's own registry mutations also clear it synchronously (read-your-writes). While
that connection is not established the cache neither serves nor stores (it is cleared when it drops and
again when it is back: notifications in between are lost). The race guard and bounds are
ComponentCache's; a TTL (`max_age`) is a backstop only. A suspended channel or a SKU removed from an
assortment is therefore refused as soon as the notification arrives (milliseconds), not after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from retail_channel_gateway.offer_cache import ComponentCache
from retail_channel_gateway.repository import ChannelRecord, ChannelRepository
from retail_common.clock import Clock

__all__ = ["NOTIFY_CHANNEL", "RegistryCache"]

logger = logging.getLogger("retail_channel_gateway.registry_cache")
NOTIFY_CHANNEL = "retail_channel_registry"
_EVERYTHING = "*"


def _channel(key: str) -> Hashable:
    return key


def _channel_of(key: tuple[str, str]) -> Hashable:
    return key[0]


class RegistryCache:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        dsn: str,
        clock: Clock,
        *,
        max_age_seconds: float = 60.0,
        max_entries: int = 200_000,
        health_check_interval: float = 5.0,
        reconnect_delay: float = 1.0,
    ) -> None:
        ttl = timedelta(seconds=max_age_seconds)
        self._pool = pool
        self._dsn = dsn
        self._clock = clock
        self._repo = ChannelRepository()
        self._health_check_interval = health_check_interval
        self._reconnect_delay = reconnect_delay
        self.records: ComponentCache[str, ChannelRecord | None] = ComponentCache(
            _channel, ttl=ttl, max_entries=max(1, max_entries // 100)
        )
        self.listed: ComponentCache[tuple[str, str], bool] = ComponentCache(
            _channel_of, ttl=ttl, max_entries=max_entries
        )
        self.listening = False
        self.enabled = max_age_seconds > 0

    @property
    def usable(self) -> bool:
        return self.enabled and self.listening

    async def channel(self, channel_id: str) -> ChannelRecord | None:
        """The channel's record without assortment size (None: not registered)."""
        if not self.usable:
            return await self._load_channel(channel_id)
        now = self._clock.now()
        hits, _ = self.records.lookup([channel_id], now)
        if channel_id in hits:
            return hits[channel_id]
        with self.records.fetching() as token:
            record = await self._load_channel(channel_id)
            self.records.store(channel_id, record, token, now)
        return record

    async def outside_assortment(self, channel_id: str, skus: Sequence[str]) -> list[str]:
        """The SKUs of `skus` the channel does not list, in request order."""
        if not self.usable:
            return await self._load_outside(channel_id, skus)
        keys = [(channel_id, sku) for sku in skus]
        listed, misses = self.listed.lookup(keys, self._clock.now())
        if misses:
            now = self._clock.now()
            with self.listed.fetching() as token:
                outside = set(await self._load_outside(channel_id, [sku for _, sku in misses]))
                for key in misses:
                    listed[key] = key[1] not in outside
                    self.listed.store(key, listed[key], token, now)
        return [sku for key, sku in zip(keys, skus, strict=True) if not listed[key]]

    def invalidate(self, channel_id: str) -> None:
        if channel_id == _EVERYTHING:
            self.clear()
        else:
            self.records.invalidate([channel_id])
            self.listed.invalidate([channel_id])

    def clear(self) -> None:
        self.records.invalidate_all()
        self.listed.invalidate_all()

    async def _load_channel(self, channel_id: str) -> ChannelRecord | None:
        async with self._pool.acquire() as conn:
            return await self._repo.get(conn, channel_id, count_assortment=False)

    async def _load_outside(self, channel_id: str, skus: Sequence[str]) -> list[str]:
        async with self._pool.acquire() as conn:
            return await self._repo.skus_outside_assortment(conn, channel_id, skus)

    # ------------------------------------------------------------------------------------- listener

    def _set_listening(self, listening: bool) -> None:
        self.clear()  # both ways: going down, entries may miss notifications; coming up, some were lost
        if listening != self.listening:
            logger.log(
                logging.INFO if listening else logging.WARNING,
                "channel registry cache %s",
                "listening: serving" if listening else "listener down: bypassed",
            )
        self.listening = listening

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.invalidate(str(payload))

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after failures (the cache is bypassed meanwhile)."""
        if not self.enabled:
            await asyncio.Event().wait()
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # DB outage, killed backend, failed health check
                logger.warning("channel registry listener: %s; reconnecting", type(exc).__name__)
            finally:
                self._set_listening(False)
            await asyncio.sleep(self._reconnect_delay)

    async def _listen_once(self) -> None:
        lost = asyncio.Event()

        def on_terminated(_conn: Any) -> None:
            self._set_listening(False)  # stop serving at once
            lost.set()

        conn = await asyncpg.connect(
            self._dsn, server_settings={"application_name": "gateway-registry-cache"}
        )
        try:
            conn.add_termination_listener(on_terminated)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notification)
            self._set_listening(True)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._health_check_interval)
                if not lost.is_set():
                    await conn.fetchval("select 1", timeout=self._health_check_interval)
            raise ConnectionError("LISTEN connection lost")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
