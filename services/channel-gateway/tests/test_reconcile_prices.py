"""ReconcileChannel compares prices too: a markdown approved while the gateway was down, its event lost,
is found as a drift between what the channel was sent (list, sale, reference price composed at
delivery) and what pricing resolves now; the repair reaches the fake marketplace. Real pricing and
gateway processes, real NATS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import nats

from retail.channel.v1 import changes_pb2
from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, pricing_service_pb2_grpc, resolution_pb2
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail_channel_gateway.domain.money import from_money
from retail_channel_gateway.testing import FakeMarketplace
from retail_channel_gateway.testing.harness import Clients, eventually, register, webhook_channel
from retail_common.auth import CredentialStore
from retail_common.auth.keys import generate_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.grpcx import connect
from retail_pricing.testing import add, price_list, product


async def _approve(ops_stub, approver, request_id: str, items) -> None:
    created = await ops_stub.CreateChangeSet(pricing_pb.CreateChangeSetRequest(
        request_id=f"c-{request_id}", change_set=change_sets_pb2.ChangeSet(items=items)))  # fmt: skip
    draft = created.change_set
    submitted = await ops_stub.SubmitChangeSet(pricing_pb.SubmitChangeSetRequest(
        request_id=f"s-{request_id}", change_set_id=draft.change_set_id, etag=draft.etag))  # fmt: skip
    ready = submitted.change_set
    await approver.ApproveChangeSet(pricing_pb.ApproveChangeSetRequest(
        request_id=f"a-{request_id}", change_set_id=ready.change_set_id, etag=ready.etag))  # fmt: skip


async def test_a_price_drift_behind_the_gateways_back_is_found_and_repaired(
    start_service, database_url, postgres_server, nats_server
) -> None:
    pricing_db = await postgres_server.create_database()
    service_key, ops_key, approver_key = (generate_key()[1] for _ in range(3))
    common = {"NATS_URL": nats_server.url, "OTEL_SDK_DISABLED": "true", "DB_POOL_MAX": "3"}
    pricing = await start_service("retail_pricing", {**common, "DATABASE_URL": pricing_db.dsn})
    pricing_pool = await create_pool(pricing_db.dsn, min_size=1, max_size=1)
    store = CredentialStore(pricing_pool)
    await store.register(service_key, "channel-gateway", PrincipalKind.SERVICE, [])
    await store.register(ops_key, "ops", PrincipalKind.OPERATOR, ["pricing.operator"])
    await store.register(approver_key, "approver", PrincipalKind.OPERATOR, ["pricing.approver"])
    env = {
        **common, "DATABASE_URL": database_url, "ALLOW_HTTP_WEBHOOKS": "true",
        "DELIVERY_POLL_SECONDS": "0.02", "SERVICE_CREDENTIAL": service_key.get_secret_value(),
        "PRICING_TARGET": pricing.address,
    }  # fmt: skip
    gateway = await start_service("retail_channel_gateway", env)
    channels = [
        connect(pricing.address, credential=k, default_timeout=60, tracing=False)
        for k in (ops_key, approver_key)
    ]
    pricer, approver = (pricing_service_pb2_grpc.PricingServiceStub(c) for c in channels)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    clients = Clients(pool, gateway.address)
    market = FakeMarketplace(b"")
    try:
        mkt = webhook_channel("mkt", await market.start())
        mkt.currency_code = "EUR"
        _, secret = await register(await clients.operator(), mkt, ["A", "B"])
        market.secret = secret.encode()
        await pricer.BatchUpsertProducts(
            pricing_pb.BatchUpsertProductsRequest(request_id="p", products=[product("A"), product("B")])
        )
        await pricer.CreatePriceList(
            pricing_pb.CreatePriceListRequest(request_id="pl", price_list=price_list("base"))
        )
        start = datetime.now(UTC) - timedelta(days=1)
        await _approve(
            pricer, approver, "1", [add("base", "A", "19.99", start), add("base", "B", "5.00", start)]
        )

        def sent(sku: str, store: str = "s1") -> Decimal | None:  # mkt serves s1 and s2: one entity each
            got = [r.change["price"] for r in market.received if r.entity_key == f"price/{sku}/{store}"]
            amount = got[-1].get("list_price") if got else None
            return (
                None if amount is None else Decimal(amount["units"]) + Decimal(amount.get("nanos", 0)) / 10**9
            )

        await market.wait_until(
            lambda: all(
                sent("A", s) == Decimal("19.99") and sent("B", s) == Decimal("5.00") for s in ("s1", "s2")
            )
        )

        async def delivered_as_sent() -> bool:  # the ledger keeps the payload as delivered
            rows = await pool.fetch(
                "select payload from delivery_ledger where channel_id = 'mkt' and kind = 'PRICE'"
            )
            return len(rows) == 4 and all(
                changes_pb2.ChannelChange.FromString(r["payload"]).price.HasField("list_price") for r in rows
            )

        await eventually(delivered_as_sent, "composed payloads kept")

        # drift: the gateway is down while A is marked down, and pricing's events are lost
        gateway.kill()
        markdown = price_list("md", price_lists_pb2.PRICE_LIST_KIND_MARKDOWN)
        await pricer.CreatePriceList(pricing_pb.CreatePriceListRequest(request_id="md", price_list=markdown))
        await _approve(
            pricer, approver, "2", [add("md", "A", "15.00", datetime.now(UTC) - timedelta(seconds=1))]
        )

        async def pricing_moved_on() -> bool:
            query = resolution_pb2.PriceQuery(sku="A", currency_code="EUR", channel_id="mkt")
            resolved = await pricer.ResolvePrice(pricing_pb.ResolvePriceRequest(query=query))
            relayed = await pricing_pool.fetchval(
                "select count(*) = 0 from outbox where published_at is null"
            )
            return bool(relayed) and from_money(resolved.price.price.gross) == Decimal("15.00")

        await eventually(pricing_moved_on, "pricing resolved and relayed the markdown")
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().purge_stream("PRICING")
        await nc.close()
        gateway = await start_service("retail_channel_gateway", env)
        clients.address = gateway.address
        operator = await clients.operator(name="bob")

        result = await operator.ReconcileChannel(
            ops.ReconcileChannelRequest(request_id="rc1", channel_id="mkt")
        )
        # A at both stores drifted (the markdown is chain-wide); B at both did not
        assert (result.checked, result.drifted, result.repushed) == (4, 2, 2)
        await market.wait_until(lambda: sent("A", "s1") == sent("A", "s2") == Decimal("15.00"))
        for store in ("s1", "s2"):
            assert [r for r in market.received if r.entity_key == f"price/A/{store}"][-1].resync
            assert sent("B", store) == Decimal("5.00")
        again = await operator.ReconcileChannel(
            ops.ReconcileChannelRequest(request_id="rc2", channel_id="mkt")
        )
        assert (again.checked, again.drifted, again.repushed) == (4, 0, 0)
        assert market.violations == []
    finally:
        await market.close()
        for channel in channels:
            await channel.close(None)
        await clients.close()
        await pool.close()
        await pricing_pool.close()
        await pricing_db.drop()
