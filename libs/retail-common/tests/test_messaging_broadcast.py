"""Per-replica subscriptions: each replica (its own connection) sees every message, in order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from retail_common.messaging import Envelope, ensure_streams, new_event_id, subscribe_per_replica
from retail_common.messaging.testing import TESTING_STREAM, connect_nats
from retail_common.testing import NatsServer


async def test_two_replicas_both_see_every_message(nats_server: NatsServer) -> None:
    replicas = [await connect_nats(nats_server.url, f"replica-{i}") for i in range(2)]
    publisher = await connect_nats(nats_server.url, "publisher")
    js = publisher.jetstream()
    await ensure_streams(js, [TESTING_STREAM])
    seen: list[list[int]] = [[], []]
    subs = []
    for index, client in enumerate(replicas):

        async def on_event(env: Envelope, index: int = index) -> None:
            seen[index].append(env.aggregate_version)

        subs.append(await subscribe_per_replica(client.jetstream(), "retail.testing.v1.cache.>", on_event))
    for version in range(1, 51):
        env = Envelope(
            subject="retail.testing.v1.cache.sku",
            event_id=new_event_id(),
            event_type="t",
            schema_version=1,
            aggregate_type="sku",
            aggregate_key="s",
            aggregate_version=version,
            occurred_at=datetime.now(UTC),
            payload=b"",
        )
        await js.publish(env.subject, b"", headers=env.headers())
    for _ in range(100):
        if all(len(s) == 50 for s in seen):
            break
        await asyncio.sleep(0.05)
    assert seen == [list(range(1, 51))] * 2
    for sub in subs:
        await sub.close()
    for client in [*replicas, publisher]:
        await client.close()
