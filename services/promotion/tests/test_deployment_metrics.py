"""The campaign deployment state gauge against a real Postgres: live targets by channel and state."""

from __future__ import annotations

import asyncpg
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from retail_common.db import transaction
from retail_promotion.deployment_metrics import DeploymentStateGauge
from retail_promotion.domain.deployment import Delivery
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import CampaignRepository
from retail_promotion.repository.ledger import ensure_targets, record_delivery, set_channel_health
from retail_promotion.testing import campaign_pb, percent_promotion_pb


def observed(reader: InMemoryMetricReader) -> dict[tuple[str, str], float]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (str(p.attributes["channel"]), str(p.attributes["state"])): p.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "retail.promotion.deployment_targets"
        for p in m.data.data_points  # type: ignore[union-attr]
        if p.attributes is not None
    }


async def _campaign(pool: asyncpg.Pool, campaigns: CampaignRepository, cid: str, state: CampaignState) -> int:
    c = campaign_pb(
        cid, promotions=[percent_promotion_pb(f"{cid}-P", "10", ["A"])], channels=["web", "app", "mkt"]
    )
    async with transaction(pool) as conn:
        await campaigns.create(conn, c, "ann")
        await campaigns.set_state(conn, cid, state)
        await ensure_targets(conn, cid, list(c.channel_ids))
        return int(await conn.fetchval("select version from campaigns where campaign_id = $1", cid))


async def test_counts_live_targets_by_channel_and_board_state(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    gauge = DeploymentStateGauge(provider.get_meter("test"))
    version = await _campaign(pool, campaigns, "C1", CampaignState.ACTIVE)
    await _campaign(pool, campaigns, "C2", CampaignState.SCHEDULED)
    await _campaign(pool, campaigns, "OLD", CampaignState.ACTIVE)
    async with transaction(pool) as conn:
        await record_delivery(conn, "C1", "web", Delivery.ACKNOWLEDGED, version, "")
        await record_delivery(conn, "C1", "app", Delivery.DEAD_LETTERED, version, "HTTP 500")
        await record_delivery(conn, "C2", "app", Delivery.DELIVERED, version, "")
        await set_channel_health(conn, "mkt", degraded=True)
        await conn.execute("update campaigns set state = 'ENDED' where campaign_id = 'OLD'")  # history
    await gauge.refresh(pool)
    assert observed(reader) == {
        ("web", "PENDING"): 1,
        ("web", "DELIVERED"): 0,
        ("web", "ACKNOWLEDGED"): 1,
        ("web", "FAILED"): 0,
        ("web", "SUSPENDED"): 0,
        ("app", "PENDING"): 0,
        ("app", "DELIVERED"): 1,
        ("app", "ACKNOWLEDGED"): 0,
        ("app", "FAILED"): 1,
        ("app", "SUSPENDED"): 0,
        ("mkt", "PENDING"): 0,
        ("mkt", "DELIVERED"): 0,
        ("mkt", "ACKNOWLEDGED"): 0,
        ("mkt", "FAILED"): 0,
        ("mkt", "SUSPENDED"): 2,
    }
    # The marketplace recovers: its targets return to PENDING, the suspended series drops to 0.
    async with transaction(pool) as conn:
        await set_channel_health(conn, "mkt", degraded=False)
    await gauge.refresh(pool)
    now = observed(reader)
    assert (now[("mkt", "SUSPENDED")], now[("mkt", "PENDING")]) == (0, 2)
    provider.shutdown()
