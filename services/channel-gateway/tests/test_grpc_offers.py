"""GetOffers and QuoteCart through the gateway against real pricing, inventory and promotion services
(separate processes, own databases, one nats-server): prices come from pricing, sale prices and cart
discounts from promotion, ATS from inventory, for the calling channel only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import channel_gateway_service_pb2 as gw
from retail.channel.v1 import offers_pb2
from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, stock_pb2
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, pricing_service_pb2_grpc, resolution_pb2
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail_channel_gateway.domain.money import from_money
from retail_channel_gateway.testing import FakeMarketplace
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


async def seed_campaign(dsn: str) -> None:
    """One ACTIVE campaign for web and mkt: 10% off A (written straight into promotion's tables)."""
    await migrate(dsn, [*RUNTIME_MIGRATIONS, PROMOTION_MIGRATIONS])
    pool = await create_pool(dsn, min_size=1, max_size=1)
    now = datetime.now(UTC)
    promotions = [percent_promotion_pb("p-a", "10", ["A"])]
    window = {"start": now - timedelta(days=1), "end": now + timedelta(days=30)}
    campaign = campaign_pb("C1", promotions=promotions, channels=("web", "mkt"), **window)
    try:
        async with transaction(pool) as conn:
            repo = CampaignRepository(OutboxWriter())
            await repo.create(conn, campaign, "test")
            await repo.set_state(conn, "C1", CampaignState.ACTIVE)
    finally:
        await pool.close()


async def test_offers_and_quotes_compose_pricing_promotion_and_inventory_for_the_calling_channel(
    start_service, database_url, databases, nats_server
) -> None:
    pricing_db, inventory_db, promotion_db = databases
    service_key, ops_key, approver_key, wms_key = (generate_key()[1] for _ in range(4))
    # small pools: the test's four services share one Postgres with everything else running
    common = {"NATS_URL": nats_server.url, "OTEL_SDK_DISABLED": "true", "DB_POOL_MAX": "4"}
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
    channels = []

    def stub(address, key, kind):
        channel = connect(address, credential=key, default_timeout=60, tracing=False)
        channels.append(channel)
        return kind(channel)

    ops = stub(pricing.address, ops_key, pricing_service_pb2_grpc.PricingServiceStub)
    approver = stub(pricing.address, approver_key, pricing_service_pb2_grpc.PricingServiceStub)
    wms = stub(inventory.address, wms_key, inventory_service_pb2_grpc.InventoryServiceStub)
    await seed_campaign(promotion_db)
    await register_keys(promotion_db, [(service_key, "channel-gateway", PrincipalKind.SERVICE, [])])
    promotion = await start_service("retail_promotion", {
        **common, "DATABASE_URL": promotion_db, "SERVICE_CREDENTIAL": service_key.get_secret_value(),
        "PRICING_TARGET": pricing.address, "INVENTORY_RESERVATION_TARGET": inventory.address,
    })  # fmt: skip
    gateway = await start_service("retail_channel_gateway", {
        "PROMOTION_TARGET": promotion.address,
        **common, "DATABASE_URL": database_url, "ALLOW_HTTP_WEBHOOKS": "true",
        "SERVICE_CREDENTIAL": service_key.get_secret_value(), "PRICING_TARGET": pricing.address,
        "INVENTORY_RESERVATION_TARGET": inventory.address, "FACADE_TIMEOUT_SECONDS": "10",
    })  # fmt: skip
    pool = await create_pool(database_url, min_size=1, max_size=2)
    clients = Clients(pool, gateway.address)
    try:
        # inventory: a store serving web (not app), 7 units of A and 3 of B
        store = location_pb2.Location(
            location_id="s1",
            kind=location_pb2.LOCATION_KIND_STORE,
            region_id="r1",
            time_zone="Europe/Berlin",
            channel_ids=["web"],
            active=True,
        )
        await wms.UpsertLocation(inv.UpsertLocationRequest(request_id="l", location=store))
        now = Timestamp()
        now.GetCurrentTime()
        moves = [stock_pb2.Movement(movement_id=f"m-{s}", sku=s, location_id="s1", delta=q,
                                    kind=stock_pb2.MOVEMENT_KIND_RECEIPT, occur_time=now)
                 for s, q in (("A", 7), ("B", 3))]  # fmt: skip
        await wms.RecordMovements(inv.RecordMovementsRequest(request_id="m", movements=moves))
        # pricing: A 19.99, B 5.00 on the base list, approved by a second operator
        await ops.BatchUpsertProducts(pricing_pb.BatchUpsertProductsRequest(
            request_id="p", products=[product(s) for s in SKUS]))  # fmt: skip
        await ops.CreatePriceList(
            pricing_pb.CreatePriceListRequest(request_id="pl", price_list=price_list("base"))
        )
        start = datetime.now(UTC) - timedelta(days=1)
        items = [add("base", "A", "19.99", start), add("base", "B", "5.00", start)]
        created = await ops.CreateChangeSet(pricing_pb.CreateChangeSetRequest(
            request_id="c", change_set=change_sets_pb2.ChangeSet(items=items)))  # fmt: skip
        draft = created.change_set
        submitted = await ops.SubmitChangeSet(
            pricing_pb.SubmitChangeSetRequest(
                request_id="s", change_set_id=draft.change_set_id, etag=draft.etag
            )
        )
        ready = submitted.change_set
        await approver.ApproveChangeSet(
            pricing_pb.ApproveChangeSetRequest(
                request_id="a", change_set_id=ready.change_set_id, etag=ready.etag
            )
        )

        async def truth(sku: str) -> resolution_pb2.ResolvedPrice | None:
            try:
                query = resolution_pb2.PriceQuery(
                    sku=sku, currency_code="EUR", channel_id="web", location_id="s1"
                )
                return (await ops.ResolvePrice(pricing_pb.ResolvePriceRequest(query=query))).price
            except Exception:
                return None  # pricing learns the location from inventory's events

        async def priced() -> bool:
            return all([await truth(s) is not None for s in SKUS])

        await eventually(priced, "pricing resolves at s1")

        async def promotion_knows_s1() -> bool:
            # promotion evaluates per location from its replica of inventory's locations (an unknown
            # location is INVALID_ARGUMENT there), filled by the same events a moment later
            conn = await asyncpg.connect(promotion_db)
            try:
                return bool(await conn.fetchval("select count(*) from locations where location_id = 's1'"))
            finally:
                await conn.close()

        await eventually(promotion_knows_s1, "promotion's location replica has s1")
        operator = await clients.operator()
        web_key, _ = await register(operator, webhook_channel("web", "http://127.0.0.1:1/x"), SKUS)
        app_key, _ = await register(operator, webhook_channel("app", "http://127.0.0.1:1/x"), SKUS)
        web = clients.gateway(web_key)

        response = await web.GetOffers(
            gw.GetOffersRequest(location_id="s1", skus=["B", "A"], currency_code="EUR")
        )
        offers = {o.sku: o for o in response.offers}
        assert [o.sku for o in response.offers] == ["B", "A"]  # request order
        for sku in SKUS:
            expected = await truth(sku)
            assert expected is not None
            assert offers[sku].list_price == expected.price.gross
            assert offers[sku].promotions_applied
        a_list = from_money(offers["A"].list_price)
        assert from_money(offers["A"].sale_price) == (a_list * Decimal("0.9")).quantize(Decimal("0.01"))
        assert list(offers["A"].promotion_ids) == ["p-a"]
        assert offers["B"].sale_price == offers["B"].list_price  # no promotion on B
        assert list(offers["B"].promotion_ids) == []
        assert (offers["A"].available_to_sell, offers["B"].available_to_sell) == (7, 3)
        # app is not served by s1 in inventory: its ATS there is 0 (inventory answers for the caller)
        app = clients.gateway(app_key)
        app_offers = await app.GetOffers(
            gw.GetOffersRequest(location_id="s1", skus=["A"], currency_code="EUR")
        )
        assert app_offers.offers[0].available_to_sell == 0

        cart = [offers_pb2.CartLine(sku="A", quantity=3), offers_pb2.CartLine(sku="B", quantity=2)]
        quoted = await web.QuoteCart(gw.QuoteCartRequest(location_id="s1", currency_code="EUR", lines=cart))
        quote = quoted.quote
        a, b = await truth("A"), await truth("B")
        assert a is not None
        assert b is not None
        subtotal = from_money(a.price.gross) * 3 + from_money(b.price.gross) * 2
        assert quote.promotions_applied
        assert from_money(quote.subtotal) == subtotal  # unit prices from pricing, never from the caller
        assert [list(line.promotion_ids) for line in quote.lines] == [["p-a"], []]
        assert from_money(quote.discount_total) == from_money(quote.lines[0].discount) > 0
        assert from_money(quote.total) == subtotal - from_money(quote.discount_total)

        # a price change pushed to a webhook channel carries amounts composed at delivery
        market = FakeMarketplace(b"")
        url = await market.start()
        try:
            # mkt's second store (promotion knows stores from inventory; until then s2 waits)
            second = location_pb2.Location()
            second.CopyFrom(store)
            second.location_id = "s2"
            second.channel_ids[:] = ["mkt"]
            await wms.UpsertLocation(inv.UpsertLocationRequest(request_id="l2", location=second))
            mkt = webhook_channel("mkt", url)
            mkt.currency_code = "EUR"
            _, secret = await register(operator, mkt, SKUS)
            market.secret = secret.encode()
            markdown = price_list("md", price_lists_pb2.PRICE_LIST_KIND_MARKDOWN)
            await ops.CreatePriceList(pricing_pb.CreatePriceListRequest(request_id="md", price_list=markdown))
            now = datetime.now(UTC)
            md_items = [add("md", "A", "15.00", now - timedelta(seconds=1))]
            md = await ops.CreateChangeSet(
                pricing_pb.CreateChangeSetRequest(
                    request_id="c2", change_set=change_sets_pb2.ChangeSet(items=md_items)
                )
            )
            draft = md.change_set
            submitted = await ops.SubmitChangeSet(
                pricing_pb.SubmitChangeSetRequest(
                    request_id="s2", change_set_id=draft.change_set_id, etag=draft.etag
                )
            )
            ready = submitted.change_set
            await approver.ApproveChangeSet(
                pricing_pb.ApproveChangeSetRequest(
                    request_id="a2", change_set_id=ready.change_set_id, etag=ready.etag
                )
            )
            # mkt serves s1 and s2 and gets amounts: one entity per store, each composed for its store
            keys = ("price/A/s1", "price/A/s2")
            await market.wait_until(
                lambda: all(any(r.entity_key == k for r in market.received) for k in keys)
            )
            pushed, at_s2 = (
                [r.change["price"] for r in market.received if r.entity_key == k][-1] for k in keys
            )
            assert (pushed["location_ids"], at_s2["location_ids"]) == (["s1"], ["s2"])
            assert at_s2 == {**pushed, "location_ids": ["s2"]}  # no store-specific list or promotion here
            query = resolution_pb2.PriceQuery(sku="A", currency_code="EUR", channel_id="mkt")
            resolved = (await ops.ResolvePrice(pricing_pb.ResolvePriceRequest(query=query))).price
            assert from_money(resolved.price.gross) == Decimal("15.00")
            assert pushed["list_price"] == {"currency_code": "EUR", "units": "15"}
            assert pushed["sale_price"] == {
                "currency_code": "EUR",
                "units": "13",
                "nanos": 500000000,
            }  # 10% off
            assert market.violations == []
        finally:
            await market.close()
    finally:
        for channel in channels:
            await channel.close(None)
        await clients.close()
        await pool.close()
