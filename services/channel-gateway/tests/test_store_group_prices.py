"""A POS store group whose stores are priced differently (a store-scoped list at s2, a campaign at s2
only) receives each store's own list and sale price, one entity per store, at the fake marketplace.
Regression: a price change spanning both stores was composed once, for the first location, so s2 got
s1's amount. Real pricing, promotion and gateway processes, real NATS and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from retail.channel.v1 import channel_pb2
from retail.inventory.v1 import events_pb2 as inventory_events
from retail.inventory.v1 import location_pb2
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, pricing_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail_channel_gateway.testing import FakeMarketplace
from retail_channel_gateway.testing.harness import (
    Clients,
    eventually,
    publish,
    register,
    register_keys,
    webhook_channel,
)
from retail_common.auth.keys import generate_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool, migrate, transaction
from retail_common.grpcx import connect
from retail_common.messaging import OutboxWriter, event_subject
from retail_common.service import RUNTIME_MIGRATIONS
from retail_pricing.testing import add, price_list, product
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import MIGRATIONS as PROMOTION_MIGRATIONS
from retail_promotion.repository import CampaignRepository
from retail_promotion.testing import campaign_pb, percent_promotion_pb

Amounts = tuple[Decimal | None, Decimal | None]


@pytest.fixture
async def databases(postgres_server):
    dbs = [await postgres_server.create_database() for _ in range(2)]
    yield [db.dsn for db in dbs]
    for db in dbs:
        await db.drop()


async def _seed_campaign_at_s2(dsn: str) -> None:
    """An ACTIVE campaign for pos at store s2 only: 10% off A."""
    await migrate(dsn, [*RUNTIME_MIGRATIONS, PROMOTION_MIGRATIONS])
    pool = await create_pool(dsn, min_size=1, max_size=1)
    now = datetime.now(UTC)
    campaign = campaign_pb(
        "C-s2",
        promotions=[percent_promotion_pb("p-s2", "10", ["A"])],
        channels=("pos",),
        start=now - timedelta(days=1),
        end=now + timedelta(days=30),
        location_ids=["s2"],
    )
    try:
        async with transaction(pool) as conn:
            repo = CampaignRepository(OutboxWriter())
            await repo.create(conn, campaign, "test")
            await repo.set_state(conn, "C-s2", CampaignState.ACTIVE)
    finally:
        await pool.close()


def _store(location_id: str) -> tuple[str, str, str, int, bytes]:
    location = location_pb2.Location(
        location_id=location_id,
        kind=location_pb2.LOCATION_KIND_STORE,
        region_id="r1",
        time_zone="Europe/Berlin",
        channel_ids=["pos"],
        active=True,
    )
    return (
        event_subject("inventory", "location_upserted", location_id),
        "retail.inventory.v1.LocationUpserted",
        location_id,
        1,
        inventory_events.LocationUpserted(location=location).SerializeToString(),
    )


def _amount(money: dict[str, Any] | None) -> Decimal | None:
    if money is None:
        return None
    return Decimal(money.get("units", "0")) + Decimal(money.get("nanos", 0)) / 10**9


async def test_each_store_of_a_store_group_gets_its_own_list_and_sale_price(
    start_service, database_url, databases, nats_server
) -> None:
    pricing_db, promotion_db = databases
    service_key, ops_key, approver_key = (generate_key()[1] for _ in range(3))
    common = {"NATS_URL": nats_server.url, "OTEL_SDK_DISABLED": "true", "DB_POOL_MAX": "3"}
    pricing = await start_service("retail_pricing", {**common, "DATABASE_URL": pricing_db})
    await register_keys(pricing_db, [
        (service_key, "channel-gateway", PrincipalKind.SERVICE, []),
        (ops_key, "ops", PrincipalKind.OPERATOR, ["pricing.operator"]),
        (approver_key, "approver", PrincipalKind.OPERATOR, ["pricing.approver"]),
    ])  # fmt: skip
    await _seed_campaign_at_s2(promotion_db)
    await register_keys(promotion_db, [(service_key, "channel-gateway", PrincipalKind.SERVICE, [])])
    promotion = await start_service("retail_promotion", {
        **common, "DATABASE_URL": promotion_db, "SERVICE_CREDENTIAL": service_key.get_secret_value(),
        # sale prices of single units need pricing only; inventory serves guardrails, unused here
        "PRICING_TARGET": pricing.address, "INVENTORY_RESERVATION_TARGET": "127.0.0.1:1",
    })  # fmt: skip
    gateway = await start_service("retail_channel_gateway", {
        **common, "DATABASE_URL": database_url, "ALLOW_HTTP_WEBHOOKS": "true",
        "DELIVERY_POLL_SECONDS": "0.02", "SERVICE_CREDENTIAL": service_key.get_secret_value(),
        "PRICING_TARGET": pricing.address, "PROMOTION_TARGET": promotion.address,
    })  # fmt: skip
    grpc_channels = [
        connect(pricing.address, credential=k, default_timeout=60, tracing=False)
        for k in (ops_key, approver_key)
    ]
    pricer, approver = (pricing_service_pb2_grpc.PricingServiceStub(c) for c in grpc_channels)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    clients = Clients(pool, gateway.address)
    market = FakeMarketplace(b"")
    kiosk_market = FakeMarketplace(b"")  # a one-store channel at s2
    approvals = 0

    async def approve(*items: change_sets_pb2.ChangeSetItem) -> None:
        nonlocal approvals
        approvals += 1
        n = approvals
        created = await pricer.CreateChangeSet(pricing_pb.CreateChangeSetRequest(
            request_id=f"c{n}", change_set=change_sets_pb2.ChangeSet(items=items)))  # fmt: skip
        draft = created.change_set
        submitted = await pricer.SubmitChangeSet(pricing_pb.SubmitChangeSetRequest(
            request_id=f"s{n}", change_set_id=draft.change_set_id, etag=draft.etag))  # fmt: skip
        ready = submitted.change_set
        await approver.ApproveChangeSet(pricing_pb.ApproveChangeSetRequest(
            request_id=f"a{n}", change_set_id=ready.change_set_id, etag=ready.etag))  # fmt: skip

    def latest(store: str) -> Amounts:
        got = [r.change["price"] for r in market.received if r.entity_key == f"price/A/{store}"]
        if not got:
            return None, None
        return _amount(got[-1].get("list_price")), _amount(got[-1].get("sale_price"))

    async def projected_version(store: str) -> int:
        sql = "select projected_version from delivery_ledger where channel_id = 'pos' and entity_key = $1"
        return int(await pool.fetchval(sql, f"price/A/{store}") or 0)

    try:
        pos = webhook_channel("pos", await market.start())
        pos.kind = channel_pb2.CHANNEL_KIND_POS_STORE_GROUP
        pos.currency_code = "EUR"
        operator = await clients.operator()
        _, secret = await register(operator, pos, ["A"])
        market.secret = secret.encode()
        kiosk = webhook_channel("kiosk", await kiosk_market.start())
        kiosk.kind = channel_pb2.CHANNEL_KIND_ECOMMERCE
        kiosk.currency_code = "EUR"
        kiosk.location_ids[:] = ["s2"]
        _, secret = await register(operator, kiosk, ["A"])
        kiosk_market.secret = secret.encode()
        await pricer.BatchUpsertProducts(
            pricing_pb.BatchUpsertProductsRequest(request_id="p", products=[product("A")])
        )
        # s2's own lists outrank the chain-wide ones (a store list 300 > markdown 200 > base 100)
        lists = [
            ("base", price_list("base")),
            ("s2-list", price_list("s2-list", locations=("s2",))),
            ("md", price_list("md", price_lists_pb2.PRICE_LIST_KIND_MARKDOWN)),
            ("s2-md", price_list("s2-md", price_lists_pb2.PRICE_LIST_KIND_MARKDOWN, locations=("s2",))),
        ]
        lists[1][1].priority, lists[3][1].priority = 300, 400
        for list_id, pl in lists:
            await pricer.CreatePriceList(pricing_pb.CreatePriceListRequest(request_id=list_id, price_list=pl))
        # the stores, as inventory announces them (promotion resolves a location's region and zone)
        await publish(nats_server.url, [_store(loc) for loc in ("s1", "s2")])
        start = datetime.now(UTC) - timedelta(days=1)

        # one change spanning both stores: the base list and s2's own list in one change set
        await approve(add("base", "A", "20.00", start), add("s2-list", "A", "18.00", start))
        await market.wait_until(lambda: any(r.kind == "CHANGE_KIND_PRICE" for r in market.received))
        for received in market.received:  # before: one "price/A" for both stores, composed for one of them
            if received.kind == "CHANGE_KIND_PRICE":
                assert received.entity_key in ("price/A/s1", "price/A/s2"), received
        await market.wait_until(lambda: latest("s1") != (None, None) and latest("s2") != (None, None))
        assert latest("s1") == (Decimal("20.00"), Decimal("20.00"))
        assert latest("s2") == (Decimal("18.00"), Decimal("16.20"))  # its own list, 10% off at s2 only

        # a one-store channel keeps one entity per SKU, composed for its store (not chain-wide: 20.00)
        def kiosk_latest() -> dict[str, Any] | None:
            got = [r.change["price"] for r in kiosk_market.received if r.entity_key == "price/A"]
            return got[-1] if got else None  # type: ignore[return-value]

        await kiosk_market.wait_until(lambda: kiosk_latest() is not None)
        kiosk_price = kiosk_latest()
        assert kiosk_price is not None
        assert _amount(kiosk_price.get("list_price")) == Decimal("18.00")
        assert kiosk_price.get("location_ids", []) == []  # the channel's one store

        # a chain-wide markdown: s1 moves, s2 keeps its own list (at the SKU's newer version)
        await approve(add("md", "A", "22.00", start))
        await market.wait_until(lambda: latest("s1") == (Decimal("22.00"), Decimal("22.00")))
        await eventually(
            lambda: _delivered_at_projected(pool), "both stores delivered at their projected version"
        )
        assert latest("s2") == (Decimal("18.00"), Decimal("16.20"))  # never s1's 22.00
        s1_version = await projected_version("s1")

        # a change at s2 only: s2's entity alone is projected and pushed
        await approve(add("s2-md", "A", "17.00", start))
        await market.wait_until(lambda: latest("s2") == (Decimal("17.00"), Decimal("15.30")))
        assert await projected_version("s1") == s1_version
        assert await projected_version("s2") > s1_version

        for received in market.received:
            if received.kind == "CHANGE_KIND_PRICE":
                store = received.entity_key.removeprefix("price/A/")
                assert received.change["price"]["location_ids"] == [store]  # presented for one store
        assert {r.entity_key for r in market.received if r.kind == "CHANGE_KIND_PRICE"} == {
            "price/A/s1",
            "price/A/s2",
        }
        assert [r for r in market.received if r.entity_key == "price/A/s2" and _amount(
            r.change["price"].get("list_price")) in (Decimal("20.00"), Decimal("22.00"))] == []  # fmt: skip
        assert market.violations == []
        assert kiosk_market.violations == []
    finally:
        await market.close()
        await kiosk_market.close()
        for channel in grpc_channels:
            await channel.close(None)
        await clients.close()
        await pool.close()


async def _delivered_at_projected(pool) -> bool:
    rows = await pool.fetch(
        "select delivered_version = projected_version as done from delivery_ledger"
        " where channel_id = 'pos' and kind = 'PRICE'"
    )
    return len(rows) == 2 and all(r["done"] for r in rows)
