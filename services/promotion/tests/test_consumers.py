"""Inbox handlers against a real Postgres: replicas, stock guardrails (suspend exactly that SKU at that
location, duplicates change nothing, resume per policy) and the deployment ledger (a channel failing
then recovering, with the channel failure policy)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from google.protobuf.message import Message

from retail.channel.v1 import events_pb2 as channel_events
from retail.channel.v1 import health_pb2
from retail.inventory.v1 import events_pb2 as inventory_events
from retail.inventory.v1 import location_pb2, threshold_pb2
from retail.pricing.v1 import events_pb2 as pricing_events
from retail.pricing.v1 import products_pb2
from retail.promotion.v1 import campaign_pb2
from retail_common.db import transaction
from retail_common.messaging import Envelope
from retail_promotion.consumers import Handlers
from retail_promotion.domain.deployment import Overall, effective_state, overall
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.domain.model import Product
from retail_promotion.repository import CampaignRepository
from retail_promotion.repository.catalog import lookups
from retail_promotion.repository.ledger import ensure_targets, targets
from retail_promotion.repository.replicas import upsert_product
from retail_promotion.testing import campaign_pb, percent_promotion_pb

NOW = datetime(2026, 6, 6, tzinfo=UTC)
STATE_EVENTS = "select count(*) from outbox where event_type = 'retail.promotion.v1.PromotionStateChanged'"


def envelope(event: Message, key: str, version: int) -> Envelope:
    return Envelope(
        subject="test",
        event_id=uuid.uuid4(),
        event_type=type(event).__name__,
        schema_version=1,
        aggregate_type="test",
        aggregate_key=key,
        aggregate_version=version,
        occurred_at=NOW,
        payload=event.SerializeToString(),
    )


async def _launch(pool: asyncpg.Pool, campaigns: CampaignRepository, **fields: object) -> None:
    c = campaign_pb(promotions=[percent_promotion_pb("P1", "10", ["A", "B"])], **fields)  # type: ignore[arg-type]
    async with transaction(pool) as conn:
        await campaigns.create(conn, c, "ann")
        await campaigns.set_state(conn, "C1", CampaignState.ACTIVE)
        await ensure_targets(conn, "C1", list(c.channel_ids))


async def _handle(pool: asyncpg.Pool, handler: object, env: Envelope) -> None:
    async with transaction(pool) as conn:
        await handler(conn, env)  # type: ignore[operator]


async def _suspensions(pool: asyncpg.Pool) -> list[tuple[str, str, str, str]]:
    rows = await pool.fetch(
        "select channel_id, location_id, sku, reason from suspensions order by 1, 2, 3, 4"
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def threshold(
    state: int, version: int, *, sku: str = "A", location: str = "L1", channel: str = "web"
) -> Envelope:
    rule = threshold_pb2.ThresholdRule(
        rule_id=f"r-{sku}-{location}-{channel}",
        sku=sku,
        location_id=location,
        channel_id=channel,
        owner=threshold_pb2.ThresholdOwner(campaign_id="C1"),
        state=state,  # type: ignore[arg-type]
        version=version,
    )
    return envelope(
        inventory_events.ThresholdStateChanged(rule=rule, available_to_sell=3), rule.rule_id, version
    )


BELOW = threshold_pb2.THRESHOLD_STATE_BELOW
ABOVE = threshold_pb2.THRESHOLD_STATE_ABOVE


@pytest.mark.parametrize("resume", [True, False])
async def test_guardrail_suspends_exactly_that_sku_at_that_location(
    pool: asyncpg.Pool, campaigns: CampaignRepository, resume: bool
) -> None:
    guardrail = campaign_pb2.StockGuardrail(min_available_to_sell=5, resume_on_restore=resume)
    await _launch(pool, campaigns, stock_guardrail=guardrail)
    handlers = Handlers(campaigns)
    await _handle(pool, handlers.threshold, threshold(BELOW, 2))
    assert await _suspensions(pool) == [("", "L1", "A", "LOW_STOCK")]
    events_before = await pool.fetchval(STATE_EVENTS)
    assert events_before == 1
    await _handle(pool, handlers.threshold, threshold(BELOW, 2))  # duplicate (redelivered) event
    assert await _suspensions(pool) == [("", "L1", "A", "LOW_STOCK")]
    assert await pool.fetchval(STATE_EVENTS) == 1
    await _handle(pool, handlers.threshold, threshold(ABOVE, 3))
    assert await _suspensions(pool) == ([] if resume else [("", "L1", "A", "LOW_STOCK")])
    async with pool.acquire() as conn:
        # the rule's restore is recorded either way; a stale BELOW (version 2) after it changes nothing
        await _handle(pool, handlers.threshold, threshold(BELOW, 2))
        assert await conn.fetchval("select state from guardrail_rules") == "ABOVE"


async def test_guardrail_waits_for_every_rule_of_the_scope_before_resuming(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    guardrail = campaign_pb2.StockGuardrail(min_available_to_sell=5, resume_on_restore=True)
    await _launch(pool, campaigns, stock_guardrail=guardrail)
    handlers = Handlers(campaigns)
    await _handle(pool, handlers.threshold, threshold(BELOW, 2, channel="web"))
    await _handle(pool, handlers.threshold, threshold(BELOW, 2, channel="app"))
    await _handle(pool, handlers.threshold, threshold(ABOVE, 3, channel="web"))
    assert await _suspensions(pool) == [("", "L1", "A", "LOW_STOCK")]
    await _handle(pool, handlers.threshold, threshold(ABOVE, 3, channel="app"))
    assert await _suspensions(pool) == []


def delivery(channel: str, state: int, version: int, detail: str = "") -> Envelope:
    event = channel_events.DeliveryStateChanged(
        channel_id=channel,
        entity_key="campaign/C1",
        kind=4,  # type: ignore[arg-type]
        entity_version=version,
        state=state,  # type: ignore[arg-type]
        detail=detail,
    )
    return envelope(event, f"{channel}/campaign/C1", version)


async def _overall(pool: asyncpg.Pool, version: int) -> Overall:
    async with pool.acquire() as conn:
        return overall([effective_state(t, version) for t in await targets(conn, "C1")])


async def test_deployment_follows_delivery_events_with_a_channel_failing_then_recovering(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    await _launch(pool, campaigns, channels=("web", "mp-1"))
    handlers = Handlers(campaigns)
    version = 2
    assert await _overall(pool, version) is Overall.PENDING
    await _handle(
        pool, handlers.delivery, delivery("web", channel_events.DELIVERY_STATE_ACKNOWLEDGED, version)
    )
    dead = delivery("mp-1", channel_events.DELIVERY_STATE_DEAD_LETTERED, version, "HTTP 503")
    await _handle(pool, handlers.delivery, dead)
    assert await _overall(pool, version) is Overall.PARTIALLY_DEPLOYED
    assert await _suspensions(pool) == [("mp-1", "", "", "CHANNEL_FAILURE")]  # that channel's offer only
    await _handle(pool, handlers.delivery, dead)  # duplicate
    assert await pool.fetchval(STATE_EVENTS) == 1
    await _handle(pool, handlers.delivery, delivery("mp-1", channel_events.DELIVERY_STATE_DELIVERED, version))
    assert await _overall(pool, version) is Overall.DEPLOYED
    assert await _suspensions(pool) == []


async def test_degraded_channel_with_hold_launch_policy_suspends_everywhere(
    pool: asyncpg.Pool, campaigns: CampaignRepository
) -> None:
    await _launch(
        pool,
        campaigns,
        channels=("web", "mp-1"),
        channel_failure_policy=campaign_pb2.CHANNEL_FAILURE_POLICY_HOLD_LAUNCH,
    )
    handlers = Handlers(campaigns)
    degraded = channel_events.ChannelHealthChanged(
        channel_id="mp-1", condition=health_pb2.CHANNEL_CONDITION_DEGRADED
    )
    await _handle(pool, handlers.health, envelope(degraded, "mp-1", 1))
    assert await _suspensions(pool) == [("", "", "", "CHANNEL_FAILURE")]
    healthy = channel_events.ChannelHealthChanged(
        channel_id="mp-1", condition=health_pb2.CHANNEL_CONDITION_HEALTHY
    )
    await _handle(pool, handlers.health, envelope(healthy, "mp-1", 2))
    assert await _suspensions(pool) == []


async def test_product_and_location_replicas_apply_only_newer_versions(pool: asyncpg.Pool) -> None:
    handlers = Handlers(CampaignRepository.__new__(CampaignRepository))
    product = products_pb2.Product(
        sku="A",
        status=products_pb2.PRODUCT_STATUS_ACTIVE,
        category_ids=["food"],
        attributes={"brand": "acme"},
    )
    await _handle(pool, handlers.product, envelope(pricing_events.ProductUpserted(product=product), "A", 2))
    older = products_pb2.Product(sku="A", status=products_pb2.PRODUCT_STATUS_INACTIVE)
    await _handle(pool, handlers.product, envelope(pricing_events.ProductUpserted(product=older), "A", 1))
    async with pool.acquire() as conn:
        _, products, _ = await lookups(conn, ["A"], None)
    assert products["A"] == Product("A", frozenset({"food"}), frozenset({("brand", "acme")}), True)
    assert await pool.fetchval("select version from products where sku = 'A'") == 2
    loc = location_pb2.Location(
        location_id="L1", region_id="de-south", time_zone="Europe/Berlin", active=True
    )
    await _handle(pool, handlers.location, envelope(inventory_events.LocationUpserted(location=loc), "L1", 1))
    assert await pool.fetchval("select time_zone from locations where location_id = 'L1'") == "Europe/Berlin"
    async with transaction(pool) as conn:
        assert not await upsert_product(conn, sku="A", active=False, categories=[], attributes={}, version=2)
