"""The promotion service over real gRPC as separate processes, with the real pricing and inventory
services as processes (own databases, one nats-server): evaluation with prices from pricing, budgets
under 64 concurrent redemptions from two promotion processes, validation findings, lifecycle, bad input.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
import nats
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import SecretStr

from retail.channel.v1 import events_pb2 as channel_events
from retail.common.v1 import principal_pb2
from retail.inventory.v1 import inventory_service_pb2 as inv_pb
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, stock_pb2
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, pricing_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail.promotion.v1 import campaign_pb2, deployment_pb2, evaluation_pb2, promotion_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2 as pb
from retail_common.auth import AUTH_MIGRATIONS, CredentialStore
from retail_common.auth.keys import generate_key
from retail_common.context import PrincipalKind
from retail_common.db import AUDIT_MIGRATIONS, create_pool, migrate
from retail_common.errors import parse_error
from retail_common.grpcx import connect
from retail_common.messaging import Envelope, event_name, event_subject, new_event_id
from retail_common.testing.postgres import PostgresServer
from retail_pricing.testing import add, price_list, product
from retail_promotion.convert import money_from_proto
from retail_promotion.testing import campaign_pb, money_pb, percent_promotion_pb

NOW = datetime.now(UTC).replace(microsecond=0)
PROMOTION_ROLES = ["promotion.operator", "promotion.approver"]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    """Poll until check() holds (a generous bound, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.1)


async def _register(dsn: str, entries: list[tuple[SecretStr, str, PrincipalKind, list[str]]]) -> None:
    await migrate(dsn, [AUDIT_MIGRATIONS, AUTH_MIGRATIONS])
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        store = CredentialStore(pool)
        for key, principal, kind, roles in entries:
            await store.register(key, principal, kind, roles)
    finally:
        await pool.close()


def _key() -> SecretStr:
    return generate_key()[1]


@dataclass
class Suite:
    promotion_dsn: str
    env: dict[str, str]
    keys: dict[str, SecretStr]
    start: Any
    pricing: Any = None
    inventory: Any = None
    promotions: list[Any] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def stub(self, address: str, who: str, stub_type: Any) -> Any:
        channel = connect(address, credential=self.keys[who], default_timeout=60.0, tracing=False)
        self.channels.append(channel)
        return stub_type(channel)

    def pricing_as(self, who: str) -> pricing_service_pb2_grpc.PricingServiceStub:
        return self.stub(self.pricing.address, who, pricing_service_pb2_grpc.PricingServiceStub)

    def inventory_as(self, who: str) -> inventory_service_pb2_grpc.InventoryServiceStub:
        return self.stub(self.inventory.address, who, inventory_service_pb2_grpc.InventoryServiceStub)

    def promotion_as(self, who: str, replica: int = 0) -> promotion_service_pb2_grpc.PromotionServiceStub:
        return self.stub(
            self.promotions[replica].address, who, promotion_service_pb2_grpc.PromotionServiceStub
        )

    async def start_promotion(self) -> None:
        env = {
            **self.env,
            "DATABASE_URL": self.promotion_dsn,
            "SERVICE_CREDENTIAL": self.keys["promotion"].get_secret_value(),
            "PRICING_TARGET": self.pricing.address,
            "INVENTORY_RESERVATION_TARGET": self.inventory.address,
            "DB_POOL_MAX": "8",
        }
        self.promotions.append(await self.start("retail_promotion", env))


@pytest_asyncio.fixture
async def suite(
    postgres_server: PostgresServer, database_url: str, nats_server: Any, start_service: Any
) -> AsyncIterator[Suite]:
    pricing_db = await postgres_server.create_database()
    inventory_db = await postgres_server.create_database()
    keys = {name: _key() for name in ("promotion", "alice", "bob", "web", "app", "ops")}
    try:
        await _register(
            pricing_db.dsn,
            [
                (keys["promotion"], "promotion", PrincipalKind.SERVICE, []),
                (keys["alice"], "alice", PrincipalKind.OPERATOR, ["pricing.operator", "pricing.approver"]),
                (keys["bob"], "bob", PrincipalKind.OPERATOR, ["pricing.operator", "pricing.approver"]),
            ],
        )
        await _register(
            inventory_db.dsn,
            [
                (keys["promotion"], "promotion", PrincipalKind.SERVICE, []),
                (keys["ops"], "ops", PrincipalKind.OPERATOR, ["inventory.operator"]),
            ],
        )
        await _register(
            database_url,
            [
                (keys["alice"], "alice", PrincipalKind.OPERATOR, PROMOTION_ROLES),
                (keys["bob"], "bob", PrincipalKind.OPERATOR, PROMOTION_ROLES),
                (keys["web"], "web", PrincipalKind.CHANNEL, []),
                (keys["app"], "app", PrincipalKind.CHANNEL, []),
            ],
        )
        env = {"NATS_URL": nats_server.url, "DB_POOL_MAX": "5"}
        s = Suite(database_url, env, keys, start_service)
        s.pricing = await start_service("retail_pricing", {**env, "DATABASE_URL": pricing_db.dsn})
        s.inventory = await start_service("retail_inventory", {**env, "DATABASE_URL": inventory_db.dsn})
        await s.start_promotion()
        yield s
        for channel in s.channels:
            await channel.close()
    finally:
        await pricing_db.drop()
        await inventory_db.drop()


async def seed_prices(s: Suite) -> None:
    """A, B, D active (D has no price), C inactive; A 10.00 and B 20.00 everywhere (tax included)."""
    alice, bob = s.pricing_as("alice"), s.pricing_as("bob")
    products = [product("A"), product("B"), product("D"), product("C", active=False)]
    await alice.BatchUpsertProducts(pricing_pb.BatchUpsertProductsRequest(request_id="p", products=products))
    await alice.CreatePriceList(
        pricing_pb.CreatePriceListRequest(request_id="l", price_list=price_list("base"))
    )
    items = [
        add("base", "A", "10.00", NOW - timedelta(days=1)),
        add("base", "B", "20.00", NOW - timedelta(days=1)),
    ]
    created = await alice.CreateChangeSet(
        pricing_pb.CreateChangeSetRequest(request_id="c", change_set=change_sets_pb2.ChangeSet(items=items))
    )
    submitted = await alice.SubmitChangeSet(
        pricing_pb.SubmitChangeSetRequest(
            request_id="s", change_set_id=created.change_set.change_set_id, etag=created.change_set.etag
        )
    )
    await bob.ApproveChangeSet(
        pricing_pb.ApproveChangeSetRequest(
            request_id="a", change_set_id=submitted.change_set.change_set_id, etag=submitted.change_set.etag
        )
    )


async def launch(s: Suite, campaign: campaign_pb2.Campaign) -> campaign_pb2.Campaign:
    """Create (alice), submit, approve (bob), launch; the scheduler then activates it."""
    alice, bob = s.promotion_as("alice"), s.promotion_as("bob")
    c = (
        await alice.CreateCampaign(
            pb.CreateCampaignRequest(request_id=f"{campaign.campaign_id}-c", campaign=campaign)
        )
    ).campaign
    c = (
        await alice.SubmitCampaign(
            pb.SubmitCampaignRequest(request_id=f"{c.campaign_id}-s", campaign_id=c.campaign_id, etag=c.etag)
        )
    ).campaign
    c = (
        await bob.ApproveCampaign(
            pb.ApproveCampaignRequest(request_id=f"{c.campaign_id}-a", campaign_id=c.campaign_id, etag=c.etag)
        )
    ).campaign
    c = (
        await alice.LaunchCampaign(
            pb.LaunchCampaignRequest(request_id=f"{c.campaign_id}-l", campaign_id=c.campaign_id, etag=c.etag)
        )
    ).campaign

    async def active() -> bool:
        got = await alice.GetCampaign(pb.GetCampaignRequest(campaign_id=c.campaign_id))
        return got.campaign.state == campaign_pb2.CAMPAIGN_STATE_ACTIVE

    await eventually(active, "the scheduler activates the campaign")
    return c


def window_now() -> dict[str, datetime]:
    return {"start": NOW - timedelta(hours=1), "end": NOW + timedelta(days=30)}


def cart(*lines: tuple[str, int], codes: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "scope": evaluation_pb2.CartScope(channel_id="web"),
        "currency_code": "EUR",
        "lines": [evaluation_pb2.CartLine(sku=s, quantity=q) for s, q in lines],
        "codes": list(codes),
    }


def amount(m: Any) -> Decimal:
    return money_from_proto(m)


async def test_evaluate_cart_takes_prices_from_pricing(suite: Suite) -> None:
    await seed_prices(suite)
    campaign = campaign_pb(
        promotions=[
            percent_promotion_pb("P10", "10", ["A"]),
            percent_promotion_pb("X25", "25", ["B"], exclusive=True),
            percent_promotion_pb("S5", "5", ["B"]),
        ],
        **window_now(),
    )
    await launch(suite, campaign)
    web = suite.promotion_as("web")
    response = await web.EvaluateCart(pb.EvaluateCartRequest(**cart(("A", 3), ("B", 1))))
    assert [amount(line.unit_price) for line in response.lines] == [Decimal("10.00"), Decimal("20.00")]
    assert [amount(line.final_amount) for line in response.lines] == [Decimal("27.00"), Decimal("15.00")]
    assert amount(response.totals.total) == Decimal("42.00")
    outcomes = {c.promotion_id: c.outcome for c in response.candidates}
    assert outcomes == {
        "P10": evaluation_pb2.CANDIDATE_OUTCOME_APPLIED,
        "S5": evaluation_pb2.CANDIDATE_OUTCOME_STACKING,
        "X25": evaluation_pb2.CANDIDATE_OUTCOME_APPLIED,
    }
    # a price change approved at pricing reaches evaluation (the replica's price cache is invalidated)
    alice, bob = suite.pricing_as("alice"), suite.pricing_as("bob")
    markdown = price_list("mark", price_lists_pb2.PRICE_LIST_KIND_MARKDOWN)
    await alice.CreatePriceList(pricing_pb.CreatePriceListRequest(request_id="l2", price_list=markdown))
    created = await alice.CreateChangeSet(
        pricing_pb.CreateChangeSetRequest(
            request_id="c2", change_set=change_sets_pb2.ChangeSet(items=[add("mark", "A", "12.00", NOW)])
        )
    )
    submitted = await alice.SubmitChangeSet(
        pricing_pb.SubmitChangeSetRequest(
            request_id="s2", change_set_id=created.change_set.change_set_id, etag=created.change_set.etag
        )
    )
    await bob.ApproveChangeSet(
        pricing_pb.ApproveChangeSetRequest(
            request_id="a2", change_set_id=submitted.change_set.change_set_id, etag=submitted.change_set.etag
        )
    )

    async def repriced() -> bool:
        again = await web.EvaluateCart(pb.EvaluateCartRequest(**cart(("A", 3), ("B", 1))))
        return amount(again.lines[0].unit_price) == Decimal("12.00")

    await eventually(repriced, "the new price of A is used")

    async def replicated() -> bool:
        conn = await asyncpg.connect(suite.promotion_dsn)
        try:
            rows = await conn.fetch("select sku, active from products order by sku")
        finally:
            await conn.close()
        return [(r["sku"], r["active"]) for r in rows] == [
            ("A", True),
            ("B", True),
            ("C", False),
            ("D", True),
        ]

    await eventually(replicated, "ProductUpserted fills the product replica")
    # a channel may only evaluate for itself
    other = cart(("A", 1))
    other["scope"] = evaluation_pb2.CartScope(channel_id="app")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await web.EvaluateCart(pb.EvaluateCartRequest(**other))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_budgets_and_usage_limits_hold_under_64_concurrent_redemptions_from_two_processes(
    suite: Suite,
) -> None:
    await seed_prices(suite)
    budgeted = percent_promotion_pb("BUDGET", "25", ["A"])
    budgeted.limits.budget.CopyFrom(money_pb("50.00"))  # 2.50 per order: exactly 20 orders
    limited = percent_promotion_pb("LIMIT", "10", ["B"])
    limited.limits.max_redemptions = 7
    await launch(suite, campaign_pb(promotions=[budgeted, limited], **window_now()))
    await suite.start_promotion()  # a second replica on the same database
    stubs = [suite.promotion_as("web", 0), suite.promotion_as("web", 1)]

    async def redeem(n: int) -> pb.RedeemPromotionsResponse:
        request = pb.RedeemPromotionsRequest(order_id=f"order-{n % 64}", **cart(("A", 1), ("B", 1)))
        for attempt in range(10):
            try:
                return await stubs[n % 2].RedeemPromotions(request)
            except grpc.aio.AioRpcError as error:
                # UNAVAILABLE is retryable with the same idempotency key (the order id); the shared test
                # Postgres may briefly run out of connections when other suites run beside this one.
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == 9:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    # 64 distinct orders plus 8 duplicates of the first 8, all at once, spread over both processes
    responses = await asyncio.gather(*(redeem(n) for n in range(72)))
    by_order: dict[str, set[tuple[tuple[str, Decimal], ...]]] = {}
    for r in responses:
        items = tuple(sorted((p.promotion_id, amount(p.discount)) for p in r.redemption.promotions))
        by_order.setdefault(r.redemption.order_id, set()).add(items)
    assert len(by_order) == 64
    assert all(len(v) == 1 for v in by_order.values())  # a duplicate returns the first redemption
    granted = [items for v in by_order.values() for items in v]
    budget_orders = [i for i in granted if ("BUDGET", Decimal("2.50")) in i]
    limit_orders = [i for i in granted if ("LIMIT", Decimal("2.00")) in i]
    assert len(budget_orders) == 20
    assert len(limit_orders) == 7
    pool = await asyncpg.connect(suite.promotion_dsn)
    try:
        rows = {r["promotion_id"]: r for r in await pool.fetch("select * from promotions")}
        assert (rows["BUDGET"]["budget_used"], rows["BUDGET"]["redemptions_used"]) == (Decimal("50.00"), 20)
        assert rows["LIMIT"]["redemptions_used"] == 7
        # cancel gives back exactly what was taken, once
        alice = suite.promotion_as("web", 1)
        cancelled = [o for o, v in by_order.items() if ("BUDGET", Decimal("2.50")) in next(iter(v))][:3]
        for order in cancelled + cancelled:
            await alice.CancelRedemption(pb.CancelRedemptionRequest(order_id=order))
        row = await pool.fetchrow(
            "select budget_used, redemptions_used from promotions where promotion_id = 'BUDGET'"
        )
        assert (row["budget_used"], row["redemptions_used"]) == (Decimal("42.50"), 17)
    finally:
        await pool.close()


async def invalid(call: Awaitable[object]) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = parse_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    return details.fields


async def test_bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(suite: Suite) -> None:
    alice = suite.promotion_as("alice")
    bad_percent = percent_promotion_pb("P1", "150", ["A"])
    cases = [
        (campaign_pb("C1", promotions=[bad_percent]), ["campaign.promotions[0].reward.percent_off"]),
        (
            campaign_pb("C1", promotions=[percent_promotion_pb("P1", "10", ["A"])], channels=()),
            ["campaign.channel_ids"],
        ),
        (campaign_pb("C 1", promotions=[percent_promotion_pb("P1", "10", ["A"])]), ["campaign.campaign_id"]),
        (
            campaign_pb(
                "C1", promotions=[percent_promotion_pb("P1", "10", ["A"])], end=NOW - timedelta(days=900)
            ),
            ["campaign.window.absolute.end_time"],
        ),
        (campaign_pb("C1", promotions=[]), ["campaign.promotions"]),
    ]
    for i, (campaign, fields) in enumerate(cases):
        request = pb.CreateCampaignRequest(request_id=f"bad-{i}", campaign=campaign)
        assert await invalid(alice.CreateCampaign(request)) == fields
    web = suite.promotion_as("web")
    assert await invalid(web.EvaluateCart(pb.EvaluateCartRequest(**cart(("A", 0))))) == ["lines[0].quantity"]
    assert await invalid(web.RedeemPromotions(pb.RedeemPromotionsRequest(order_id="", **cart(("A", 1))))) == [
        "order_id"
    ]
    conn = await asyncpg.connect(suite.promotion_dsn)
    try:
        assert await conn.fetchval("select count(*) from campaigns") == 0
        assert await conn.fetchval("select count(*) from outbox") == 0
    finally:
        await conn.close()


async def seed_stock(s: Suite, stock: dict[tuple[str, str], int]) -> None:
    """Locations L1 (de-south) and L2 (de-north) selling on web, and on-hand per (sku, location)."""
    ops = s.inventory_as("ops")
    for loc, region in (("L1", "de-south"), ("L2", "de-north")):
        location = location_pb2.Location(
            location_id=loc,
            kind=location_pb2.LOCATION_KIND_STORE,
            region_id=region,
            time_zone="Europe/Berlin",
            channel_ids=["web"],
            active=True,
        )
        await ops.UpsertLocation(inv_pb.UpsertLocationRequest(request_id=f"loc-{loc}", location=location))
    await move(s, "seed", stock)


async def move(s: Suite, request_id: str, deltas: dict[tuple[str, str], int]) -> None:
    movements = [
        stock_pb2.Movement(
            movement_id=f"{request_id}-{sku}-{loc}",
            sku=sku,
            location_id=loc,
            delta=delta,
            kind=stock_pb2.MOVEMENT_KIND_ADJUSTMENT,
            occur_time=Timestamp(seconds=int(time.time())),
        )
        for (sku, loc), delta in deltas.items()
    ]
    await s.inventory_as("ops").RecordMovements(
        inv_pb.RecordMovementsRequest(request_id=request_id, movements=movements)
    )


async def test_validation_finds_each_seeded_problem_and_submit_refuses(suite: Suite) -> None:
    await seed_prices(suite)
    await seed_stock(suite, {("A", "L1"): 2, ("B", "L1"): 100})
    other = campaign_pb(
        "OTHER", promotions=[percent_promotion_pb("OX", "20", ["A"], exclusive=True)], **window_now()
    )
    await launch(suite, other)
    campaign = campaign_pb(
        "C1",
        promotions=[
            percent_promotion_pb("P1", "10", ["A", "B", "C", "D", "Z"], exclusive=True),
        ],
        channels=("web",),
        location_ids=["L1"],
        region_ids=["de-north"],
        excluded_region_ids=["de-north"],
        budget_required=True,
        stock_guardrail=campaign_pb2.StockGuardrail(min_available_to_sell=5),
        **window_now(),
    )
    alice = suite.promotion_as("alice")
    response = await alice.ValidateCampaign(pb.ValidateCampaignRequest(campaign=campaign))
    found = [
        (pb.FindingKind.Name(f.kind), f.sku, f.channel_id, f.location_id, f.region_id)
        for f in response.findings
    ]
    assert found == [
        ("FINDING_KIND_UNKNOWN_SKU", "Z", "", "", ""),
        ("FINDING_KIND_INACTIVE_SKU", "C", "", "", ""),
        ("FINDING_KIND_UNPRICED_SKU", "D", "web", "", ""),
        ("FINDING_KIND_EXCLUDED_SCOPE", "", "", "", "de-north"),
        ("FINDING_KIND_LOW_STOCK", "A", "web", "L1", ""),
        ("FINDING_KIND_LOW_STOCK", "D", "web", "L1", ""),
        ("FINDING_KIND_CONFLICTING_EXCLUSIVE", "A", "web", "", ""),
        ("FINDING_KIND_MISSING_BUDGET", "", "", "", ""),
    ]
    assert not response.valid
    created = await alice.CreateCampaign(pb.CreateCampaignRequest(request_id="c1", campaign=campaign))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await alice.SubmitCampaign(
            pb.SubmitCampaignRequest(request_id="s1", campaign_id="C1", etag=created.campaign.etag)
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    got = await alice.GetCampaign(pb.GetCampaignRequest(campaign_id="C1"))
    assert got.campaign.state == campaign_pb2.CAMPAIGN_STATE_DRAFT
    # four eyes: the author may not approve
    fine = campaign_pb("C2", promotions=[percent_promotion_pb("P2", "10", ["B"])], **window_now())
    c2 = (await alice.CreateCampaign(pb.CreateCampaignRequest(request_id="c2", campaign=fine))).campaign
    c2 = (
        await alice.SubmitCampaign(pb.SubmitCampaignRequest(request_id="s2", campaign_id="C2", etag=c2.etag))
    ).campaign
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await alice.ApproveCampaign(
            pb.ApproveCampaignRequest(request_id="a2", campaign_id="C2", etag=c2.etag)
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_guardrail_suspends_that_sku_at_that_location_and_resumes_on_restore(suite: Suite) -> None:
    await seed_prices(suite)
    await seed_stock(suite, {("A", "L1"): 10, ("A", "L2"): 10})
    # A campaign naming no location or region targets every location: its guardrail watches each one the
    # replica knows (with the channels that may sell there), so wait for the replica before launching.
    replica = await asyncpg.connect(suite.promotion_dsn)
    try:

        async def replicated() -> bool:
            count = await replica.fetchval(
                "select count(*) from locations where channel_ids = array['web']::text[]"
            )
            return bool(count == 2)

        await eventually(replicated, "L1 and L2 (sold by web) reach the promotion's location replica")
    finally:
        await replica.close()
    campaign = campaign_pb(
        "C1",
        promotions=[percent_promotion_pb("P1", "10", ["A"])],
        channels=("web",),
        stock_guardrail=campaign_pb2.StockGuardrail(min_available_to_sell=5, resume_on_restore=True),
        **window_now(),
    )
    await launch(suite, campaign)
    web = suite.promotion_as("web")

    async def outcome(location: str) -> int:
        request = pb.EvaluateCartRequest(**cart(("A", 1)))
        request.scope.location_id = location
        try:
            response = await web.EvaluateCart(request)
        except grpc.aio.AioRpcError:
            return -1  # the location replica has not arrived yet
        return response.candidates[0].outcome

    async def applied_everywhere() -> bool:
        return [await outcome("L1"), await outcome("L2")] == [evaluation_pb2.CANDIDATE_OUTCOME_APPLIED] * 2

    await eventually(applied_everywhere, "locations replicated and the promotion applies at L1 and L2")
    await move(suite, "sale", {("A", "L1"): -7})  # ATS 3 < 5 at L1 only

    async def suspended_at_l1() -> bool:
        return await outcome("L1") == evaluation_pb2.CANDIDATE_OUTCOME_SUSPENDED

    await eventually(suspended_at_l1, "the threshold crossing suspends A at L1")
    assert await outcome("L2") == evaluation_pb2.CANDIDATE_OUTCOME_APPLIED
    got = await suite.promotion_as("alice").GetCampaign(pb.GetCampaignRequest(campaign_id="C1"))
    assert [(s.location_id, s.sku, s.reason) for s in got.suspensions] == [
        ("L1", "A", campaign_pb2.SUSPENSION_REASON_LOW_STOCK)
    ]
    await move(suite, "receipt", {("A", "L1"): 10})

    async def resumed() -> bool:
        return await outcome("L1") == evaluation_pb2.CANDIDATE_OUTCOME_APPLIED

    await eventually(resumed, "the restore resumes A at L1")
    # the rules registered at launch are retired at inventory once the campaign is rolled back
    conn = await asyncpg.connect(suite.promotion_dsn)
    try:
        rules = [
            r["rule_id"] for r in await conn.fetch("select rule_id from guardrail_rules order by rule_id")
        ]
        assert len(rules) == 2  # A at L1 and L2, channel web
        alice = suite.promotion_as("alice")
        current = (await alice.GetCampaign(pb.GetCampaignRequest(campaign_id="C1"))).campaign
        await alice.RollbackCampaign(
            pb.RollbackCampaignRequest(request_id="rb", campaign_id="C1", etag=current.etag, reason="done")
        )

        async def retired() -> bool:
            return bool(await conn.fetchval("select bool_and(retired) from guardrail_rules"))

        await eventually(retired, "the campaign's threshold rules are deleted at inventory")
    finally:
        await conn.close()
    ops = suite.inventory_as("ops")
    for rule_id in rules:
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await ops.GetThresholdRule(inv_pb.GetThresholdRuleRequest(rule_id=rule_id))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def publish_channel_event(
    nats_url: str, event: Any, event_type: str, channel_id: str, version: int
) -> None:
    """What the gateway's relay would publish (it is not running in this test)."""
    nc = await nats.connect(nats_url)
    try:
        env = Envelope(
            subject=event_subject("channel", event_name(event_type), channel_id),
            event_id=new_event_id(),
            event_type=f"retail.channel.v1.{event_type}",
            schema_version=1,
            aggregate_type="channel_entity",
            aggregate_key=f"{channel_id}/campaign/C1",
            aggregate_version=version,
            occurred_at=datetime.now(UTC),
            payload=event.SerializeToString(),
        )
        await nc.jetstream().publish(env.subject, env.payload, headers=env.headers())
    finally:
        await nc.close()


async def test_deployment_follows_delivery_events_with_one_channel_failing_then_recovering(
    suite: Suite,
) -> None:
    await seed_prices(suite)
    launched = await launch(
        suite,
        campaign_pb(
            "C1",
            promotions=[percent_promotion_pb("P1", "10", ["A"])],
            channels=("web", "mp-1"),
            **window_now(),
        ),
    )
    alice = suite.promotion_as("alice")
    version = (
        await alice.GetCampaign(pb.GetCampaignRequest(campaign_id=launched.campaign_id))
    ).campaign.version
    nats_url = suite.env["NATS_URL"]

    def delivery(channel: str, state: int, n: int) -> tuple[Any, str, str, int]:
        event = channel_events.DeliveryStateChanged(
            channel_id=channel,
            entity_key="campaign/C1",
            entity_version=version,
            state=state,
            detail="HTTP 503",  # type: ignore[arg-type]
        )
        return event, "DeliveryStateChanged", channel, n

    async def deployment() -> Any:
        return (
            await alice.GetCampaignDeployment(pb.GetCampaignDeploymentRequest(campaign_id="C1"))
        ).deployment

    assert (await deployment()).state == deployment_pb2.DEPLOYMENT_STATE_PENDING
    await publish_channel_event(nats_url, *delivery("web", channel_events.DELIVERY_STATE_ACKNOWLEDGED, 1))
    await publish_channel_event(nats_url, *delivery("mp-1", channel_events.DELIVERY_STATE_DEAD_LETTERED, 1))

    async def partially() -> bool:
        return (await deployment()).state == deployment_pb2.DEPLOYMENT_STATE_PARTIALLY_DEPLOYED

    await eventually(partially, "web acknowledged, mp-1 failed")
    d = await deployment()
    assert [(t.channel_id, t.state) for t in d.targets] == [
        ("mp-1", deployment_pb2.TARGET_STATE_FAILED),
        ("web", deployment_pb2.TARGET_STATE_ACKNOWLEDGED),
    ]
    assert [(r.channel_id, r.action) for r in d.remediation_tasks] == [
        ("mp-1", deployment_pb2.REMEDIATION_ACTION_REPLAY_DELIVERY)
    ]

    async def outcome(channel: str) -> int:
        request = pb.EvaluateCartRequest(**cart(("A", 1)))
        request.scope.channel_id = channel
        return (await alice.EvaluateCart(request)).candidates[0].outcome

    assert await outcome("mp-1") == evaluation_pb2.CANDIDATE_OUTCOME_SUSPENDED  # never a wrong price live
    assert await outcome("web") == evaluation_pb2.CANDIDATE_OUTCOME_APPLIED
    await publish_channel_event(nats_url, *delivery("mp-1", channel_events.DELIVERY_STATE_DELIVERED, 2))

    async def deployed() -> bool:
        return (await deployment()).state == deployment_pb2.DEPLOYMENT_STATE_DEPLOYED

    await eventually(deployed, "the replay delivered mp-1")
    assert await outcome("mp-1") == evaluation_pb2.CANDIDATE_OUTCOME_APPLIED


async def test_operator_flows_idempotency_etags_codes_rollback_and_audit(suite: Suite) -> None:
    await seed_prices(suite)
    alice, web = suite.promotion_as("alice"), suite.promotion_as("web")
    coded = percent_promotion_pb("CODE", "50", ["A"], eligibility={"code_batch_ids": ["B1"]})
    campaign = campaign_pb("C1", promotions=[percent_promotion_pb("P1", "10", ["B"]), coded], **window_now())
    request = pb.CreateCampaignRequest(request_id="create-1", campaign=campaign)
    first = await alice.CreateCampaign(request)
    assert (await alice.CreateCampaign(request)) == first  # a retry returns the first result
    reused = pb.CreateCampaignRequest(request_id="create-1", campaign=campaign_pb("C9", promotions=[coded]))
    assert await invalid(alice.CreateCampaign(reused)) == ["request_id"]
    # an update with a stale etag is ABORTED; with the current one it applies
    changed = pb.UpdateCampaignRequest(request_id="u1", campaign=campaign)
    changed.campaign.etag = "stale"
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await alice.UpdateCampaign(changed)
    assert stale.value.code() == grpc.StatusCode.ABORTED
    changed.campaign.etag = first.campaign.etag
    changed.campaign.display_name = "Weekend"
    updated = (await alice.UpdateCampaign(changed)).campaign
    assert (updated.display_name, updated.version) == ("Weekend", 2)
    codes = (
        await alice.CreateCodeBatch(
            pb.CreateCodeBatchRequest(request_id="b1", campaign_id="C1", code_batch_id="B1", count=2)
        )
    ).codes
    await launch_existing(suite, "C1")
    # a single-use code works for one order only
    first_order = await web.RedeemPromotions(
        pb.RedeemPromotionsRequest(order_id="o1", **cart(("A", 1), codes=(codes[0],)))
    )
    assert [p.promotion_id for p in first_order.redemption.promotions] == ["CODE"]
    assert list(first_order.redemption.promotions[0].codes) == [codes[0]]
    second = await web.RedeemPromotions(
        pb.RedeemPromotionsRequest(order_id="o2", **cart(("A", 1), codes=(codes[0],)))
    )
    assert list(second.redemption.promotions) == []
    await web.CancelRedemption(pb.CancelRedemptionRequest(order_id="o1"))
    third = await web.RedeemPromotions(
        pb.RedeemPromotionsRequest(order_id="o3", **cart(("A", 1), codes=(codes[0],)))
    )
    assert [p.promotion_id for p in third.redemption.promotions] == ["CODE"]
    with pytest.raises(grpc.aio.AioRpcError) as hidden:  # another channel's order
        await suite.promotion_as("app").CancelRedemption(pb.CancelRedemptionRequest(order_id="o3"))
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    redemption_audit = await alice.ListAuditRecords(
        pb.ListAuditRecordsRequest(entity_type="retail.promotion.v1.Redemption", entity_key="o1")
    )
    assert [(r.action.rsplit("/", 1)[1], r.principal_id) for r in redemption_audit.records] == [
        ("CancelRedemption", "web"),
        ("RedeemPromotions", "web"),
    ]
    assert {r.principal_kind for r in redemption_audit.records} == {principal_pb2.PRINCIPAL_KIND_CHANNEL}
    assert redemption_audit.records[0].HasField("before")
    assert not redemption_audit.records[1].HasField("before")
    first_page = await alice.ListAuditRecords(
        pb.ListAuditRecordsRequest(entity_type="retail.promotion.v1.Redemption", entity_key="o1", page_size=1)
    )
    assert [r.audit_id for r in first_page.records] == [redemption_audit.records[0].audit_id]
    for bad, named in (
        (pb.ListAuditRecordsRequest(page_size=-1), "page_size"),
        (pb.ListAuditRecordsRequest(entity_key="o1"), "entity_key"),
        (pb.ListAuditRecordsRequest(page_token="not-a-token"), "page_token"),
        (pb.ListAuditRecordsRequest(entity_type="x", page_token=first_page.next_page_token), "page_token"),
    ):
        assert await invalid(alice.ListAuditRecords(bad)) == [named], bad
    # an operator suspension of one SKU, then resume
    await alice.SuspendCampaign(pb.SuspendCampaignRequest(request_id="sus", campaign_id="C1", sku="B"))
    evaluated = await web.EvaluateCart(pb.EvaluateCartRequest(**cart(("B", 1))))
    assert {c.promotion_id: c.outcome for c in evaluated.candidates}[
        "P1"
    ] == evaluation_pb2.CANDIDATE_OUTCOME_SUSPENDED
    resumed = await alice.ResumeCampaign(
        pb.ResumeCampaignRequest(request_id="res", campaign_id="C1", sku="B")
    )
    assert resumed.resumed
    # active promotions per SKU with the sale price (code-free promotions only)
    active = await web.GetActivePromotions(
        pb.GetActivePromotionsRequest(
            skus=["A", "B"], scope=evaluation_pb2.CartScope(channel_id="web"), currency_code="EUR"
        )
    )
    assert [
        (s.sku, [p.promotion_id for p in s.promotions], amount(s.sale_unit_price)) for s in active.skus
    ] == [
        ("A", [], Decimal("10.00")),
        ("B", ["P1"], Decimal("18.00")),
    ]
    # rollback deactivates everywhere
    current = (await alice.GetCampaign(pb.GetCampaignRequest(campaign_id="C1"))).campaign
    rollback = pb.RollbackCampaignRequest(
        request_id="rb", campaign_id="C1", etag=current.etag, reason="wrong prices"
    )
    rolled = await alice.RollbackCampaign(rollback)
    assert rolled.campaign.state == campaign_pb2.CAMPAIGN_STATE_ROLLED_BACK
    # a retry gets the first response (its etag is stale by now: answered before the etag check)
    assert await alice.RollbackCampaign(rollback) == rolled
    with pytest.raises(grpc.aio.AioRpcError) as reused_rb:
        await alice.RollbackCampaign(
            pb.RollbackCampaignRequest(request_id="rb", campaign_id="C1", etag=current.etag, reason="x")
        )
    assert (parse_error(reused_rb.value).fields, parse_error(reused_rb.value).reason) == (
        ["request_id"],
        "IDEMPOTENCY_KEY_REUSED",
    )
    after = await web.EvaluateCart(pb.EvaluateCartRequest(**cart(("B", 1))))
    assert list(after.candidates) == []
    deployment = (
        await alice.GetCampaignDeployment(pb.GetCampaignDeploymentRequest(campaign_id="C1"))
    ).deployment
    assert deployment.state == deployment_pb2.DEPLOYMENT_STATE_ROLLED_BACK
    # every operator mutation is audited
    audit = await alice.ListAuditRecords(
        pb.ListAuditRecordsRequest(entity_type="retail.promotion.v1.Campaign", entity_key="C1")
    )
    actions = [r.action.rsplit("/", 1)[1] for r in audit.records]
    for action in (
        "CreateCampaign",
        "UpdateCampaign",
        "LaunchCampaign",
        "SuspendCampaign",
        "RollbackCampaign",
    ):
        assert action in actions
    listed = await alice.ListCampaigns(pb.ListCampaignsRequest(page_size=1))
    assert [c.campaign_id for c in listed.campaigns] == ["C1"]


async def launch_existing(s: Suite, campaign_id: str) -> None:
    alice, bob = s.promotion_as("alice"), s.promotion_as("bob")
    c = (await alice.GetCampaign(pb.GetCampaignRequest(campaign_id=campaign_id))).campaign
    c = (
        await alice.SubmitCampaign(
            pb.SubmitCampaignRequest(request_id="ls", campaign_id=campaign_id, etag=c.etag)
        )
    ).campaign
    c = (
        await bob.ApproveCampaign(
            pb.ApproveCampaignRequest(request_id="la", campaign_id=campaign_id, etag=c.etag)
        )
    ).campaign
    await alice.LaunchCampaign(
        pb.LaunchCampaignRequest(request_id="ll", campaign_id=campaign_id, etag=c.etag)
    )

    async def active() -> bool:
        got = await alice.GetCampaign(pb.GetCampaignRequest(campaign_id=campaign_id))
        return got.campaign.state == campaign_pb2.CAMPAIGN_STATE_ACTIVE

    await eventually(active, "the scheduler activates the campaign")
