"""The window scheduler on a manual clock against a real Postgres: activation at the start instant,
end at the end instant, catch-up after downtime, events with each transition, and the loop sleeping
until the next due instant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from retail.promotion.v1 import events_pb2
from retail_common.clock import ManualClock
from retail_common.db import transaction
from retail_promotion.domain.lifecycle import Action, CampaignState
from retail_promotion.repository import CampaignRepository
from retail_promotion.scheduler import run_scheduler, scheduler_tick
from retail_promotion.testing import campaign_pb, percent_promotion_pb

T0 = datetime(2026, 6, 6, tzinfo=UTC)
START, END = T0 + timedelta(hours=1), T0 + timedelta(hours=3)


async def _scheduled(
    pool: asyncpg.Pool, campaigns: CampaignRepository, campaign_id: str, **window: object
) -> None:
    c = campaign_pb(campaign_id, promotions=[percent_promotion_pb(f"P-{campaign_id}", "10", ["A"])], **window)  # type: ignore[arg-type]
    async with transaction(pool) as conn:
        await campaigns.create(conn, c, "ann")
        await campaigns.set_state(conn, campaign_id, CampaignState.SCHEDULED)


async def _state(pool: asyncpg.Pool, campaign_id: str) -> str:
    return str(await pool.fetchval("select state from campaigns where campaign_id = $1", campaign_id))


async def test_tick_starts_and_ends_at_the_window_instants(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    await _scheduled(pool, campaigns, "C1", start=START, end=END)
    assert await scheduler_tick(pool, campaigns, START - timedelta(microseconds=1)) == ([], START)
    assert await scheduler_tick(pool, campaigns, START) == ([("C1", Action.START)], END)
    assert await _state(pool, "C1") == "ACTIVE"
    assert await scheduler_tick(pool, campaigns, END - timedelta(seconds=1)) == ([], END)
    assert await scheduler_tick(pool, campaigns, END) == ([("C1", Action.END)], None)
    assert await _state(pool, "C1") == "ENDED"
    payloads = await pool.fetch(
        "select payload from outbox where event_type = 'retail.promotion.v1.PromotionStateChanged'"
        " order by id"
    )
    changes = [events_pb2.PromotionStateChanged.FromString(p["payload"]).change for p in payloads]
    assert changes == [events_pb2.PROMOTION_STATE_CHANGE_ACTIVATED, events_pb2.PROMOTION_STATE_CHANGE_ENDED]
    campaign_versions = await pool.fetch(
        "select aggregate_version from outbox where event_type = 'retail.promotion.v1.CampaignChanged'"
        " order by id"
    )
    assert [r["aggregate_version"] for r in campaign_versions] == [1, 2, 3, 4]


async def test_catch_up_after_downtime_ends_a_window_that_passed(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    await _scheduled(pool, campaigns, "C1", start=START, end=END)
    assert await scheduler_tick(pool, campaigns, END + timedelta(days=1)) == ([("C1", Action.END)], None)
    assert await _state(pool, "C1") == "ENDED"


async def test_loop_sleeps_until_the_next_instant_on_the_injected_clock(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    await _scheduled(pool, campaigns, "C1", start=START, end=END)
    clock = ManualClock(T0)
    task = asyncio.create_task(run_scheduler(pool, campaigns, clock, max_wait=3600 * 24))
    try:
        await asyncio.sleep(0.2)  # lets the first tick run; nothing is due yet
        assert await _state(pool, "C1") == "SCHEDULED"
        await clock.set(START)
        await _until(pool, "C1", "ACTIVE")
        await clock.set(END)
        await _until(pool, "C1", "ENDED")
    finally:
        task.cancel()


async def _until(pool: asyncpg.Pool, campaign_id: str, state: str) -> None:
    for _ in range(600):
        if await _state(pool, campaign_id) == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{campaign_id} never became {state}")
