"""The per-replica registry check cache against real Postgres: served from memory while listening,
invalidated by NOTIFY from another connection (another replica's change), bypassed while the LISTEN
connection is down."""

from __future__ import annotations

import asyncio
import contextlib

from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.registry_cache import RegistryCache
from retail_channel_gateway.repository import ChannelRepository
from retail_channel_gateway.testing.harness import eventually
from retail_common.clock import SystemClock
from retail_common.db import transaction


async def _wait_listening(cache: RegistryCache, listening: bool = True) -> None:
    async def check() -> bool:
        return cache.listening is listening

    await eventually(check, f"listening={listening}", within=30)


async def test_changes_made_elsewhere_reach_the_cache_by_notify_and_a_lost_listener_bypasses_it(
    pool, database_url
) -> None:
    async with transaction(pool) as conn:
        await ChannelRepository().create(
            conn,
            channel_id="web",
            display_name="web",
            kind="ECOMMERCE",
            location_ids=["s1"],
            settings=DeliverySettings(mode=DeliveryMode.STREAM),
            active=True,
            webhook_secret=None,
            signing_key_id=None,
        )
        await conn.execute("insert into assortments values ('web', 'A')")
    cache = RegistryCache(pool, database_url, SystemClock(), health_check_interval=0.2, reconnect_delay=0.1)
    task = asyncio.create_task(cache.run())
    try:
        await _wait_listening(cache)
        record = await cache.channel("web")
        assert record is not None
        assert record.active
        assert await cache.outside_assortment("web", ["A", "B"]) == ["B"]
        assert len(cache.records) == 1
        assert len(cache.listed) == 2

        # another replica suspends the channel and lists B: the NOTIFY drops this replica's entries
        async with transaction(pool) as conn:
            await conn.execute("update channels set active = false where channel_id = 'web'")
            await conn.execute("insert into assortments values ('web', 'B')")

        async def suspended() -> bool:
            got = await cache.channel("web")
            return got is not None and not got.active

        await eventually(suspended, "the suspension seen")
        assert await cache.outside_assortment("web", ["A", "B"]) == []

        # the LISTEN backend is killed: the cache stops serving (and is emptied) until it listens again
        async with pool.acquire() as conn:
            await conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name = 'gateway-registry-cache' and datname = current_database()"
            )
        await _wait_listening(cache, False)
        assert len(cache.records) == 0
        await _wait_listening(cache)
        async with transaction(pool) as conn:
            await conn.execute("delete from assortments where channel_id = 'web' and sku = 'A'")

        async def removed() -> bool:
            return await cache.outside_assortment("web", ["A", "B"]) == ["A"]

        await eventually(removed, "the removal seen after reconnecting")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
