"""Promotion benchmark beside a raw baseline measured in the same run (issue 6).

EvaluateCart for a BENCH_PROMOTION_LINES-line cart (full size 20) against BENCH_PROMOTIONS active
promotions (full size 20,000: 20 campaigns of 1,000, each promotion on two SKUs, a mix of stackable,
exclusive and grouped promotions plus cart-level tiered spend), the promotion service and the pricing
service it asks for prices each running as a separate process:

- carts/s with BENCH_CONCURRENCY clients vs a bare grpc.aio echo server (separate process) called the
  same way;
- p99 latency at half the measured maximum throughput (open loop, requests paced at that rate; target
  p99 <= 20 ms).

Run alone: `python -m bench.promotion_service`; `run_promotion_bench()` is the hook for bench/__main__
(rows: figure, ours, raw baseline or None, target ratio or absolute target).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from bench.raw_grpc_echo import ECHO_METHOD as ECHO
from bench.raw_grpc_echo import start_echo
from retail.pricing.v1 import change_sets_pb2, pricing_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail.promotion.v1 import evaluation_pb2, promotion_pb2, promotion_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2 as pb
from retail_channel_gateway.testing.harness import register_keys
from retail_common.auth import AUTH_MIGRATIONS
from retail_common.auth.keys import generate_key
from retail_common.context import PrincipalKind
from retail_common.db import AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, create_pool, migrate, transaction
from retail_common.grpcx import connect
from retail_common.messaging import MESSAGING_MIGRATIONS, OutboxWriter
from retail_common.testing import NatsServer
from retail_common.testing.postgres import locate_postgres
from retail_common.testing.process import ServiceProcess
from retail_pricing.testing import add, price_list, product
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import MIGRATIONS, CampaignRepository
from retail_promotion.testing import campaign_pb, money_pb, percent_promotion_pb

__all__ = ["run_promotion_bench"]

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
PROMOTIONS = int(os.environ.get("BENCH_PROMOTIONS", "20000"))
LINES = int(os.environ.get("BENCH_PROMOTION_LINES", "20"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
PER_CAMPAIGN = 1000
PRICED = 200  # SKUs priced at pricing; carts draw their lines from these

Row = tuple[str, float, float | None, float | None]


async def _max_rate(call: Callable[[], Awaitable[object]]) -> float:
    """Calls per second with CONCURRENCY closed-loop callers for SECONDS."""
    done = 0
    stop = time.perf_counter() + SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


async def _p99_at(rate: float, call: Callable[[], Awaitable[object]]) -> float:
    """p99 latency (ms) of calls started at a fixed rate (open loop) for SECONDS."""
    latencies: list[float] = []
    interval = 1.0 / rate
    started = time.perf_counter()
    tasks = []

    async def one() -> None:
        t0 = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - t0) * 1000)

    n = 0
    while (now := time.perf_counter()) - started < SECONDS:
        due = started + n * interval
        if now < due:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(one()))
        n += 1
    await asyncio.gather(*tasks)
    return statistics.quantiles(latencies, n=100)[98]


def _promotion(i: int) -> promotion_pb2.Promotion:
    skus = [f"sku-{i % PROMOTIONS:06d}", f"sku-{(i * 7 + 1) % PROMOTIONS:06d}"]
    p: promotion_pb2.Promotion = percent_promotion_pb(
        f"p-{i:06d}", str(5 + i % 20), skus, exclusive=i % 10 == 0
    )
    p.stacking.priority = i % 5
    if i % 3 == 0:
        p.stacking.group = f"g{i % 4}"
    return p


def _tiered(i: int) -> promotion_pb2.Promotion:
    return promotion_pb2.Promotion(
        promotion_id=f"t-{i:03d}",
        level=promotion_pb2.PROMOTION_LEVEL_CART,
        reward=promotion_pb2.Reward(
            tiered_spend=promotion_pb2.TieredSpend(
                tiers=[
                    promotion_pb2.SpendTier(min_spend=money_pb("100.00"), amount_off=money_pb("5.00")),
                    promotion_pb2.SpendTier(min_spend=money_pb("300.00"), amount_off=money_pb("20.00")),
                ]
            )
        ),
        eligibility=promotion_pb2.Eligibility(skus=[f"sku-{s:06d}" for s in range(i, PRICED, 7)]),
        stacking=promotion_pb2.Stacking(mode=promotion_pb2.STACKING_MODE_STACKABLE, priority=1, group="cart"),
    )


class _Suite:
    def __init__(self) -> None:
        self.nats = NatsServer()
        self.processes: list[ServiceProcess] = []
        self.channels: list[grpc.aio.Channel] = []
        self.dbs: list[Any] = []

    async def start(self) -> promotion_service_pb2_grpc.PromotionServiceAsyncStub:
        server = await locate_postgres()
        pricing_db, promotion_db = await server.create_database("bp"), await server.create_database("bq")
        self.dbs = [pricing_db, promotion_db]
        self.nats.start()
        service_key, ops_key, approver_key, web_key = (generate_key()[1] for _ in range(4))
        await migrate(pricing_db.dsn, [AUDIT_MIGRATIONS, AUTH_MIGRATIONS])
        await migrate(
            promotion_db.dsn,
            [AUDIT_MIGRATIONS, AUTH_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, MESSAGING_MIGRATIONS, MIGRATIONS],
        )
        operator_roles = ["pricing.operator", "pricing.approver"]
        await register_keys(
            pricing_db.dsn,
            [
                (service_key, "promotion", PrincipalKind.SERVICE, []),
                (ops_key, "ops", PrincipalKind.OPERATOR, operator_roles),
                (approver_key, "approver", PrincipalKind.OPERATOR, operator_roles),
            ],
        )
        await register_keys(promotion_db.dsn, [(web_key, "web", PrincipalKind.CHANNEL, [])])
        env = {"NATS_URL": self.nats.url, "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
        pricing = ServiceProcess(
            "retail_pricing", {**env, "DATABASE_URL": pricing_db.dsn, "DB_POOL_MAX": "10"}
        )
        pricing.start()
        await pricing.wait_serving(120)
        self.processes.append(pricing)
        await self._prices(pricing.address, ops_key, approver_key)
        await self._promotions(promotion_db.dsn)
        promotion = ServiceProcess(
            "retail_promotion",
            {
                **env,
                "DATABASE_URL": promotion_db.dsn,
                "DB_POOL_MAX": "10",
                "SERVICE_CREDENTIAL": service_key.get_secret_value(),
                "PRICING_TARGET": pricing.address,
                "INVENTORY_RESERVATION_TARGET": "127.0.0.1:9",  # not called by EvaluateCart
            },
        )
        promotion.start()
        await promotion.wait_serving(120)
        self.processes.append(promotion)
        channel = connect(promotion.address, credential=web_key, default_timeout=60, tracing=False)
        self.channels.append(channel)
        stub: promotion_service_pb2_grpc.PromotionServiceAsyncStub = (
            promotion_service_pb2_grpc.PromotionServiceStub(channel)
        )
        return stub

    async def _prices(self, address: str, ops_key: Any, approver_key: Any) -> None:
        ops_channel = connect(address, credential=ops_key, default_timeout=600, tracing=False)
        approver_channel = connect(address, credential=approver_key, default_timeout=600, tracing=False)
        self.channels += [ops_channel, approver_channel]
        ops = pricing_service_pb2_grpc.PricingServiceStub(ops_channel)
        approver = pricing_service_pb2_grpc.PricingServiceStub(approver_channel)
        products = [product(f"sku-{s:06d}") for s in range(PRICED)]
        await ops.BatchUpsertProducts(
            pricing_pb.BatchUpsertProductsRequest(request_id="p", products=products)
        )
        await ops.CreatePriceList(
            pricing_pb.CreatePriceListRequest(request_id="l", price_list=price_list("base"))
        )
        start = datetime.now(UTC) - timedelta(days=1)
        items = [add("base", f"sku-{s:06d}", f"{5 + s % 50}.99", start) for s in range(PRICED)]
        created = await ops.CreateChangeSet(
            pricing_pb.CreateChangeSetRequest(
                request_id="c", change_set=change_sets_pb2.ChangeSet(items=items)
            )
        )
        submitted = await ops.SubmitChangeSet(
            pricing_pb.SubmitChangeSetRequest(
                request_id="s", change_set_id=created.change_set.change_set_id, etag=created.change_set.etag
            )
        )
        await approver.ApproveChangeSet(
            pricing_pb.ApproveChangeSetRequest(
                request_id="a",
                change_set_id=submitted.change_set.change_set_id,
                etag=submitted.change_set.etag,
            )
        )

    async def _promotions(self, dsn: str) -> None:
        """20 ACTIVE campaigns straight into the database (the bench measures evaluation, not seeding)."""
        pool = await create_pool(dsn, min_size=1, max_size=2)
        campaigns = CampaignRepository(OutboxWriter())
        now = datetime.now(UTC)
        try:
            for c in range(0, PROMOTIONS, PER_CAMPAIGN):
                promotions = [_promotion(i) for i in range(c, min(c + PER_CAMPAIGN, PROMOTIONS))]
                if c == 0:
                    promotions += [_tiered(i) for i in range(5)]
                campaign = campaign_pb(
                    f"bench-{c // PER_CAMPAIGN:02d}",
                    promotions=promotions,
                    channels=("web",),
                    start=now - timedelta(days=1),
                    end=now + timedelta(days=30),
                )
                async with transaction(pool) as conn:
                    await campaigns.create(conn, campaign, "bench")
                    await campaigns.set_state(conn, campaign.campaign_id, CampaignState.ACTIVE)
        finally:
            await pool.close()

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)
        for process in reversed(self.processes):
            await process.terminate()
        self.nats.close()
        for db in self.dbs:
            await db.drop()


def _carts(n: int) -> list[pb.EvaluateCartRequest]:
    rng = random.Random(11)
    return [
        pb.EvaluateCartRequest(
            scope=evaluation_pb2.CartScope(channel_id="web"),
            currency_code="EUR",
            lines=[
                evaluation_pb2.CartLine(sku=f"sku-{s:06d}", quantity=rng.randint(1, 4))
                for s in rng.sample(range(PRICED), LINES)
            ],
        )
        for _ in range(n)
    ]


async def run_promotion_bench() -> list[Row]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-promotion-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    suite = _Suite()
    echo_process, echo_address = await start_echo(tmp)
    echo_channel = grpc.aio.insecure_channel(echo_address)
    try:
        stub = await suite.start()
        carts = _carts(64)
        first = await stub.EvaluateCart(carts[0])  # warms the replica's promotion index
        candidates = sum(len(ln.adjustments) for ln in first.lines)
        turn = 0

        async def evaluate() -> None:
            nonlocal turn
            turn += 1
            await stub.EvaluateCart(carts[turn % len(carts)])

        payload = carts[0].SerializeToString()
        echo_call = echo_channel.unary_unary(ECHO, request_serializer=None, response_deserializer=None)

        async def echo() -> None:
            await echo_call(payload)

        raw = await _max_rate(echo)
        rate = await _max_rate(evaluate)
        p99 = await _p99_at(rate / 2, evaluate)
        return [
            (
                f"EvaluateCart carts/s ({LINES} lines, {PROMOTIONS} promotions, {candidates} adjustments)",
                rate,
                raw,
                None,
            ),
            (f"EvaluateCart p99 ms at {rate / 2:,.0f} carts/s (<= target)", p99, None, 20.0),
        ]
    finally:
        await echo_channel.close(None)
        echo_process.terminate()
        await echo_process.wait()
        await suite.close()


if __name__ == "__main__":
    for name, ours, raw, target in asyncio.run(run_promotion_bench()):
        ratio = f"  raw {raw:,.1f}  ratio {ours / raw:.2f}" if raw else ""
        goal = f"  target {target:g}" if target is not None else ""
        print(f"{name:<90} {ours:>12,.2f}{ratio}{goal}")
