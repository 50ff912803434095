"""Two gateway processes on one database: each channel is delivered by exactly one of them at a time;
kill -9 the owner and the other takes over from the ledger without loss or out-of-order delivery."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration

from retail.channel.v1 import channel_pb2
from retail_channel_gateway.testing import FakeMarketplace
from retail_channel_gateway.testing.harness import (
    Clients,
    eventually,
    price_changed,
    publish,
    register,
    webhook_channel,
)
from retail_common.db import create_pool

MODULE = "retail_channel_gateway"
SKUS = [f"P{i}" for i in range(40)]
VERSIONS = range(1, 6)


def env(database_url: str, nats_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "ALLOW_HTTP_WEBHOOKS": "true",
        "DELIVERY_LEASE_SECONDS": "2",
        "DELIVERY_POLL_SECONDS": "0.02",
        "REGISTRY_CACHE_SECONDS": "0",
        "DB_POOL_MAX": "4",
    }


@pytest.mark.faults
async def test_each_channel_has_one_deliverer_and_a_killed_owner_is_replaced_without_loss(
    start_service, database_url, nats_server
) -> None:
    first = await start_service(MODULE, env(database_url, nats_server.url))
    second = await start_service(MODULE, env(database_url, nats_server.url))
    pool = await create_pool(database_url, min_size=1, max_size=4)
    clients = Clients(pool, first.address)
    markets = {name: FakeMarketplace(b"") for name in ("mkt1", "mkt2")}
    try:
        operator = await clients.operator()
        for name, market in markets.items():
            url = await market.start()
            # slow channels (5 requests/s, 4 changes each) so the kill lands mid-backlog
            policy = {
                "rate_limit": channel_pb2.RateLimit(requests_per_second=5, burst=1),
                "batch_size": 4,
                "timeout": Duration(seconds=2),  # lease ttl = max(2 s, 3 x timeout) = 6 s
            }
            _, secret = await register(operator, webhook_channel(name, url, **policy), SKUS)
            market.secret = secret.encode()
        await publish(nats_server.url, [price_changed(sku, v) for v in VERSIONS for sku in SKUS])
        latest = {f"price/{sku}": VERSIONS[-1] for sku in SKUS}

        async def owners() -> dict[str, str]:
            rows = await pool.fetch(
                "select name, holder from relay_leases"
                " where name like 'channel-delivery/%' and expires_at > now()"
            )
            return {r["name"].split("/", 1)[1]: r["holder"] for r in rows}

        async def both_owned() -> bool:
            return set(await owners()) == set(markets)

        await eventually(both_owned, "both channels owned")
        await eventually(lambda: _started(markets), "deliveries under way")
        held = await owners()
        victim = first if any(h.split("-")[-2] == str(first.pid) for h in held.values()) else second
        survivor = second if victim is first else first
        assert all(m.applied != latest for m in markets.values()), "the kill must land mid-backlog"
        victim.kill()  # kill -9 mid-backlog

        async def survivor_owns_all() -> bool:
            current = await owners()
            return set(current) == set(markets) and all(h.split("-")[-2] == str(survivor.pid)
                                                        for h in current.values())  # fmt: skip

        await eventually(survivor_owns_all, "survivor took over every channel")
        for market in markets.values():
            await market.wait_until(lambda m=market: m.applied == latest)
        for name, market in markets.items():
            out_of_order = [v for v in market.violations if not v.startswith("resent after 2xx")]
            assert out_of_order == [], name  # never two senders at once, never an older version after a newer
            # At-least-once across a crash (the batch in flight at the kill) or a client timeout on a loaded
            # machine: such a batch is sent again under the same idempotency key, which the receiver
            # deduplicates; it is never sent out of order (checked above and below).
            assert all(v.startswith("resent after 2xx: idempotency key") for v in market.violations), name
            for sku in SKUS:  # per entity, versions arrived in increasing order
                versions = [r.version for r in market.received if r.entity_key == f"price/{sku}"]
                assert versions == sorted(set(versions)), (name, sku)
                assert versions[-1] == VERSIONS[-1]
    finally:
        await clients.close()
        await pool.close()
        for market in markets.values():
            await market.close()


async def _started(markets: dict[str, FakeMarketplace]) -> bool:
    return all(len(m.received) >= 8 for m in markets.values())
