"""The campaign board against a real Postgres: each target says when its ledger row last changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from retail.promotion.v1 import deployment_pb2
from retail_common.db import transaction
from retail_promotion.domain.deployment import Delivery
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import CampaignRepository
from retail_promotion.repository.ledger import ensure_targets, record_delivery, targets
from retail_promotion.testing import campaign_pb, percent_promotion_pb
from retail_promotion.views import deployment


async def test_board_targets_carry_the_time_their_delivery_was_recorded(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    c = campaign_pb("C1", promotions=[percent_promotion_pb("P1", "10", ["A"])], channels=["web", "mkt"])
    async with transaction(pool) as conn:
        await campaigns.create(conn, c, "ann")
        await campaigns.set_state(conn, "C1", CampaignState.SCHEDULED)
        await ensure_targets(conn, "C1", list(c.channel_ids))
        version = int(await conn.fetchval("select version from campaigns where campaign_id = 'C1'"))
        await record_delivery(conn, "C1", "web", Delivery.ACKNOWLEDGED, version, "")
        rows = await targets(conn, "C1")
    c.version = version
    board = deployment(c, rows, delivered_version=version)
    by_channel = {t.channel_id: t for t in board.targets}
    assert by_channel["web"].state == deployment_pb2.TARGET_STATE_ACKNOWLEDGED
    recorded = by_channel["web"].update_time.ToDatetime(tzinfo=UTC)
    assert abs(recorded - datetime.now(UTC)) < timedelta(minutes=5)  # the row's time, not the epoch
    assert by_channel["mkt"].HasField("update_time")  # pending rows have their creation time
