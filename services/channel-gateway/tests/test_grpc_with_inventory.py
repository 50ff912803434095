"""The gateway with a real inventory service (separate processes, own databases, one nats-server):
reservations through the façade, and ReconcileChannel repairing drift introduced behind its back."""

from __future__ import annotations

import grpc
import nats
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import changes_pb2, offers_pb2
from retail.channel.v1 import channel_gateway_service_pb2 as gw
from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, reservation_pb2, stock_pb2
from retail_channel_gateway.testing.harness import Clients, eventually, refused, register, stream_channel
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.grpcx import connect

SKUS = ["S1", "S2", "S3"]


def line(sku: str, quantity: int) -> offers_pb2.ReserveLine:
    return offers_pb2.ReserveLine(sku=sku, location_id="s1", quantity=quantity)


def movement(movement_id: str, sku: str, delta: int) -> stock_pb2.Movement:
    kind = stock_pb2.MOVEMENT_KIND_RECEIPT if delta > 0 else stock_pb2.MOVEMENT_KIND_ADJUSTMENT
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stock_pb2.Movement(movement_id=movement_id, sku=sku, location_id="s1", delta=delta, kind=kind,
                              occur_time=stamp)  # fmt: skip


@pytest.fixture
async def inventory_db(postgres_server):
    db = await postgres_server.create_database()
    yield db.dsn
    await db.drop()


async def test_facade_reserves_through_inventory_and_reconcile_repairs_drift_exactly(
    start_service, database_url, inventory_db, nats_server
) -> None:
    inventory = await start_service(
        "retail_inventory", {"DATABASE_URL": inventory_db, "NATS_URL": nats_server.url, "DB_POOL_MAX": "4"}
    )
    inv_pool = await create_pool(inventory_db, min_size=1, max_size=2)
    store = CredentialStore(inv_pool)
    inv_operator_key = (await store.create("ops", PrincipalKind.OPERATOR, ["inventory.operator"])).key
    gateway_key = (await store.create("channel-gateway", PrincipalKind.SERVICE)).key
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "INVENTORY_RESERVATION_TARGET": inventory.address,
        "SERVICE_CREDENTIAL": gateway_key.get_secret_value(),
        "REGISTRY_CACHE_SECONDS": "0",
        "STREAM_POLL_SECONDS": "0.02",
        "DB_POOL_MAX": "4",
    }
    gateway = await start_service("retail_channel_gateway", env)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    clients = Clients(pool, gateway.address)
    inv_channel = connect(inventory.address, credential=inv_operator_key, default_timeout=30.0, tracing=False)
    wms = inventory_service_pb2_grpc.InventoryServiceStub(inv_channel)
    try:
        operator = await clients.operator()
        pos_key, _ = await register(operator, stream_channel("pos"), SKUS)
        _, _ = await register(operator, stream_channel("kiosk"), SKUS)
        store_s1 = location_pb2.Location(
            location_id="s1",
            kind=location_pb2.LOCATION_KIND_STORE,
            region_id="r1",
            time_zone="Europe/Berlin",
            channel_ids=["pos", "kiosk"],
            active=True,
        )
        await wms.UpsertLocation(inv.UpsertLocationRequest(request_id="l1", location=store_s1))
        await wms.RecordMovements(inv.RecordMovementsRequest(
            request_id="seed", movements=[movement(f"seed-{s}", s, 10) for s in SKUS]))  # fmt: skip

        async def ats_in_ledger() -> dict[str, int]:
            rows = await pool.fetch("select entity_key, payload from delivery_ledger"
                                    " where channel_id = 'pos' and kind = 'AVAILABILITY'")  # fmt: skip
            return {r["entity_key"].split("/")[1]: changes_pb2.ChannelChange.FromString(r["payload"])
                    .availability.available_to_sell for r in rows}  # fmt: skip

        await eventually(lambda: _is(ats_in_ledger(), {"S1": 10, "S2": 10, "S3": 10}), "stock projected")

        # the façade reserves for the calling channel through inventory
        pos = clients.gateway(pos_key)
        reserved = await pos.ReserveStock(gw.ReserveStockRequest(reservation_id="r-1", lines=[line("S1", 4)]))
        assert reserved.reservation.channel_id == "pos"
        assert reserved.reservation.state == reservation_pb2.RESERVATION_STATE_ACTIVE
        too_many = gw.ReserveStockRequest(reservation_id="r-2", lines=[line("S2", 99)])
        short = await refused(pos.ReserveStock(too_many))
        assert (short.code, short.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_STOCK")
        kiosk_key = (await clients.store.create("kiosk", PrincipalKind.CHANNEL)).key
        kiosk = clients.gateway(kiosk_key)
        release = gw.ReleaseReservationRequest(request_id="x", reservation_id="r-1")
        stolen = await refused(kiosk.ReleaseReservation(release))
        assert stolen.code is grpc.StatusCode.NOT_FOUND  # another channel's reservation
        audit = await operator.ListAuditRecords(
            ops.ListAuditRecordsRequest(entity_type="retail.inventory.v1.Reservation")
        )
        assert [
            (r.principal_id, r.action.rsplit("/", 1)[-1], r.entity_key, r.request_id) for r in audit.records
        ] == [("pos", "ReserveStock", "r-1", "r-1")]  # the channel's own trail; refused calls left none
        await eventually(lambda: _is(ats_in_ledger(), {"S1": 6, "S2": 10, "S3": 10}), "reservation projected")

        # drift behind the gateway's back: it is down while stock moves, and those events are lost
        gateway.kill()
        drift = [movement("d-S2", "S2", -3), movement("d-S3", "S3", 5)]
        await wms.RecordMovements(inv.RecordMovementsRequest(request_id="drift", movements=drift))

        async def inventory_published() -> bool:
            return bool(await inv_pool.fetchval("select count(*) = 0 from outbox where published_at is null"))

        await eventually(inventory_published, "inventory relayed its events")
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().purge_stream("INVENTORY")
        await nc.close()
        gateway = await start_service("retail_channel_gateway", env)
        clients.address = gateway.address
        operator = await clients.operator(name="bob")
        assert await ats_in_ledger() == {"S1": 6, "S2": 10, "S3": 10}  # the gateway still believes the past

        result = await operator.ReconcileChannel(
            ops.ReconcileChannelRequest(request_id="rc1", channel_id="pos")
        )
        assert (result.checked, result.drifted, result.repushed) == (3, 2, 2)
        assert await ats_in_ledger() == {"S1": 6, "S2": 7, "S3": 15}
        again = await operator.ReconcileChannel(
            ops.ReconcileChannelRequest(request_id="rc2", channel_id="pos")
        )
        assert (again.checked, again.drifted, again.repushed) == (3, 0, 0)
        # the repairs reach the channel as resync items on its stream
        pos = clients.gateway(pos_key)
        stream = pos.StreamChanges(gw.StreamChangesRequest())
        repaired = {}
        async for response in stream:
            for change in response.changes:
                if change.resync:
                    repaired[change.availability.sku] = change.availability.available_to_sell
            if len(repaired) == 2:
                stream.cancel()
                break
        assert repaired == {"S2": 7, "S3": 15}
    finally:
        await inv_channel.close()
        await clients.close()
        await pool.close()
        await inv_pool.close()


async def _is(actual, expected) -> bool:
    return await actual == expected
