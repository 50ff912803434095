"""Reservation metrics as Prometheus scrapes them from a running service (python -m retail_inventory)."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from retail.inventory.v1 import inventory_service_pb2 as pb
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, stock_pb2
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.grpcx import connect
from retail_common.testing.ports import free_port
from retail_inventory.servicer import OPERATOR_ROLE
from retail_inventory.testing import T0

SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples by (metric name, labels): otel_scope_* labels dropped, and empty ones, which Prometheus
    treats as absent (the exporter writes channel="" where a point has no channel)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(
                (k, v.strip('"'))
                for k, v in (pair.split("=", 1) for pair in match[2].split(",") if pair)
                if not k.startswith("otel_scope") and v != '""'
            )
            samples[(match[1], labels)] = float(match[3])
    return samples


def reservations(event: str, channel: str | None = "web") -> tuple[str, frozenset[tuple[str, str]]]:
    labels = {("event", event)} | ({("channel", channel)} if channel else set())
    return ("retail_inventory_reservations_total", frozenset(labels))


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
async def service(start_service, database_url, nats_server, metrics_port):
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "DB_POOL_MAX": "4",
        "EXPIRY_SWEEP_INTERVAL_SECONDS": "0.2",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
    }
    return await start_service("retail_inventory", env)


async def test_reservation_events_and_out_of_stock_refusals_are_counted_by_channel(
    service, database_url, metrics_port
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    store = CredentialStore(pool)
    channels: list[grpc.aio.Channel] = []

    async def stub(principal: str, kind: PrincipalKind, roles: list[str] | None = None):
        key = (await store.create(principal, kind, roles or [])).key
        channels.append(connect(service.address, credential=key, default_timeout=30.0, tracing=False))
        return inventory_service_pb2_grpc.InventoryServiceStub(channels[-1])

    try:
        operator = await stub("ops", PrincipalKind.OPERATOR, [OPERATOR_ROLE])
        wms = await stub("wms", PrincipalKind.SERVICE)
        web = await stub("web", PrincipalKind.CHANNEL)
        await operator.UpsertLocation(
            pb.UpsertLocationRequest(
                request_id="loc",
                location=location_pb2.Location(
                    location_id="s1",
                    kind=location_pb2.LOCATION_KIND_STORE,
                    region_id="r1",
                    time_zone="Europe/Berlin",
                    channel_ids=["web"],
                    active=True,
                ),
            )
        )
        occurred = Timestamp()
        occurred.FromDatetime(T0)
        await wms.RecordMovements(
            pb.RecordMovementsRequest(
                request_id="seed",
                movements=[
                    stock_pb2.Movement(
                        movement_id="seed",
                        sku="A",
                        location_id="s1",
                        delta=10,
                        kind=stock_pb2.MOVEMENT_KIND_RECEIPT,
                        occur_time=occurred,
                    )
                ],
            )
        )

        def reserve(rid: str, quantity: int) -> pb.ReserveStockRequest:
            line = pb.ReserveLine(sku="A", location_id="s1", quantity=quantity)
            return pb.ReserveStockRequest(reservation_id=rid, channel_id="web", lines=[line])

        for rid in ("r1", "r2", "r3"):
            await web.ReserveStock(reserve(rid, 1))
        await web.ReserveStock(reserve("r1", 1))  # a retry: same reservation, not a new one
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await web.ReserveStock(reserve("big", 100))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        await web.ConfirmReservation(pb.ConfirmReservationRequest(request_id="c1", reservation_id="r1"))
        await web.ConfirmReservation(pb.ConfirmReservationRequest(request_id="c1", reservation_id="r1"))
        await web.ReleaseReservation(pb.ReleaseReservationRequest(request_id="x2", reservation_id="r2"))
        # r3 falls due: the sweep (database clock) expires it.
        await pool.execute("update reservations set expires_at = now() where reservation_id = 'r3'")

        expected = {
            reservations("created"): 3.0,
            reservations("confirmed"): 1.0,
            reservations("released"): 1.0,
            reservations("expired", channel=None): 1.0,
            ("retail_inventory_out_of_stock_refusals_total", frozenset({("channel", "web")})): 1.0,
        }
        deadline = time.monotonic() + 30
        while True:
            samples = scrape(metrics_port)
            seen = {key: samples.get(key) for key in expected}
            if seen == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert seen == expected
    finally:
        for channel in channels:
            await channel.close()
        await pool.close()
