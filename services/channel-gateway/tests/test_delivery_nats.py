"""NATS-subject delivery mode and push-mode resync, against a real nats-server and Postgres."""

from __future__ import annotations

import asyncio

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from retail.channel.v1 import changes_pb2, channel_pb2
from retail.pricing.v1 import events_pb2 as pricing_events
from retail_channel_gateway.delivery import DeliveryEngine, NatsTransport, delivery_subject
from retail_channel_gateway.delivery.metrics import DeliveryMetrics
from retail_channel_gateway.domain.decode import EventFacts, decode_event
from retail_channel_gateway.domain.payload import PayloadFormat
from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.events import EventWriter
from retail_channel_gateway.projector import Projector
from retail_channel_gateway.repository import ChannelRepository, LedgerRepository
from retail_channel_gateway.testing.harness import eventually
from retail_common.clock import SystemClock
from retail_common.db import transaction
from retail_common.messaging import SUITE_STREAMS, OutboxWriter, ensure_streams
from retail_common.telemetry import meter

CLOCK = SystemClock()


async def test_nats_subject_channel_gets_each_change_once_in_order_then_a_resync(pool, nats_server) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_streams(js, SUITE_STREAMS)
    channels = ChannelRepository()
    async with transaction(pool) as conn:
        await channels.create(
            conn,
            channel_id="app-eu",
            display_name="app",
            kind="MOBILE",
            location_ids=["s1"],
            settings=DeliverySettings(
                mode=DeliveryMode.NATS, payload_format=PayloadFormat.PROTOBUF, batch_size=7
            ),
            active=True,
            webhook_secret=None,
            signing_key_id=None,
        )
        await channels.update_assortment(conn, "app-eu", [f"S{i}" for i in range(10)], [])
    projector = Projector(CLOCK, registry_ttl=0)
    for version in (1, 2, 3):
        for i in range(10):
            event = pricing_events.PriceChanged(sku=f"S{i}", version=version).SerializeToString()
            change = decode_event(
                "retail.pricing.v1.PriceChanged", event, EventFacts(f"S{i}", version, CLOCK.now())
            )
            assert change is not None
            async with transaction(pool) as conn:
                await projector.apply(conn, change)
    engine = DeliveryEngine(
        pool,
        transports={DeliveryMode.NATS: NatsTransport(lambda: js)},
        events=EventWriter(OutboxWriter(CLOCK)),
        metrics=DeliveryMetrics(meter("test")),
        clock=CLOCK,
        lease_ttl=3.0,
        poll=0.01,
    )
    task = asyncio.create_task(engine.run())
    subject = delivery_subject("app-eu", "PRICE")
    assert subject == "retail.delivery.v1.app-eu.price"
    try:
        received: list[changes_pb2.ChannelChange] = []
        sub = await js.subscribe(
            subject, stream="DELIVERY", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )

        async def until(n: int) -> None:
            async with asyncio.timeout(60):
                while len(received) < n:
                    msg = await sub.next_msg(timeout=30)
                    received.append(changes_pb2.ChannelChange.FromString(msg.data))
                    await msg.ack()

        async def delivered() -> bool:
            sql = "select count(*) from delivery_ledger where delivered_version = projected_version"
            return int(await pool.fetchval(sql)) == 10

        await until(10)  # the latest state of each of the 10 SKUs (older versions were superseded)
        await eventually(delivered, "ledger shows every latest version delivered")
        latest: dict[str, int] = {}
        for change in received:
            assert change.version > latest.get(change.entity_key, 0)  # never an older after a newer
            latest[change.entity_key] = change.version
        assert latest == {f"price/S{i}": 3 for i in range(10)}
        # resync (push mode): everything again, marked as full state, then nothing more
        async with transaction(pool) as conn:
            assert await LedgerRepository().mark_resend(conn, "app-eu", None, CLOCK.now()) == 10
        await until(20)
        assert sorted((c.entity_key, c.version, c.resync) for c in received[10:]) == [
            (f"price/S{i}", 3, True) for i in range(10)
        ]
        info = await js.stream_info("DELIVERY")
        assert info.state.messages == 20  # each message stored once (Nats-Msg-Id dedupe on retries)
        await sub.unsubscribe()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()


async def test_a_nats_outage_pauses_a_nats_subject_channel_instead_of_failing_its_changes(
    nats_server,
) -> None:
    """Our own bus restarting is not the channel's failure: no attempt is counted (so nothing is
    dead-lettered during a NATS restart); once NATS is back the same change goes through."""
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await ensure_streams(js, SUITE_STREAMS)
    transport = NatsTransport(lambda: js)
    settings = DeliverySettings(mode=DeliveryMode.NATS, payload_format=PayloadFormat.PROTOBUF, timeout=1.0)
    change = changes_pb2.ChannelChange(entity_key="price/S1", version=1, kind=channel_pb2.CHANGE_KIND_PRICE)
    try:
        nats_server.kill()
        down = await transport.deliver("app-eu", settings, [change])
        assert not down.ok
        assert down.throttled_for is not None
        assert down.throttled_for > 0
        assert down.error.startswith("NATS")
        assert (await NatsTransport(lambda: None).deliver("app-eu", settings, [change])).throttled_for
        nats_server.start()

        async def delivered() -> bool:
            return (await transport.deliver("app-eu", settings, [change])).ok

        await eventually(delivered, "delivery once NATS is back")
    finally:
        await nc.close()
