"""The promotion service's spec: settings, policies, servicer, migrations, background jobs."""

from __future__ import annotations

import asyncio
import logging

import grpc
from pydantic import Field

from retail.promotion.v1 import promotion_service_pb2, promotion_service_pb2_grpc
from retail_common.auth import MethodPolicy, authenticated, service_policies
from retail_common.config import ServiceSettings
from retail_common.context import PrincipalKind
from retail_common.messaging import (
    Envelope,
    OutboxRelay,
    OutboxWriter,
    subscribe_per_replica,
)
from retail_common.service import ServiceContext, ServiceSpec
from retail_promotion.campaigning import CampaignFacts
from retail_promotion.consumers import Handlers, inbox_consumers
from retail_promotion.dependencies import GrpcInventory, GrpcPricing
from retail_promotion.deployment_metrics import DeploymentStateGauge
from retail_promotion.evaluating import Evaluator
from retail_promotion.price_cache import CachingPricing, PriceCache
from retail_promotion.repository import MIGRATIONS, CampaignRepository, RedemptionRepository
from retail_promotion.scheduler import run_scheduler
from retail_promotion.servicer import APPROVER_ROLE, OPERATOR_ROLE, PromotionServicer

__all__ = ["SPEC", "PromotionSettings"]

logger = logging.getLogger("retail_promotion")
SERVICE = promotion_service_pb2.DESCRIPTOR.services_by_name["PromotionService"]


class PromotionSettings(ServiceSettings):
    pricing_target: str = Field(description="host:port of the pricing service")
    inventory_reservation_target: str = Field(description="host:port of the inventory-reservation service")
    scheduler_max_wait_seconds: float = Field(default=5.0, gt=0, le=300)
    # 0 disables the per-replica price cache (every cart then asks pricing).
    price_cache_ttl_seconds: float = Field(default=30.0, ge=0, le=3600)
    deployment_metrics_interval_seconds: float = Field(default=10.0, gt=0, le=300)


_CACHES: dict[int, PriceCache] = {}  # one per ServiceContext: the servicer's, fed by its subscription


def _cache(ctx: ServiceContext[PromotionSettings]) -> PriceCache:
    return _CACHES.setdefault(id(ctx), PriceCache(ctx.clock, ctx.settings.price_cache_ttl_seconds))


def _register(ctx: ServiceContext[PromotionSettings], server: grpc.aio.Server) -> None:
    campaigns = CampaignRepository(OutboxWriter(ctx.clock))
    redemptions = RedemptionRepository()
    pricing = CachingPricing(GrpcPricing(ctx.channel(ctx.settings.pricing_target)), _cache(ctx))
    inventory = GrpcInventory(ctx.channel(ctx.settings.inventory_reservation_target))
    servicer = PromotionServicer(
        ctx.pool,
        ctx.clock,
        campaigns,
        Evaluator(ctx.pool, pricing, campaigns, redemptions),
        CampaignFacts(ctx.pool, pricing, inventory),
        redemptions,
    )
    promotion_service_pb2_grpc.add_PromotionServiceServicer_to_server(servicer, server)


async def outbox_relay(ctx: ServiceContext[PromotionSettings]) -> None:
    js = await ctx.jetstream()
    await OutboxRelay(ctx.pool, js, lease_name="retail-promotion").run()


async def consumers(ctx: ServiceContext[PromotionSettings]) -> None:
    js = await ctx.jetstream()
    handlers = Handlers(CampaignRepository(OutboxWriter(ctx.clock)), ctx.clock)
    await asyncio.gather(*(c.run() for c in inbox_consumers(ctx.pool, js, handlers)))


async def price_invalidation(ctx: ServiceContext[PromotionSettings]) -> None:
    """Drop cached prices of a SKU when pricing announces a change (every replica sees every event)."""
    cache = _cache(ctx)
    js = await ctx.jetstream()

    async def on_event(envelope: Envelope) -> None:
        cache.invalidate_skus([envelope.aggregate_key])

    subscriptions = [  # pricing's subjects: snake_case event name + SKU token
        await subscribe_per_replica(js, f"retail.pricing.v1.{event}.>", on_event, stream="PRICING")
        for event in ("price_changed", "product_upserted")
    ]
    cache.invalidate_all()  # anything cached before the subscriptions may have missed an event
    try:
        await asyncio.Event().wait()
    finally:
        for subscription in subscriptions:
            await subscription.close()


async def guardrail_retirement(ctx: ServiceContext[PromotionSettings]) -> None:
    """Delete at inventory the threshold rules of campaigns that ended or were rolled back."""
    inventory = GrpcInventory(ctx.channel(ctx.settings.inventory_reservation_target))
    facts = CampaignFacts(ctx.pool, GrpcPricing(ctx.channel(ctx.settings.pricing_target)), inventory)
    while True:
        try:
            while await facts.retire_guardrails() > 0:
                pass
        except Exception:  # inventory or the DB may be down for a while; keep trying
            logger.exception("guardrail retirement failed")
        await asyncio.sleep(ctx.settings.scheduler_max_wait_seconds)


async def scheduler(ctx: ServiceContext[PromotionSettings]) -> None:
    campaigns = CampaignRepository(OutboxWriter(ctx.clock))
    await run_scheduler(ctx.pool, campaigns, ctx.clock, ctx.settings.scheduler_max_wait_seconds)


async def deployment_metrics(ctx: ServiceContext[PromotionSettings]) -> None:
    """Keep the campaign deployment state gauge current (each replica reports the same counts)."""
    gauge = DeploymentStateGauge(ctx.meter)
    await gauge.run(ctx.pool, ctx.settings.deployment_metrics_interval_seconds)


OPERATOR = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[OPERATOR_ROLE])
APPROVER = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[APPROVER_ROLE])
OPERATOR_OR_SERVICE = MethodPolicy(kinds=[PrincipalKind.OPERATOR, PrincipalKind.SERVICE])
ANYONE = authenticated()

SPEC: ServiceSpec[PromotionSettings] = ServiceSpec(
    name="promotion",
    settings_cls=PromotionSettings,
    services=[SERVICE],
    policies=service_policies(
        SERVICE,
        {
            "CreateCampaign": OPERATOR,
            "UpdateCampaign": OPERATOR,
            "GetCampaign": OPERATOR_OR_SERVICE,
            "ListCampaigns": OPERATOR_OR_SERVICE,
            "ValidateCampaign": OPERATOR,
            "SubmitCampaign": OPERATOR,
            "ApproveCampaign": APPROVER,
            "RejectCampaign": APPROVER,
            "LaunchCampaign": OPERATOR,
            "SuspendCampaign": OPERATOR,
            "ResumeCampaign": OPERATOR,
            "RollbackCampaign": OPERATOR,
            "CreateCodeBatch": OPERATOR,
            # channels only for themselves: checked against the principal in the servicer
            "EvaluateCart": ANYONE,
            "GetActivePromotions": ANYONE,
            "RedeemPromotions": ANYONE,
            "CancelRedemption": ANYONE,
            "GetCampaignDeployment": OPERATOR_OR_SERVICE,
            "ListAuditRecords": OPERATOR,
        },
    ),
    register=_register,
    migrations=[MIGRATIONS],
    background=[
        outbox_relay,
        consumers,
        scheduler,
        price_invalidation,
        guardrail_retirement,
        deployment_metrics,
    ],
)
