"""Campaigns to a POS store group, per store, with the gateway as a process (real Postgres and NATS):
the stores a campaign targets (regions from the location replica, exclusions win), one entity per
store, a store streaming and acknowledging for itself, and the DeliveryStateChanged events listing the
stores (one per batch, not one per store)."""

from __future__ import annotations

import asyncpg
import grpc
import nats
import pytest

from retail.channel.v1 import changes_pb2, channel_pb2
from retail.channel.v1 import channel_gateway_service_pb2 as gw
from retail.channel.v1 import events_pb2 as channel_events
from retail.inventory.v1 import events_pb2 as inventory_events
from retail.inventory.v1 import location_pb2
from retail.promotion.v1 import campaign_pb2
from retail.promotion.v1 import events_pb2 as promotion_events
from retail_channel_gateway.testing.harness import (
    Clients,
    eventually,
    publish,
    refused,
    register,
    stream_channel,
)
from retail_common.db import create_pool
from retail_common.messaging import event_subject

MODULE = "retail_channel_gateway"
STORES = {"s1": "north", "s2": "north", "s3": "south"}


@pytest.fixture
async def gateway(start_service, database_url, nats_server):
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "PRICING_TARGET": "127.0.0.1:1",
        "INVENTORY_RESERVATION_TARGET": "127.0.0.1:1",
        "DELIVERY_LEASE_SECONDS": "3",
        "DELIVERY_POLL_SECONDS": "0.02",
        "REGISTRY_CACHE_SECONDS": "0",
        "STREAM_POLL_SECONDS": "0.02",
        "DB_POOL_MAX": "4",
    }
    return await start_service(MODULE, env)


@pytest.fixture
async def clients(gateway, database_url):
    pool = await create_pool(database_url, min_size=1, max_size=2)
    c = Clients(pool, gateway.address)
    yield c
    await c.close()
    await pool.close()


def _location(location_id: str, region: str) -> tuple[str, str, str, int, bytes]:
    event = inventory_events.LocationUpserted(
        location=location_pb2.Location(
            location_id=location_id, region_id=region, time_zone="UTC", active=True
        )
    )
    return (event_subject("inventory", "location_upserted", location_id),
            "retail.inventory.v1.LocationUpserted", location_id, 1, event.SerializeToString())  # fmt: skip


def _campaign(campaign_id: str, version: int) -> tuple[str, str, str, int, bytes]:
    campaign = campaign_pb2.Campaign(
        campaign_id=campaign_id,
        state=campaign_pb2.CAMPAIGN_STATE_SCHEDULED,
        channel_ids=["pos"],
        excluded_region_ids=["south"],
    )
    event = promotion_events.CampaignChanged(campaign=campaign)
    subject = event_subject("promotion", "campaign_changed", campaign_id)
    event_type = "retail.promotion.v1.CampaignChanged"
    return subject, event_type, campaign_id, version, event.SerializeToString()


async def _delivery_events(pool: asyncpg.Pool) -> list[channel_events.DeliveryStateChanged]:
    rows = await pool.fetch(
        "select payload from outbox where event_type = 'retail.channel.v1.DeliveryStateChanged' order by id"
    )
    return [channel_events.DeliveryStateChanged.FromString(bytes(r["payload"])) for r in rows]


async def test_a_store_streams_and_acknowledges_its_own_copy_of_a_campaign(
    gateway, clients, nats_server, database_url
) -> None:
    operator = await clients.operator()
    channel = stream_channel("pos")
    channel.location_ids[:] = sorted(STORES)
    channel.delivery.payload_profile.change_kinds[:] = [channel_pb2.CHANGE_KIND_CAMPAIGN]
    key, _ = await register(operator, channel, ["A"])
    pos = clients.gateway(key)
    await publish(nats_server.url, [_location(s, r) for s, r in STORES.items()])
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:

        async def regions_known() -> bool:
            return await pool.fetchval("select count(*) from location_regions") == len(STORES)

        await eventually(regions_known, "the location replica has every store's region")
        await publish(nats_server.url, [_campaign("C1", 1)])

        async def announced() -> bool:
            return any(e.state == channel_events.DELIVERY_STATE_PENDING for e in await _delivery_events(pool))

        await eventually(announced, "the per-store entities announced PENDING")
        keys = await pool.fetch("select entity_key from delivery_ledger where channel_id = 'pos' order by 1")
        # s3 is in the excluded region: only s1 and s2 get the campaign
        assert [r["entity_key"] for r in keys] == ["campaign/C1/s1", "campaign/C1/s2"]
        [pending] = await _delivery_events(pool)
        assert (pending.entity_key, pending.entity_version) == ("campaign/C1", 1)
        assert list(pending.location_ids) == ["s1", "s2"]

        stream = pos.StreamChanges(gw.StreamChangesRequest(location_id="s2"))
        first = None
        async for response in stream:
            first = response
            break
        stream.cancel()
        assert first is not None
        assert [(c.entity_key, c.campaign.location_id) for c in first.changes] == [("campaign/C1/s2", "s2")]

        acked = await pos.AckChanges(gw.AckChangesRequest(cursor=first.cursor, location_id="s2"))
        assert acked.acknowledged_entities == 1
        again = await pos.AckChanges(gw.AckChangesRequest(cursor=first.cursor, location_id="s2"))
        assert again.acknowledged_entities == 0  # nothing newer: no second event
        ack = [
            e for e in await _delivery_events(pool) if e.state == channel_events.DELIVERY_STATE_ACKNOWLEDGED
        ]
        assert [(e.entity_key, list(e.location_ids)) for e in ack] == [("campaign/C1", ["s2"])]
        s1 = await pool.fetchval(
            "select acknowledged_version from delivery_ledger where entity_key = 'campaign/C1/s1'"
        )
        assert s1 == 0  # the other store has not acknowledged

        # The group acknowledging as a whole covers the remaining store in one event.
        await pos.AckChanges(gw.AckChangesRequest(cursor=first.cursor))
        ack = [
            e for e in await _delivery_events(pool) if e.state == channel_events.DELIVERY_STATE_ACKNOWLEDGED
        ]
        assert [(e.entity_key, list(e.location_ids)) for e in ack][-1] == ("campaign/C1", ["s1"])

        error = await refused(pos.AckChanges(gw.AckChangesRequest(cursor=first.cursor, location_id="s9")))
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["location_id"])
    finally:
        await pool.close()


async def test_600_stores_over_nats_are_one_subject_each_and_a_handful_of_events(
    gateway, clients, nats_server, database_url
) -> None:
    stores = [f"s{i:03d}" for i in range(600)]
    operator = await clients.operator()
    channel = stream_channel("pos")
    channel.location_ids[:] = stores
    channel.delivery.nats_subject.SetInParent()  # replaces the change stream
    channel.delivery.batch_size = 100
    channel.delivery.payload_profile.change_kinds[:] = [channel_pb2.CHANGE_KIND_CAMPAIGN]
    await register(operator, channel, ["A"])
    campaign = _campaign("C6", 1)
    changed = promotion_events.CampaignChanged.FromString(campaign[4])
    del changed.campaign.excluded_region_ids[:]  # every store
    await publish(nats_server.url, [(*campaign[:4], changed.SerializeToString())])
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:

        async def all_acknowledged() -> bool:
            done = await pool.fetchval(
                "select count(*) from delivery_ledger where channel_id = 'pos' and acknowledged_version = 1"
            )
            return bool(done == len(stores))

        await eventually(all_acknowledged, "every store's copy published")
        events = await _delivery_events(pool)
        states = [e.state for e in events]
        assert states.count(channel_events.DELIVERY_STATE_PENDING) == 1
        acked = [e for e in events if e.state == channel_events.DELIVERY_STATE_ACKNOWLEDGED]
        assert len(acked) == len(stores) // 100  # one per batch, not one per store
        assert sorted(s for e in acked for s in e.location_ids) == stores
        nc = await nats.connect(nats_server.url)
        try:
            msg = await nc.jetstream().get_last_msg("DELIVERY", "retail.delivery.v1.pos.campaign.s042")
        finally:
            await nc.close()
        assert changes_pb2.ChannelChange.FromString(msg.data).campaign.location_id == "s042"
    finally:
        await pool.close()
