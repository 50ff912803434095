"""Channel-gateway benchmarks beside raw baselines measured in the same run (issue 7).

- Change propagation: a PriceChanged event on JetStream (as pricing's relay publishes it) -> gateway
  process (inbox, projection, ledger, delivery engine) -> signed webhook received by a fake marketplace
  endpoint in this process; p50 and p99 at a steady rate, beside raw JetStream publish -> subscriber
  latency of the same number of messages at the same rate on the same server. (Approval -> outbox ->
  relay is pricing's part and not included.)
- GetOffers offers/s (BENCH_GW_SKUS SKUs per call, gateway fanning out to pricing, inventory and
  promotion, all separate processes) beside a bare grpc.aio echo (separate process) called through the
  same client stack (connect() with the key and default deadline), target >= 0.4; BENCH_GW_ROUNDS (3)
  alternating rounds of BENCH_SECONDS (4) each. Also the server CPU (utime+stime from /proc) per call:
  the gateway's, and all four services' together, beside the echo server's: on a shared 2-core box
  the calls/s ratio moved by +-0.1 between identical runs, CPU per call much less.

Run alone: `python -m bench.channel_gateway`; `run_channel_gateway_bench()` is the hook for bench/__main__.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import nats
from nats.aio.msg import Msg
from pydantic import SecretStr

from bench._pyspy import sampled
from bench.raw_grpc_echo import ECHO_METHOD as ECHO
from bench.raw_grpc_echo import start_echo
from bench.runtime_overhead import cpu_seconds
from retail.channel.v1 import channel_gateway_service_pb2 as gw
from retail.channel.v1 import channel_gateway_service_pb2_grpc
from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, stock_pb2
from retail.pricing.v1 import change_sets_pb2, pricing_service_pb2_grpc
from retail.pricing.v1 import events_pb2 as pricing_events
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail_channel_gateway.testing import FakeMarketplace
from retail_channel_gateway.testing.harness import (
    Clients,
    eventually,
    register,
    register_keys,
    webhook_channel,
)
from retail_common.auth import AUTH_MIGRATIONS
from retail_common.auth.keys import generate_key
from retail_common.context import PrincipalKind
from retail_common.db import AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, create_pool, migrate, transaction
from retail_common.grpcx import connect
from retail_common.messaging import (
    MESSAGING_MIGRATIONS,
    SUITE_STREAMS,
    Envelope,
    OutboxWriter,
    ensure_streams,
    new_event_id,
)
from retail_common.testing import NatsServer
from retail_common.testing.postgres import locate_postgres
from retail_common.testing.process import ServiceProcess
from retail_pricing.testing import add, price_list, product
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import MIGRATIONS as PROMOTION_MIGRATIONS
from retail_promotion.repository import CampaignRepository
from retail_promotion.testing import campaign_pb, percent_promotion_pb

Row = tuple[str, float, float | None, float | None]

RATE = float(os.environ.get("BENCH_GW_RATE", "50"))  # events per second, steady
EVENTS = int(os.environ.get("BENCH_GW_EVENTS", "500"))
SKUS_PER_CALL = int(os.environ.get("BENCH_GW_SKUS", "10"))
CATALOGUE = 200
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))  # per round
ROUNDS = int(os.environ.get("BENCH_GW_ROUNDS", "3"))


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


# --- raw baselines -------------------------------------------------------------------------------------


async def _raw_jetstream_latency(nats_url: str, count: int) -> list[float]:
    """Publish -> push-subscriber latency (ms) of `count` messages at RATE on a stream of its own."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(name="RAWLAT", subjects=["rawlat.>"])
    sent: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def received(msg: Msg) -> None:
        latencies.append((time.perf_counter() - sent[int(msg.data)]) * 1000)
        await msg.ack()
        if len(latencies) == count:
            done.set()

    sub = await js.subscribe("rawlat.>", cb=received, manual_ack=True)
    started = time.perf_counter()
    for i in range(count):
        due = started + i / RATE
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent[i] = time.perf_counter()
        await js.publish(f"rawlat.{i % 50}", str(i).encode())
    await asyncio.wait_for(done.wait(), 120)
    await sub.unsubscribe()
    await nc.close()
    return latencies


# --- the suite ------------------------------------------------------------------------------------------


class _Suite:
    def __init__(self) -> None:
        self.nats = NatsServer()
        self.processes: list[ServiceProcess] = []
        self.dbs: list[Any] = []
        self.channels: list[grpc.aio.Channel] = []
        self.pools: list[Any] = []

    async def start(self) -> tuple[ServiceProcess, Clients]:
        server = await locate_postgres()
        self.dbs = [await server.create_database(f"bgw{i}") for i in range(4)]
        gateway_db, pricing_db, inventory_db, promotion_db = (db.dsn for db in self.dbs)
        self.nats.start()
        service_key, ops_key, approver_key, wms_key = (generate_key()[1] for _ in range(4))
        common = {"NATS_URL": self.nats.url, "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
        await migrate(pricing_db, [AUDIT_MIGRATIONS, AUTH_MIGRATIONS])
        await migrate(inventory_db, [AUDIT_MIGRATIONS, AUTH_MIGRATIONS])
        await migrate(
            promotion_db,
            [
                AUDIT_MIGRATIONS,
                AUTH_MIGRATIONS,
                IDEMPOTENCY_MIGRATIONS,
                MESSAGING_MIGRATIONS,
                PROMOTION_MIGRATIONS,
            ],
        )
        await register_keys(
            pricing_db,
            [
                (service_key, "channel-gateway", PrincipalKind.SERVICE, []),
                (ops_key, "ops", PrincipalKind.OPERATOR, ["pricing.operator"]),
                (approver_key, "approver", PrincipalKind.OPERATOR, ["pricing.approver"]),
            ],
        )
        await register_keys(
            inventory_db,
            [
                (service_key, "channel-gateway", PrincipalKind.SERVICE, []),
                (wms_key, "wms", PrincipalKind.OPERATOR, ["inventory.operator"]),
            ],
        )
        await register_keys(promotion_db, [(service_key, "channel-gateway", PrincipalKind.SERVICE, [])])
        await self._campaign(promotion_db)
        inventory = await self._start("retail_inventory", {**common, "DATABASE_URL": inventory_db})
        pricing = await self._start("retail_pricing", {**common, "DATABASE_URL": pricing_db})
        await self._stock(inventory.address, wms_key)
        await self._prices(pricing.address, ops_key, approver_key)
        promotion = await self._start(
            "retail_promotion",
            {
                **common,
                "DATABASE_URL": promotion_db,
                "SERVICE_CREDENTIAL": service_key.get_secret_value(),
                "PRICING_TARGET": pricing.address,
                "INVENTORY_RESERVATION_TARGET": inventory.address,
            },
        )
        gateway = await self._start(
            "retail_channel_gateway",
            {
                **common,
                "DATABASE_URL": gateway_db,
                "ALLOW_HTTP_WEBHOOKS": "true",
                "SERVICE_CREDENTIAL": service_key.get_secret_value(),
                "PRICING_TARGET": pricing.address,
                "INVENTORY_RESERVATION_TARGET": inventory.address,
                "PROMOTION_TARGET": promotion.address,
                "DB_POOL_MAX": "20",
                "FACADE_TIMEOUT_SECONDS": "10",
                "DELIVERY_POLL_SECONDS": "0.005",
            },
        )
        pool = await create_pool(gateway_db, min_size=1, max_size=2)
        self.pools.append(pool)
        return gateway, Clients(pool, gateway.address)

    async def _start(self, module: str, env: dict[str, str]) -> ServiceProcess:
        process = ServiceProcess(module, env)
        process.start()
        await process.wait_serving(120)
        self.processes.append(process)
        return process

    async def _campaign(self, dsn: str) -> None:
        pool = await create_pool(dsn, min_size=1, max_size=1)
        now = datetime.now(UTC)
        promotions = [percent_promotion_pb(f"p-{i}", "10", [f"sku-{i}"]) for i in range(0, CATALOGUE, 4)]
        campaign = campaign_pb(
            "B1",
            promotions=promotions,
            channels=("web",),
            start=now - timedelta(days=1),
            end=now + timedelta(days=30),
        )
        try:
            async with transaction(pool) as conn:
                repo = CampaignRepository(OutboxWriter())
                await repo.create(conn, campaign, "bench")
                await repo.set_state(conn, "B1", CampaignState.ACTIVE)
        finally:
            await pool.close()

    def _channel(self, address: str, key: SecretStr) -> grpc.aio.Channel:
        channel = connect(address, credential=key, default_timeout=600, tracing=False)
        self.channels.append(channel)
        return channel

    async def _stock(self, address: str, key: SecretStr) -> None:
        wms = inventory_service_pb2_grpc.InventoryServiceStub(self._channel(address, key))
        store = location_pb2.Location(
            location_id="s1",
            kind=location_pb2.LOCATION_KIND_STORE,
            region_id="r1",
            time_zone="Europe/Berlin",
            channel_ids=["web"],
            active=True,
        )
        await wms.UpsertLocation(inv.UpsertLocationRequest(request_id="l", location=store))
        moves = [
            stock_pb2.Movement(
                movement_id=f"m{i}",
                sku=f"sku-{i}",
                location_id="s1",
                delta=100,
                kind=stock_pb2.MOVEMENT_KIND_RECEIPT,
            )
            for i in range(CATALOGUE)
        ]
        for move in moves:
            move.occur_time.GetCurrentTime()
        await wms.RecordMovements(inv.RecordMovementsRequest(request_id="m", movements=moves))

    async def _prices(self, address: str, ops_key: SecretStr, approver_key: SecretStr) -> None:
        operator = pricing_service_pb2_grpc.PricingServiceStub(self._channel(address, ops_key))
        approver = pricing_service_pb2_grpc.PricingServiceStub(self._channel(address, approver_key))
        skus = [f"sku-{i}" for i in range(CATALOGUE)]
        await operator.BatchUpsertProducts(
            pricing_pb.BatchUpsertProductsRequest(request_id="p", products=[product(s) for s in skus])
        )
        await operator.CreatePriceList(
            pricing_pb.CreatePriceListRequest(request_id="l", price_list=price_list("base"))
        )
        start = datetime.now(UTC) - timedelta(days=1)
        items = [add("base", s, f"{5 + i % 50}.99", start) for i, s in enumerate(skus)]
        created = (
            await operator.CreateChangeSet(
                pricing_pb.CreateChangeSetRequest(
                    request_id="c", change_set=change_sets_pb2.ChangeSet(items=items)
                )
            )
        ).change_set
        submitted = (
            await operator.SubmitChangeSet(
                pricing_pb.SubmitChangeSetRequest(
                    request_id="s", change_set_id=created.change_set_id, etag=created.etag
                )
            )
        ).change_set
        await approver.ApproveChangeSet(
            pricing_pb.ApproveChangeSetRequest(
                request_id="a", change_set_id=submitted.change_set_id, etag=submitted.etag
            )
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)
        for pool in self.pools:
            await pool.close()
        for process in reversed(self.processes):
            await process.terminate()
        self.nats.close()
        for db in self.dbs:
            await db.drop()


# --- measurements ---------------------------------------------------------------------------------------


async def _propagation(nats_url: str, market: FakeMarketplace) -> list[float]:
    """PriceChanged published at RATE -> received at the fake endpoint, ms per event."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, SUITE_STREAMS)
    sent: dict[tuple[str, int], float] = {}
    started = time.perf_counter()
    for i in range(EVENTS):
        # versions above those of pricing's own PriceChanged events from seeding (state-carried: newer wins)
        sku, version = f"sku-{i % CATALOGUE}", i // CATALOGUE + 1000
        event = pricing_events.PriceChanged(sku=sku, version=version).SerializeToString()
        envelope = Envelope(
            subject=f"retail.pricing.v1.price_changed.{sku}",
            event_id=new_event_id(),
            event_type="retail.pricing.v1.PriceChanged",
            schema_version=1,
            aggregate_type="sku_price",
            aggregate_key=sku,
            aggregate_version=version,
            occurred_at=datetime.now(UTC),
            payload=event,
        )
        due = started + i / RATE
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent[(f"price/{sku}", version)] = time.perf_counter()
        await js.publish(envelope.subject, event, headers=envelope.headers())
    await nc.close()

    def ours() -> list[Any]:
        return [r for r in market.received if (r.entity_key, r.version) in sent]

    await market.wait_until(lambda: len(ours()) >= EVENTS, within=300)
    # the fake stamps time.monotonic(); convert our perf_counter stamps through the same clock offset
    offset = time.monotonic() - time.perf_counter()
    return [(r.at - (sent[(r.entity_key, r.version)] + offset)) * 1000 for r in ours()]


_errors: dict[str, int] = {}


async def _rate(call: Any, name: str = "") -> tuple[int, float]:
    """Successful calls and seconds with CONCURRENCY closed-loop callers; failures are counted apart."""
    done = 0
    stop = time.perf_counter() + SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            try:
                await call()
            except grpc.aio.AioRpcError:
                _errors[name] = _errors.get(name, 0) + 1
                continue
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done, time.perf_counter() - started


@dataclass
class _Tally:
    """Calls, seconds and server CPU seconds (per process) summed over the rounds of one target."""

    calls: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    async def round(self, call: Any, pids: dict[str, int], name: str = "") -> None:
        before = {process: cpu_seconds(pid) for process, pid in pids.items()}
        done, elapsed = await _rate(call, name)
        self.calls += done
        self.seconds += elapsed
        for process, pid in pids.items():
            self.cpu[process] = self.cpu.get(process, 0.0) + cpu_seconds(pid) - before[process]

    @property
    def qps(self) -> float:
        return self.calls / self.seconds

    def cpu_us(self, *processes: str) -> float:
        return sum(self.cpu[p] for p in processes) / self.calls * 1e6


async def run_channel_gateway_bench() -> list[Row]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-gateway-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    suite = _Suite()
    market = FakeMarketplace(b"")
    echo_process, echo_address = await start_echo(tmp)
    echo_channel: grpc.aio.Channel | None = None
    try:
        _gateway, clients = await suite.start()
        operator = await clients.operator()
        url = await market.start()
        skus = [f"sku-{i}" for i in range(CATALOGUE)]
        key, secret = await register(operator, webhook_channel("web", url), skus)
        market.secret = secret.encode()
        web = channel_gateway_service_pb2_grpc.ChannelGatewayServiceStub(clients._channel(key))

        async def first_offer() -> bool:
            try:
                await web.GetOffers(gw.GetOffersRequest(location_id="s1", skus=skus[:1], currency_code="EUR"))
            except grpc.aio.AioRpcError:
                return False  # pricing/promotion still learning the location from inventory's events
            return True

        await eventually(first_offer, "offers served", within=120)
        latencies = await _propagation(suite.nats.url, market)
        raw = await _raw_jetstream_latency(suite.nats.url, EVENTS)
        turn = 0

        async def offers() -> None:
            nonlocal turn
            turn += 1
            first = (turn * SKUS_PER_CALL) % (CATALOGUE - SKUS_PER_CALL)
            await web.GetOffers(
                gw.GetOffersRequest(
                    location_id="s1", skus=skus[first : first + SKUS_PER_CALL], currency_code="EUR"
                )
            )

        payload = gw.GetOffersRequest(location_id="s1", skus=skus[:SKUS_PER_CALL], currency_code="EUR")
        # The same client stack as GetOffers' (Clients._channel: connect() with the channel's key and
        # default deadline, no tracing), so the ratio compares the servers, not two kinds of client.
        echo_channel = connect(echo_address, credential=SecretStr(key), default_timeout=30.0, tracing=False)
        echo_call = echo_channel.unary_unary(ECHO, request_serializer=None, response_deserializer=None)
        data = payload.SerializeToString()

        async def echo() -> None:
            await echo_call(data)

        # Before 2026-11-27 the echo was called on a bare channel (no client interceptors, no metadata):
        # kept as an informational row so ratios from before and after can be compared.
        bare_channel = grpc.aio.insecure_channel(echo_address)
        bare_call = bare_channel.unary_unary(ECHO, request_serializer=None, response_deserializer=None)

        async def bare_echo() -> None:
            await bare_call(data)

        services = {process.module.rsplit("_", 1)[-1]: process.pid for process in suite.processes}
        echo_pid = {"echo": echo_process.pid}
        bare, same, got = _Tally(), _Tally(), _Tally()
        try:
            for round_number in range(ROUNDS):  # alternating, so load drifts hit all three alike
                await bare.round(bare_echo, echo_pid)
                await same.round(echo, echo_pid)
                with sampled(services, f"gateway-offers-{round_number}"):  # BENCH_PYSPY only
                    await got.round(offers, services, "offers")
        finally:
            await bare_channel.close(None)
        offers_qps, echo_qps, bare_qps = got.qps, same.qps, bare.qps
        health = await operator.GetChannelHealth(ops.GetChannelHealthRequest(channel_id="web"))
        violations = len(market.violations)
        return [
            (
                f"price event -> webhook p50 ms at {RATE:g}/s (raw: JetStream pub -> sub)",
                _pct(latencies, 50),
                _pct(raw, 50),
                None,
            ),
            (
                f"price event -> webhook p99 ms at {RATE:g}/s (raw: JetStream pub -> sub)",
                _pct(latencies, 99),
                _pct(raw, 99),
                None,
            ),
            (
                f"webhook deliveries violating order/dedupe (<= target; backlog {health.health.backlog})",
                float(violations),
                None,
                0.0,
            ),
            (
                "GetOffers failed calls (<= target; UNAVAILABLE on a loaded box)",
                float(_errors.get("offers", 0)),
                None,
                0.0,
            ),
            (
                f"GetOffers calls/s ({SKUS_PER_CALL} SKUs; pricing+inventory+promotion) vs grpc.aio echo",
                offers_qps,
                echo_qps,
                0.4,
            ),
            (
                "GetOffers calls/s vs grpc.aio echo on a bare client channel (the ratio before 2026-11-27)",
                offers_qps,
                bare_qps,
                None,
            ),
            (
                "gateway CPU us per GetOffers call vs echo server CPU us per call",
                got.cpu_us("gateway"),
                same.cpu_us("echo"),
                None,
            ),
            (
                "gateway+pricing+inventory+promotion CPU us per GetOffers call vs echo",
                got.cpu_us(*services),
                same.cpu_us("echo"),
                None,
            ),
        ]
    finally:
        if echo_channel is not None:
            await echo_channel.close(None)
        echo_process.terminate()
        await echo_process.wait()
        await market.close()
        await suite.close()


if __name__ == "__main__":
    for name, ours, raw, target in asyncio.run(run_channel_gateway_bench()):
        ratio = f"  raw {raw:,.2f}  ratio {ours / raw:.2f}" if raw else ""
        goal = f"  target {target:g}" if target is not None else ""
        print(f"{name:<100} {ours:>12,.2f}{ratio}{goal}")
