"""The window scheduler: SCHEDULED campaigns become ACTIVE at their window's start and ACTIVE (or still
SCHEDULED) ones ENDED at its end, on the injectable clock, each with CampaignChanged and a global
PromotionStateChanged. Safe on every replica (FOR UPDATE SKIP LOCKED); catches up after downtime."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import asyncpg

from retail.promotion.v1 import campaign_pb2, events_pb2
from retail_common.clock import Clock
from retail_common.db import transaction
from retail_promotion import events
from retail_promotion.convert import window_from_proto
from retail_promotion.domain.lifecycle import Action, CampaignState, due_action, live_span, next_state
from retail_promotion.repository import CampaignRepository

__all__ = ["run_scheduler", "scheduler_tick"]

logger = logging.getLogger("retail_promotion.scheduler")
_CHANGES = {
    Action.START: events_pb2.PROMOTION_STATE_CHANGE_ACTIVATED,
    Action.END: events_pb2.PROMOTION_STATE_CHANGE_ENDED,
}


async def scheduler_tick(
    pool: asyncpg.Pool[asyncpg.Record], campaigns: CampaignRepository, now: datetime
) -> tuple[list[tuple[str, Action]], datetime | None]:
    """Apply every due transition at `now`; returns them and the next instant something is due."""
    done: list[tuple[str, Action]] = []
    upcoming: list[datetime] = []
    async with transaction(pool) as conn:
        rows = await conn.fetch(
            "select campaign_id, state, definition from campaigns where state in ('SCHEDULED', 'ACTIVE')"
            " order by campaign_id for update skip locked"
        )
        for row in rows:
            state = CampaignState(row["state"])
            window = window_from_proto(campaign_pb2.Campaign.FromString(bytes(row["definition"])).window)
            action = due_action(state, window, now)
            if action is not None:
                state = next_state(state, action)
                updated = await campaigns.set_state(conn, row["campaign_id"], state)
                await events.promotion_state_changed(
                    conn, campaigns.events, updated, change=_CHANGES[action], at=now
                )
                done.append((row["campaign_id"], action))
            start, end = live_span(window)
            if state is CampaignState.SCHEDULED:
                upcoming.append(start)
            if state in (CampaignState.SCHEDULED, CampaignState.ACTIVE) and end is not None:
                upcoming.append(end)
    future = [t for t in upcoming if t > now]
    return done, min(future) if future else None


async def run_scheduler(
    pool: asyncpg.Pool[asyncpg.Record], campaigns: CampaignRepository, clock: Clock, max_wait: float
) -> None:
    """Tick, then sleep until the next due instant (at most `max_wait`, so launches are picked up)."""
    while True:
        wake = clock.now() + timedelta(seconds=max_wait)
        try:
            _, due = await scheduler_tick(pool, campaigns, clock.now())
            if due is not None and due < wake:
                wake = due
        except Exception:  # the DB may be down for a while; keep trying
            logger.exception("scheduler tick failed")
        await clock.sleep_until(wake)
