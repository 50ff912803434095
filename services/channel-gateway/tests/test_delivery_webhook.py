"""Delivery engine against the fake marketplace (real Postgres, real HTTP; the marketplace is the only fake).

Changes are projected through the Projector from real domain event payloads (the same path as the
inbox consumers), then delivered by an in-process DeliveryEngine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio

from retail.channel.v1 import changes_pb2, health_pb2
from retail.inventory.v1 import events_pb2 as inventory_events
from retail.pricing.v1 import events_pb2 as pricing_events
from retail_channel_gateway.convert import health_proto
from retail_channel_gateway.delivery import DeliveryEngine, WebhookTransport
from retail_channel_gateway.delivery.metrics import DeliveryMetrics
from retail_channel_gateway.domain.changes import Lane
from retail_channel_gateway.domain.decode import EventFacts, decode_event
from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.events import EventWriter
from retail_channel_gateway.projector import Projector
from retail_channel_gateway.repository import ChannelRepository, LedgerRepository
from retail_channel_gateway.testing import FakeMarketplace, Mode
from retail_common.clock import SystemClock
from retail_common.db import transaction
from retail_common.messaging import OutboxWriter
from retail_common.telemetry import meter

SECRET = b"marketplace-secret"
CLOCK = SystemClock()
LOCATIONS = ["s1", "s2"]


def settings(url: str, **overrides: object) -> DeliverySettings:
    base: dict[str, object] = {
        "mode": DeliveryMode.WEBHOOK,
        "webhook_url": url,
        "batch_size": 50,
        "timeout": 1.0,
        "max_attempts": 1000,
        "initial_backoff": 0.02,
        "max_backoff": 0.1,
        "failure_threshold": 3,
        "open_for": 0.3,
    }
    base.update(overrides)
    return DeliverySettings(**base)  # type: ignore[arg-type]


async def add_channel(
    pool: asyncpg.Pool, channel_id: str, delivery: DeliverySettings, skus: list[str]
) -> None:
    repo = ChannelRepository()
    async with transaction(pool) as conn:
        await repo.create(
            conn, channel_id=channel_id, display_name=channel_id, kind="MARKETPLACE", location_ids=LOCATIONS,
            settings=delivery, active=True, webhook_secret=SECRET, signing_key_id="k1",
        )  # fmt: skip
        await repo.update_assortment(conn, channel_id, skus, [])


async def project_event(pool: asyncpg.Pool, projector: Projector, event_type: str, payload: bytes,
                        key: str, version: int) -> None:  # fmt: skip
    change = decode_event(event_type, payload, EventFacts(key, version, CLOCK.now()))
    assert change is not None
    async with transaction(pool) as conn:
        await projector.apply(conn, change)


async def stock(pool: asyncpg.Pool, projector: Projector, sku: str, location: str, version: int,
                ats: int) -> None:  # fmt: skip
    event = inventory_events.AvailabilityChanged(
        sku=sku, location_id=location, on_hand=ats, version=version,
        channels=[inventory_events.ChannelAvailableToSell(channel_id="mkt", available_to_sell=ats)],
    )  # fmt: skip
    await project_event(pool, projector, "retail.inventory.v1.AvailabilityChanged",
                        event.SerializeToString(), f"{sku}/{location}", version)  # fmt: skip


async def price(pool: asyncpg.Pool, projector: Projector, sku: str, version: int) -> None:
    event = pricing_events.PriceChanged(sku=sku, version=version)
    await project_event(
        pool, projector, "retail.pricing.v1.PriceChanged", event.SerializeToString(), sku, version
    )


@pytest_asyncio.fixture
async def marketplace() -> AsyncIterator[FakeMarketplace]:
    fake = FakeMarketplace(SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest_asyncio.fixture
async def run_engine(pool: asyncpg.Pool) -> AsyncIterator[Callable[[], DeliveryEngine]]:
    tasks: list[asyncio.Task[None]] = []
    transports: list[WebhookTransport] = []

    def start() -> DeliveryEngine:
        async def secret(channel_id: str) -> bytes | None:
            async with pool.acquire() as conn:
                return await ChannelRepository().webhook_secret(conn, channel_id)

        transport = WebhookTransport(secret, wall_clock=lambda: CLOCK.now().timestamp())
        transports.append(transport)
        engine = DeliveryEngine(
            pool, transports={DeliveryMode.WEBHOOK: transport}, events=EventWriter(OutboxWriter(CLOCK)),
            metrics=DeliveryMetrics(meter("test")), clock=CLOCK, lease_ttl=3.0, poll=0.01,
        )  # fmt: skip
        tasks.append(asyncio.create_task(engine.run()))
        return engine

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for transport in transports:
        await transport.close()


async def until(check: Callable[[], object], *, within: float = 120.0) -> None:
    """Poll an async or sync condition (a generous ceiling, never a timing assertion)."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


async def _equals(actual: object, expected: object) -> bool:
    return await actual == expected  # type: ignore[misc]


async def outbox_events(pool: asyncpg.Pool, event_type: str) -> list[asyncpg.Record]:
    return await pool.fetch("select * from outbox where event_type = $1 order by id", event_type)


async def breaker_state(pool: asyncpg.Pool, channel_id: str) -> str:
    return str(
        await pool.fetchval("select breaker_state from channel_health where channel_id = $1", channel_id)
    )


async def test_every_change_arrives_in_order_per_entity_and_nothing_is_resent_after_2xx(
    pool, marketplace, run_engine
) -> None:
    skus = [f"SKU-{i}" for i in range(20)]
    await add_channel(pool, "mkt", settings(marketplace.url), skus)
    projector = Projector(CLOCK, registry_ttl=0)
    run_engine()
    latest: dict[str, int] = {}
    for version in range(1, 6):  # projected while the engine delivers: versions race deliveries
        for sku in skus:
            await price(pool, projector, sku, version)
            await stock(pool, projector, sku, "s1", version, ats=version * 10)
            latest[f"price/{sku}"] = version
            latest[f"availability/{sku}/s1"] = version
    await stock(pool, projector, "SKU-0", "elsewhere", 1, ats=1)  # a location the channel does not serve
    await stock(pool, projector, "NOT-LISTED", "s1", 1, ats=1)  # a SKU outside its assortment
    await marketplace.wait_until(lambda: marketplace.applied == latest)
    assert marketplace.violations == []
    assert marketplace.refusals == {}
    # the ledger agrees (once the gateway has recorded the last 2xx): delivered and acknowledged = latest
    expected = {key: (v, v) for key, v in latest.items()}

    async def ledger() -> dict[str, tuple[int, int]]:
        rows = await pool.fetch(
            "select entity_key, delivered_version, acknowledged_version from delivery_ledger"
        )
        return {r["entity_key"]: (r["delivered_version"], r["acknowledged_version"]) for r in rows}

    await until(lambda: _equals(ledger(), expected))
    # price changes (tracked by the promotion deployment ledger) announced as acknowledged
    announced = await outbox_events(pool, "retail.channel.v1.DeliveryStateChanged")
    assert {r["aggregate_key"] for r in announced} == {f"mkt/price/{sku}" for sku in skus}
    # payload: the channel's own ATS
    last = [r for r in marketplace.received if r.entity_key == "availability/SKU-3/s1"][-1]
    assert last.change["availability"] == {"sku": "SKU-3", "location_id": "s1", "available_to_sell": "50"}


async def test_outage_opens_the_breaker_keeps_the_backlog_and_recovery_drains_it(
    pool, marketplace, run_engine
) -> None:
    skus = [f"SKU-{i}" for i in range(30)]
    await add_channel(pool, "mkt", settings(marketplace.url), skus)
    projector = Projector(CLOCK, registry_ttl=0)
    marketplace.set_mode(Mode.FAIL)
    run_engine()
    for sku in skus:
        await price(pool, projector, sku, 1)
    await until(lambda: _equals(breaker_state(pool, "mkt"), "OPEN"))
    await until(lambda: marketplace.status_counts.get(503, 0) >= 6)  # several open/half-open periods
    async with pool.acquire() as conn:
        health = await LedgerRepository().health(conn, "mkt", CLOCK.now())
    assert health is not None
    assert health.backlog_fast == 30  # nothing dropped, nothing dead (attempt budget not spent)
    assert health.dead_letters == 0
    # while open, attempts are rare: one trial per open period, not one per change
    failed_requests = marketplace.status_counts[503]
    max_attempts = await pool.fetchval("select max(attempts) from delivery_ledger")
    assert max_attempts <= failed_requests
    marketplace.set_mode(Mode.OK)
    await marketplace.wait_until(lambda: len(marketplace.applied) == 30)
    await until(lambda: _equals(breaker_state(pool, "mkt"), "CLOSED"))
    assert marketplace.violations == []
    conditions = [r["payload"] for r in await outbox_events(pool, "retail.channel.v1.ChannelHealthChanged")]
    from retail.channel.v1 import events_pb2, health_pb2

    states = [events_pb2.ChannelHealthChanged.FromString(p).condition for p in conditions]
    assert states == [health_pb2.CHANNEL_CONDITION_DEGRADED, health_pb2.CHANNEL_CONDITION_HEALTHY]


async def test_dead_letters_after_the_retry_policy_then_replay_delivers_them(
    pool, marketplace, run_engine
) -> None:
    skus = ["A", "B", "C"]
    await add_channel(pool, "mkt", settings(marketplace.url, max_attempts=2, failure_threshold=100), skus)
    projector = Projector(CLOCK, registry_ttl=0)
    marketplace.set_mode(Mode.FAIL)
    run_engine()
    for sku in skus:
        await price(pool, projector, sku, 1)
    ledger = LedgerRepository()
    await until(lambda: pool.fetchval("select count(*) = 3 from delivery_dead_letters"))
    async with pool.acquire() as conn:
        letters = await ledger.list_dead_letters(
            conn, "mkt", before_id=None, limit=10, include_replayed=False
        )
    assert sorted((d.entity_key, d.version, d.attempts, d.last_error) for d in letters) == [
        (f"price/{s}", 1, 2, "HTTP 503") for s in skus
    ]
    dead_events = await outbox_events(pool, "retail.channel.v1.DeliveryStateChanged")
    assert len(dead_events) == 3
    async with pool.acquire() as conn:
        row = await ledger.health(conn, "mkt", CLOCK.now())
    assert row is not None
    health = health_proto("mkt", row, CLOCK.now())
    assert (health.dead_letters, health.backlog, health.error_rate) == (3, 0, 1.0)
    assert health.condition == health_pb2.CHANNEL_CONDITION_DEGRADED
    assert health.last_failure_time.seconds > 0
    marketplace.set_mode(Mode.OK)
    async with transaction(pool) as conn:
        assert await ledger.replay_dead_letters(conn, "mkt", None, CLOCK.now()) == 3
    await marketplace.wait_until(lambda: marketplace.applied == {f"price/{s}": 1 for s in skus})
    assert marketplace.violations == []

    async def recovered() -> bool:
        async with pool.acquire() as conn:
            row = await ledger.health(conn, "mkt", CLOCK.now())
        return row is not None and row.dead_letters == 0 and row.backlog_fast == 0

    await until(recovered)


@pytest.mark.parametrize("trouble", [Mode.RATE_LIMIT, Mode.TIMEOUT])
async def test_rate_limits_and_timeouts_delay_but_lose_nothing(
    pool, marketplace, run_engine, trouble
) -> None:
    skus = [f"S{i}" for i in range(10)]
    # a short timeout only where timeouts are the point (elsewhere a loaded machine could trip it)
    timeout = 0.3 if trouble is Mode.TIMEOUT else 30.0
    await add_channel(pool, "mkt", settings(marketplace.url, timeout=timeout, failure_threshold=100), skus)
    projector = Projector(CLOCK, registry_ttl=0)
    marketplace.retry_after = "0"
    marketplace.set_mode(trouble)
    run_engine()
    for sku in skus:
        await price(pool, projector, sku, 1)
    if trouble is Mode.RATE_LIMIT:
        await until(lambda: marketplace.status_counts.get(429, 0) >= 3)
        attempts = await pool.fetchval("select max(attempts) from delivery_ledger")
        assert attempts == 0  # 429 is not the changes' fault: no attempt counted
    else:
        await until(lambda: pool.fetchval("select max(attempts) >= 2 from delivery_ledger"))
    marketplace.set_mode(Mode.OK)
    await marketplace.wait_until(lambda: marketplace.applied == {f"price/{s}": 1 for s in skus})
    assert marketplace.violations == []


async def test_price_change_is_not_stuck_behind_a_bulk_stock_backlog(pool, marketplace, run_engine) -> None:
    """Lanes through projection: 800 projected stock changes queued, then one price change; the price
    change arrives while most of the stock backlog is still undelivered."""
    skus = [f"SKU-{i}" for i in range(400)]
    await add_channel(
        pool, "mkt", settings(marketplace.url, batch_size=20, rate_per_second=50, burst=1), skus
    )
    projector = Projector(CLOCK, registry_ttl=0)
    for sku in skus:
        for location in LOCATIONS:
            await stock(pool, projector, sku, location, 1, ats=5)
    run_engine()
    await marketplace.wait_until(lambda: len(marketplace.received) >= 40)  # bulk traffic is flowing
    await price(pool, projector, "SKU-7", 1)
    await marketplace.wait_until(lambda: "price/SKU-7" in marketplace.applied)
    stock_before_price = sum(1 for r in marketplace.received if r.entity_key.startswith("availability/"))
    assert stock_before_price < 400, "the price change waited behind the bulk lane"
    lanes = await pool.fetch("select distinct lane from delivery_ledger where kind = 'PRICE'")
    assert [r["lane"] for r in lanes] == [int(Lane.FAST)]


async def test_lead_time_holds_a_future_change_until_it_is_due(pool, marketplace, run_engine) -> None:
    await add_channel(pool, "mkt", settings(marketplace.url, lead_time=timedelta(hours=1)), ["A", "B"])
    projector = Projector(CLOCK, registry_ttl=0)
    run_engine()
    future = pricing_events.PriceChanged(sku="A", version=1)
    future.effective_time.FromDatetime(CLOCK.now() + timedelta(days=2))
    await project_event(pool, projector, "retail.pricing.v1.PriceChanged", future.SerializeToString(), "A", 1)
    await price(pool, projector, "B", 1)  # effective now: delivered now
    await marketplace.wait_until(lambda: "price/B" in marketplace.applied)
    due = await pool.fetchval("select due_at from delivery_ledger where entity_key = 'price/A'")
    assert due == future.effective_time.ToDatetime().replace(tzinfo=due.tzinfo) - timedelta(hours=1)
    assert "price/A" not in marketplace.applied


SNAPSHOT_ROWS = 200_000


async def queue_stock_snapshot(pool: asyncpg.Pool, channel_id: str, rows: int) -> None:
    """A full stock snapshot as projection leaves it: `rows` pending availability entities in the bulk
    lane (written with COPY: the delivery side is under test here, not projection speed)."""
    now = CLOCK.now()
    records = []
    for i in range(rows):
        key = f"availability/SKU-{i}/s1"
        change = changes_pb2.ChannelChange(channel_id=channel_id, entity_key=key, version=1, kind=2)
        change.availability.sku = f"SKU-{i}"
        change.availability.location_id = "s1"
        change.availability.available_to_sell = 5
        payload = change.SerializeToString()
        records.append((channel_id, key, "AVAILABILITY", int(Lane.BULK), 1, payload, i + 1, now, now, now))
    async with transaction(pool) as conn:
        columns = ["channel_id", "entity_key", "kind", "lane", "projected_version", "payload", "seq"]
        columns += ["projected_at", "due_at", "next_attempt_at"]
        await conn.copy_records_to_table("delivery_ledger", records=records, columns=columns)
        sql = "update channel_sequences set last_seq = $2 where channel_id = $1"
        await conn.execute(sql, channel_id, rows)


async def test_price_change_overtakes_a_200k_row_stock_snapshot(pool, marketplace, run_engine) -> None:
    """Lanes at full scale: 200,000 stock changes queued; a price change projected mid-drain is the
    next thing delivered (at most the batch already in flight goes before it)."""
    delivery = settings(marketplace.url, batch_size=100)
    await add_channel(pool, "mkt", delivery, ["SKU-7"])
    await queue_stock_snapshot(pool, "mkt", SNAPSHOT_ROWS)
    projector = Projector(CLOCK, registry_ttl=0)
    run_engine()
    await marketplace.wait_until(lambda: len(marketplace.received) >= 1000)  # the snapshot is draining
    await price(pool, projector, "SKU-7", 1)
    before = len(marketplace.received)
    await marketplace.wait_until(lambda: "price/SKU-7" in marketplace.applied)
    position = next(i for i, r in enumerate(marketplace.received) if r.entity_key == "price/SKU-7")
    assert position - before <= 2 * delivery.batch_size  # the in-flight batch, then the price change
    assert position < SNAPSHOT_ROWS / 10  # far ahead of the backlog it overtook
    assert marketplace.violations == []
