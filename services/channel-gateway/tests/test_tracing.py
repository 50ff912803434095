"""One trace across processes: channel call -> gateway (SERVER) -> inventory (SERVER) -> its outbox relay
(PRODUCER) -> the gateway's inbox consumer (CONSUMER) projecting the reservation's events -> the
delivery to a webhook channel (CLIENT span continuing the projection's trace)."""

from __future__ import annotations

import asyncio

from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import channel_gateway_service_pb2 as gw
from retail.channel.v1 import offers_pb2
from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, stock_pb2
from retail_channel_gateway.testing import FakeMarketplace
from retail_channel_gateway.testing.harness import (
    Clients,
    register,
    secret_of,
    stream_channel,
    webhook_channel,
)
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.grpcx import connect


async def test_reservation_through_the_gateway_is_one_trace_down_to_the_projection(
    start_service, database_url, postgres_server, nats_server, otlp_receiver
) -> None:
    inventory_db = await postgres_server.create_database()
    telemetry = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "NATS_URL": nats_server.url,
        "DB_POOL_MAX": "4",
    }
    inventory = await start_service(
        "retail_inventory", {**telemetry, "DATABASE_URL": inventory_db.dsn, "OTEL_SERVICE_NAME": "inventory"}
    )
    inv_pool = await create_pool(inventory_db.dsn, min_size=1, max_size=1)
    store = CredentialStore(inv_pool)
    wms_key = (await store.create("wms", PrincipalKind.OPERATOR, ["inventory.operator"])).key
    service_key = (await store.create("channel-gateway", PrincipalKind.SERVICE)).key
    gateway = await start_service(
        "retail_channel_gateway",
        {
            **telemetry,
            "DATABASE_URL": database_url,
            "OTEL_SERVICE_NAME": "channel-gateway",
            "INVENTORY_RESERVATION_TARGET": inventory.address,
            "SERVICE_CREDENTIAL": service_key.get_secret_value(),
            "REGISTRY_CACHE_SECONDS": "0",
            "ALLOW_HTTP_WEBHOOKS": "true",
            "DELIVERY_POLL_SECONDS": "0.02",
        },
    )
    pool = await create_pool(database_url, min_size=1, max_size=2)
    clients = Clients(pool, gateway.address)
    wms_channel = connect(inventory.address, credential=wms_key, default_timeout=30, tracing=False)
    market = FakeMarketplace(b"")
    market_url = await market.start()
    try:
        operator = await clients.operator()
        key, _ = await register(operator, stream_channel("pos"), ["S1"])
        _, secret = await register(operator, webhook_channel("web", market_url), ["S1"])
        market.secret = secret.encode()
        wms = inventory_service_pb2_grpc.InventoryServiceStub(wms_channel)
        store_s1 = location_pb2.Location(
            location_id="s1",
            kind=location_pb2.LOCATION_KIND_STORE,
            region_id="r1",
            time_zone="Europe/Berlin",
            channel_ids=["pos", "web"],
            active=True,
        )
        await wms.UpsertLocation(inv.UpsertLocationRequest(request_id="l", location=store_s1))
        now = Timestamp()
        now.GetCurrentTime()
        receipt = stock_pb2.Movement(
            movement_id="m1",
            sku="S1",
            location_id="s1",
            delta=5,
            kind=stock_pb2.MOVEMENT_KIND_RECEIPT,
            occur_time=now,
        )
        await wms.RecordMovements(inv.RecordMovementsRequest(request_id="m", movements=[receipt]))

        pos = clients.gateway(key)
        line = offers_pb2.ReserveLine(sku="S1", location_id="s1", quantity=2)
        await pos.ReserveStock(gw.ReserveStockRequest(reservation_id="r-1", lines=[line]))

        def complete(spans) -> bool:
            servers = [
                s
                for s in spans
                if s.service_name == "channel-gateway"
                and s.kind == "SERVER"
                and s.name.endswith("/ReserveStock")
            ]
            if not servers:
                return False
            trace = [s for s in spans if s.trace_id == servers[0].trace_id]
            return (
                any(s.service_name == "inventory" and s.kind == "SERVER" for s in trace)
                and any(s.service_name == "channel-gateway" and s.kind == "CONSUMER" for s in trace)
                and any(s.name == "deliver web" and s.attributes.get("retail.delivery.ok") for s in spans)
            )

        spans = await asyncio.to_thread(otlp_receiver.wait_for, complete, 60.0)
        server = next(
            s for s in spans if s.kind == "SERVER" and s.name.endswith("ChannelGatewayService/ReserveStock")
        )
        trace = [s for s in spans if s.trace_id == server.trace_id]
        by_id = {s.span_id: s for s in trace}
        downstream = next(s for s in trace if s.service_name == "inventory" and s.kind == "SERVER")
        assert downstream.name == "/retail.inventory.v1.InventoryService/ReserveStock"
        client = by_id[downstream.parent_span_id]  # the gateway's outgoing call, inside its server span
        assert (client.service_name, client.kind) == ("channel-gateway", "CLIENT")
        consumed = {
            str(s.attributes.get("retail.event.type"))
            for s in trace
            if s.service_name == "channel-gateway" and s.kind == "CONSUMER"
        }
        assert "retail.inventory.v1.ReservationChanged" in consumed  # the reservation's own event, projected
        # the webhook delivery of the reservation's availability change continues that change's trace
        deliveries = [s for s in spans if s.name == "deliver web" and s.attributes.get("retail.delivery.ok")]
        continued = [
            d
            for d in deliveries
            if d.trace_id == server.trace_id or any(t == server.trace_id for t, _ in d.links)
        ]
        assert continued, [(d.trace_id, d.links) for d in deliveries]
        assert all(d.kind == "CLIENT" for d in continued)
        assert not any(secret_of(key) in str(s.attributes) for s in spans)  # no secret in traces
    finally:
        await market.close()
        await wms_channel.close(None)
        await clients.close()
        await pool.close()
        await inv_pool.close()
        await inventory_db.drop()
