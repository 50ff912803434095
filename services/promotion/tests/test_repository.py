"""Campaign and redemption repositories against a real Postgres: events in the outbox with the change,
promotion ownership, atomic budgets and usage limits, cancel gives back exactly what was taken."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from retail.promotion.v1 import campaign_pb2, events_pb2, promotion_pb2
from retail_common.db import transaction
from retail_common.errors import AlreadyExists, InvalidArgument
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import CampaignRepository, RedemptionRepository
from retail_promotion.repository.catalog import exhausted, load_live_catalog
from retail_promotion.repository.redemptions import AppliedItem, LimitReachedError
from retail_promotion.testing import campaign_pb, money_pb, percent_promotion_pb


async def _outbox(pool: asyncpg.Pool, event_type: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "select aggregate_key, aggregate_version, payload from outbox where event_type = $1 order by id",
        event_type,
    )


async def _create(
    pool: asyncpg.Pool, campaigns: CampaignRepository, campaign_id: str, promotion_id: str
) -> None:
    c = campaign_pb(campaign_id, promotions=[percent_promotion_pb(promotion_id, "10", ["A"])])
    async with transaction(pool) as conn:
        await campaigns.create(conn, c, "ann")


async def _counters(pool: asyncpg.Pool) -> tuple[Decimal, int]:
    row = await pool.fetchrow(
        "select budget_used, redemptions_used from promotions where promotion_id = 'P1'"
    )
    return row["budget_used"], row["redemptions_used"]


async def _redeem(
    pool: asyncpg.Pool, redemptions: RedemptionRepository, order: str, item: AppliedItem
) -> None:
    async with transaction(pool) as conn:
        assert await redemptions.claim(conn, order, "fp")
        await redemptions.consume(conn, order, [item])


async def _live_campaign(pool: asyncpg.Pool, campaigns: CampaignRepository, **limits: Any) -> None:
    p = percent_promotion_pb("P1", "10", ["A"], limits=promotion_pb2.UsageLimits(**limits))
    async with transaction(pool) as conn:
        await campaigns.create(conn, campaign_pb(promotions=[p], budget=money_pb("1000.00")), "ann")
        await campaigns.set_state(conn, "C1", CampaignState.ACTIVE)


async def test_create_emits_campaign_changed_and_versions_follow_changes(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    c = campaign_pb(promotions=[percent_promotion_pb("P1", "10", ["A"])])
    async with transaction(pool) as conn:
        created = await campaigns.create(conn, c, "ann")
    assert created.state == campaign_pb2.CAMPAIGN_STATE_DRAFT
    assert (created.author_id, created.version) == ("ann", 1)
    async with transaction(pool) as conn:
        submitted = await campaigns.set_state(conn, "C1", CampaignState.SUBMITTED)
    assert submitted.version == 2
    assert submitted.etag != created.etag
    rows = await _outbox(pool, "retail.promotion.v1.CampaignChanged")
    assert [(r["aggregate_key"], r["aggregate_version"]) for r in rows] == [("C1", 1), ("C1", 2)]
    event = events_pb2.CampaignChanged.FromString(rows[-1]["payload"])
    assert event.campaign.state == campaign_pb2.CAMPAIGN_STATE_SUBMITTED
    assert event.campaign.window.absolute.start_time.seconds > 0


async def test_duplicate_campaign_and_foreign_promotion_id_change_nothing(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    await _create(pool, campaigns, "C1", "P1")
    with pytest.raises(AlreadyExists):
        await _create(pool, campaigns, "C1", "P9")
    with pytest.raises(InvalidArgument) as err:
        await _create(pool, campaigns, "C2", "P1")
    assert err.value.violations[0].field == "campaign.promotions[0].promotion_id"
    assert await pool.fetchval("select count(*) from campaigns") == 1
    assert await pool.fetchval("select count(*) from outbox") == 1


async def test_budget_is_never_overspent_under_concurrency(
    pool: asyncpg.Pool, campaigns: CampaignRepository, redemptions: RedemptionRepository
) -> None:
    await _live_campaign(pool, campaigns, budget=money_pb("100.00"))

    async def redeem(n: int) -> bool:
        try:
            await _redeem(pool, redemptions, f"o{n}", AppliedItem("P1", "C1", Decimal("30.00")))
        except LimitReachedError:
            return False
        return True

    results = await asyncio.gather(*(redeem(n) for n in range(16)))
    assert sum(results) == 3  # 3 x 30.00 <= 100.00 < 4 x 30.00
    assert await _counters(pool) == (Decimal("90.00"), 3)
    assert await pool.fetchval("select budget_used from campaigns") == Decimal("90.00")
    async with pool.acquire() as conn:
        assert await exhausted(conn, ["P1"], ["C1"]) == frozenset()  # 10.00 left


async def test_usage_limit_and_cancel_gives_back_exactly(
    pool: asyncpg.Pool, campaigns: CampaignRepository, redemptions: RedemptionRepository
) -> None:
    await _live_campaign(pool, campaigns, max_redemptions=2)
    item = AppliedItem("P1", "C1", Decimal("1.25"))
    for order in ("o1", "o2"):
        await _redeem(pool, redemptions, order, item)
    async with pool.acquire() as conn:
        assert await exhausted(conn, ["P1"], ["C1"]) == {"P1"}
    with pytest.raises(LimitReachedError):
        await _redeem(pool, redemptions, "o3", item)
    for _ in range(2):  # the second cancel changes nothing
        async with transaction(pool) as conn:
            cancelled = await redemptions.cancel(conn, "o1")
        assert cancelled is not None
        assert cancelled.state == "CANCELLED"
        assert await _counters(pool) == (Decimal("1.25"), 1)
        assert await pool.fetchval("select budget_used from campaigns") == Decimal("1.25")


async def test_single_use_code_is_consumed_once_and_returned_on_cancel(
    pool: asyncpg.Pool, campaigns: CampaignRepository, redemptions: RedemptionRepository
) -> None:
    await _live_campaign(pool, campaigns)
    async with transaction(pool) as conn:
        codes = await campaigns.create_code_batch(conn, "C1", "B1", 3, "WE")
        assert await campaigns.unused_batch_codes(conn, [codes[0], "NOPE"]) == {codes[0]: "B1"}
    assert len(set(codes)) == 3
    assert all(c.startswith("WE") for c in codes)
    item = AppliedItem("P1", "C1", Decimal("1.00"), (codes[0],))
    await _redeem(pool, redemptions, "o1", item)
    with pytest.raises(LimitReachedError) as err:
        await _redeem(pool, redemptions, "o2", item)
    assert err.value.kind == "code"
    async with transaction(pool) as conn:
        await redemptions.cancel(conn, "o1")
        assert await campaigns.unused_batch_codes(conn, [codes[0]]) == {codes[0]: "B1"}


async def test_live_catalog_indexes_live_campaigns_with_suspensions(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    await _create(pool, campaigns, "C1", "P1")
    await _create(pool, campaigns, "C2", "P2")
    async with transaction(pool) as conn:
        live = await campaigns.set_state(conn, "C1", CampaignState.ACTIVE)
        first = await campaigns.suspend(conn, live, location_id="L1", sku="A", reason="OPERATOR")
        duplicate = await campaigns.suspend(conn, live, location_id="L1", sku="A", reason="OPERATOR")
    assert first is not None
    assert duplicate is None
    async with pool.acquire() as conn:
        catalog = await load_live_catalog(conn)
    assert [p.promotion_id for p in catalog.index.for_skus("web", ["A"], {})] == ["P1"]
    assert catalog.suspensions.sku_suspended("C1", "web", "L1", "A")
    assert not catalog.suspensions.sku_suspended("C1", "web", "L2", "A")
    states = await _outbox(pool, "retail.promotion.v1.PromotionStateChanged")
    assert [(r["aggregate_key"], r["aggregate_version"]) for r in states] == [("C1//L1/A", 1)]
