"""`make run` (scripts/run_suite.py) as a newcomer meets it: services up, working credentials, clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from retail.channel.v1 import channel_operations_service_pb2 as channel_ops_pb2
from retail.channel.v1 import channel_operations_service_pb2_grpc as channel_ops_grpc
from retail.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2, promotion_service_pb2_grpc
from retail_common.testing.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
SERVING_LINE = re.compile(r"\[run\] (\S+)\s+SERVING on (\S+)")


async def _read_until_ready(process: asyncio.subprocess.Process, log: list[str]) -> dict[str, str]:
    addresses: dict[str, str] = {}
    assert process.stdout is not None
    while True:
        line = (await process.stdout.readline()).decode()
        if not line:
            raise AssertionError("run_suite exited before it was ready:\n" + "".join(log))
        log.append(line)
        if match := SERVING_LINE.search(line):
            addresses[match.group(1)] = match.group(2)
        if "ready; Ctrl-C stops the suite" in line:
            return addresses


@pytest.mark.parametrize("postgres", ["configured", "embedded"])
async def test_make_run_starts_every_service_with_working_credentials_and_stops_cleanly(
    postgres_server: PostgresServer, tmp_path: Path, postgres: str
) -> None:
    """`embedded` is a fresh machine's path: no Postgres answers, so the runner starts its own (with
    contrib: pricing's migrations need btree_gist) under the run directory and stops it at the end."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "DATABASE_URL": postgres_server.admin_dsn,
        "RETAIL_RUN_DIR": str(run_dir),
        "RETAIL_DB_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
        # Ephemeral ports so the test never collides with a developer's `make run`.
        **{f"{name}_GRPC_LISTEN": "127.0.0.1:0" for name in
           ("PRICING", "INVENTORY_RESERVATION", "PROMOTION", "CHANNEL_GATEWAY")},
    }  # fmt: skip
    env.pop("NATS_URL", None)  # the runner starts its own nats-server
    if postgres == "embedded":
        env["RETAIL_POSTGRES_EMBEDDED"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "run_suite.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    log: list[str] = []
    try:
        addresses = await asyncio.wait_for(_read_until_ready(process, log), timeout=240)
        assert set(addresses) == {"pricing", "inventory-reservation", "promotion", "channel-gateway"}
        credentials = run_dir / "credentials"
        assert (credentials / "operator.key").stat().st_mode & 0o077 == 0  # readable by its owner only
        operator = [("authorization", "Bearer " + (credentials / "operator.key").read_text().strip())]
        as_promotion = [("authorization", "Bearer " + (credentials / "promotion.key").read_text().strip())]

        async with grpc.aio.insecure_channel(addresses["pricing"]) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            pricing = pricing_service_pb2_grpc.PricingServiceStub(channel)
            await pricing.ListProducts(pricing_service_pb2.ListProductsRequest(), metadata=operator)
            # Another service's key is accepted: the call gets as far as the missing SKU.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pricing.GetProduct(
                    pricing_service_pb2.GetProductRequest(sku="NOPE"), metadata=as_promotion
                )
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        async with grpc.aio.insecure_channel(addresses["inventory-reservation"]) as channel:
            inventory = inventory_service_pb2_grpc.InventoryServiceStub(channel)
            await inventory.ListLocations(inventory_service_pb2.ListLocationsRequest(), metadata=operator)
        async with grpc.aio.insecure_channel(addresses["promotion"]) as channel:
            promotion = promotion_service_pb2_grpc.PromotionServiceStub(channel)
            await promotion.ListCampaigns(promotion_service_pb2.ListCampaignsRequest(), metadata=operator)
        async with grpc.aio.insecure_channel(addresses["channel-gateway"]) as channel:
            operations = channel_ops_grpc.ChannelOperationsServiceStub(channel)
            await operations.ListChannels(channel_ops_pb2.ListChannelsRequest(), metadata=operator)

        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        rest, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0
        output = "".join(log) + rest.decode()
        assert "Traceback" not in output, output
        if postgres == "embedded":
            assert "postgres: embedded" in output, output
            assert not (run_dir / "postgres" / "postmaster.pid").exists()  # stopped with the suite
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        admin = await asyncpg.connect(postgres_server.admin_dsn)
        try:
            names = await admin.fetch("select datname from pg_database where datname like $1", prefix + "%")
            for row in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await admin.close()
