"""GetOffers served from the gateway's per-replica cache stays correct through invalidation: a price
change, a stock change and a promotion suspension each reach GetOffers through the domain events
(real pricing, inventory, promotion and gateway processes, one real nats-server). The TTL is an hour,
so only the events can explain a fresh answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import channel_gateway_service_pb2 as gw
from retail.channel.v1 import offers_pb2
from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, stock_pb2
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, pricing_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail.promotion.v1 import promotion_service_pb2 as promotion_pb
from retail.promotion.v1 import promotion_service_pb2_grpc
from retail_channel_gateway.domain.money import from_money
from retail_channel_gateway.testing.harness import (
    Clients,
    eventually,
    register,
    register_keys,
    webhook_channel,
)
from retail_common.auth.keys import generate_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool, migrate, transaction
from retail_common.grpcx import connect
from retail_common.messaging import OutboxWriter
from retail_common.service import RUNTIME_MIGRATIONS
from retail_pricing.testing import add, price_list, product
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import MIGRATIONS as PROMOTION_MIGRATIONS
from retail_promotion.repository import CampaignRepository
from retail_promotion.testing import campaign_pb, percent_promotion_pb

SKUS = ["A", "B"]


@pytest.fixture
async def databases(postgres_server):
    dbs = [await postgres_server.create_database() for _ in range(3)]
    yield [db.dsn for db in dbs]
    for db in dbs:
        await db.drop()


async def _seed_campaign(dsn: str) -> None:
    """An ACTIVE campaign for web: 10% off A."""
    await migrate(dsn, [*RUNTIME_MIGRATIONS, PROMOTION_MIGRATIONS])
    pool = await create_pool(dsn, min_size=1, max_size=1)
    now = datetime.now(UTC)
    promotions = [percent_promotion_pb("p-a", "10", ["A"])]
    window = {"start": now - timedelta(days=1), "end": now + timedelta(days=30)}
    try:
        async with transaction(pool) as conn:
            repo = CampaignRepository(OutboxWriter())
            await repo.create(
                conn, campaign_pb("C1", promotions=promotions, channels=("web",), **window), "t"
            )
            await repo.set_state(conn, "C1", CampaignState.ACTIVE)
    finally:
        await pool.close()


async def _approve(ops, approver, request_id: str, items) -> None:
    created = await ops.CreateChangeSet(
        pricing_pb.CreateChangeSetRequest(
            request_id=f"c-{request_id}", change_set=change_sets_pb2.ChangeSet(items=items)
        )
    )
    draft = created.change_set
    submitted = await ops.SubmitChangeSet(
        pricing_pb.SubmitChangeSetRequest(
            request_id=f"s-{request_id}", change_set_id=draft.change_set_id, etag=draft.etag
        )
    )
    ready = submitted.change_set
    await approver.ApproveChangeSet(
        pricing_pb.ApproveChangeSetRequest(
            request_id=f"a-{request_id}", change_set_id=ready.change_set_id, etag=ready.etag
        )
    )


def _movement(movement_id: str, sku: str, delta: int) -> stock_pb2.Movement:
    now = Timestamp()
    now.GetCurrentTime()
    return stock_pb2.Movement(
        movement_id=movement_id,
        sku=sku,
        location_id="s1",
        delta=delta,
        kind=stock_pb2.MOVEMENT_KIND_RECEIPT,
        occur_time=now,
    )


async def test_price_stock_and_promotion_changes_reach_cached_offers_through_invalidation(
    start_service, database_url, databases, nats_server
) -> None:
    pricing_db, inventory_db, promotion_db = databases
    service_key, ops_key, approver_key, wms_key, promo_key = (generate_key()[1] for _ in range(5))
    common = {"NATS_URL": nats_server.url, "OTEL_SDK_DISABLED": "true", "DB_POOL_MAX": "3"}
    inventory = await start_service("retail_inventory", {**common, "DATABASE_URL": inventory_db})
    pricing = await start_service("retail_pricing", {**common, "DATABASE_URL": pricing_db})
    await register_keys(pricing_db, [
        (service_key, "channel-gateway", PrincipalKind.SERVICE, []),
        (ops_key, "ops", PrincipalKind.OPERATOR, ["pricing.operator"]),
        (approver_key, "approver", PrincipalKind.OPERATOR, ["pricing.approver"]),
    ])  # fmt: skip
    await register_keys(inventory_db, [
        (service_key, "channel-gateway", PrincipalKind.SERVICE, []),
        (wms_key, "wms", PrincipalKind.OPERATOR, ["inventory.operator"]),
    ])  # fmt: skip
    await _seed_campaign(promotion_db)
    await register_keys(promotion_db, [
        (service_key, "channel-gateway", PrincipalKind.SERVICE, []),
        (promo_key, "merch", PrincipalKind.OPERATOR, ["promotion.operator"]),
    ])  # fmt: skip
    promotion = await start_service("retail_promotion", {
        **common, "DATABASE_URL": promotion_db, "SERVICE_CREDENTIAL": service_key.get_secret_value(),
        "PRICING_TARGET": pricing.address, "INVENTORY_RESERVATION_TARGET": inventory.address,
    })  # fmt: skip
    gateway = await start_service("retail_channel_gateway", {
        **common, "DATABASE_URL": database_url, "ALLOW_HTTP_WEBHOOKS": "true",
        "SERVICE_CREDENTIAL": service_key.get_secret_value(), "PRICING_TARGET": pricing.address,
        "INVENTORY_RESERVATION_TARGET": inventory.address, "PROMOTION_TARGET": promotion.address,
        "FACADE_TIMEOUT_SECONDS": "10", "OFFER_CACHE_TTL_SECONDS": "3600",
    })  # fmt: skip
    channels = []

    def stub(address, key, kind):
        channel = connect(address, credential=key, default_timeout=60, tracing=False)
        channels.append(channel)
        return kind(channel)

    ops = stub(pricing.address, ops_key, pricing_service_pb2_grpc.PricingServiceStub)
    approver = stub(pricing.address, approver_key, pricing_service_pb2_grpc.PricingServiceStub)
    wms = stub(inventory.address, wms_key, inventory_service_pb2_grpc.InventoryServiceStub)
    merch = stub(promotion.address, promo_key, promotion_service_pb2_grpc.PromotionServiceStub)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    inventory_pool = await create_pool(inventory_db, min_size=1, max_size=1)
    clients = Clients(pool, gateway.address)
    try:
        store = location_pb2.Location(
            location_id="s1",
            kind=location_pb2.LOCATION_KIND_STORE,
            region_id="r1",
            time_zone="Europe/Berlin",
            channel_ids=["web"],
            active=True,
        )
        await wms.UpsertLocation(inv.UpsertLocationRequest(request_id="l", location=store))
        moves = [_movement("m-A", "A", 7), _movement("m-B", "B", 3)]
        await wms.RecordMovements(inv.RecordMovementsRequest(request_id="m", movements=moves))
        await ops.BatchUpsertProducts(
            pricing_pb.BatchUpsertProductsRequest(request_id="p", products=[product(s) for s in SKUS])
        )
        await ops.CreatePriceList(
            pricing_pb.CreatePriceListRequest(request_id="pl", price_list=price_list("base"))
        )
        start = datetime.now(UTC) - timedelta(days=1)
        await _approve(
            ops, approver, "1", [add("base", "A", "19.99", start), add("base", "B", "5.00", start)]
        )
        operator = await clients.operator()
        web_key, _ = await register(operator, webhook_channel("web", "http://127.0.0.1:1/x"), SKUS)
        web = clients.gateway(web_key)

        async def offer(sku: str) -> offers_pb2.Offer | None:
            try:
                response = await web.GetOffers(
                    gw.GetOffersRequest(location_id="s1", skus=[sku], currency_code="EUR")
                )
            except Exception:
                return None  # pricing / promotion still learning the location from inventory's events
            return response.offers[0]

        async def ready() -> bool:
            got = await offer("A")
            return got is not None and got.HasField("list_price") and got.available_to_sell == 7

        await eventually(ready, "A offered at s1", within=120)

        # Prove offers come from the cache: stock changed in inventory's tables behind its back (no
        # event) is not seen, once the cache is live (its subscriptions start with the process).
        drift = 0

        async def served_from_cache() -> bool:
            nonlocal drift
            before = await offer("A")
            async with inventory_pool.acquire() as conn:
                await conn.execute(
                    "update stock set on_hand = on_hand + 1 where sku = 'A' and location_id = 's1'"
                )
            drift += 1
            after = await offer("A")
            return (
                before is not None
                and after is not None
                and before.available_to_sell == after.available_to_sell
            )

        await eventually(served_from_cache, "offers served from the cache")
        cached = await offer("A")
        assert cached is not None
        assert cached.available_to_sell < 7 + drift  # stale on purpose: nothing announced the drift
        assert from_money(cached.list_price) == Decimal("19.99")
        assert from_money(cached.sale_price) == Decimal("17.99")
        assert list(cached.promotion_ids) == ["p-a"]

        # stock: a movement through inventory announces the position; ATS is inventory's truth again
        await wms.RecordMovements(
            inv.RecordMovementsRequest(request_id="m2", movements=[_movement("m-A2", "A", 5)])
        )

        async def stock_seen() -> bool:
            got = await offer("A")
            return got is not None and got.available_to_sell == 7 + drift + 5

        await eventually(stock_seen, "the stock change in GetOffers")

        # price: a markdown approved for A; the sale price follows (10% off the new list price)
        markdown = price_list("md", price_lists_pb2.PRICE_LIST_KIND_MARKDOWN)
        await ops.CreatePriceList(pricing_pb.CreatePriceListRequest(request_id="md", price_list=markdown))
        await _approve(
            ops, approver, "2", [add("md", "A", "15.00", datetime.now(UTC) - timedelta(seconds=1))]
        )

        async def price_seen() -> bool:
            # list and sale prices are separate cache components: the sale price follows once
            # promotion's own price cache has the markdown (the gateway drops it again 2 s later)
            got = await offer("A")
            return (
                got is not None
                and from_money(got.list_price) == Decimal("15.00")
                and from_money(got.sale_price) == Decimal("13.50")
            )

        await eventually(price_seen, "the price change in GetOffers")
        repriced = await offer("A")
        assert repriced is not None
        assert from_money(repriced.sale_price) == Decimal("13.50")

        # promotion: suspended for web/A at promotion; the sale price falls back to the list price
        await merch.SuspendCampaign(promotion_pb.SuspendCampaignRequest(
            request_id="susp", campaign_id="C1", channel_id="web", sku="A", detail="test"))  # fmt: skip

        async def suspension_seen() -> bool:
            got = await offer("A")
            return got is not None and not got.promotion_ids and got.sale_price == got.list_price

        await eventually(suspension_seen, "the suspension in GetOffers")
        b = await offer("B")  # untouched components still answer correctly
        assert b is not None
        assert (from_money(b.list_price), b.available_to_sell) == (Decimal("5.00"), 3)
    finally:
        for channel in channels:
            await channel.close(None)
        await clients.close()
        await inventory_pool.close()
        await pool.close()
