"""The promotion service's spec: settings, policies, servicer, migrations, background jobs."""

from __future__ import annotations

import asyncio

import grpc
from pydantic import Field

from retail.promotion.v1 import promotion_service_pb2, promotion_service_pb2_grpc
from retail_common.auth import MethodPolicy, authenticated, service_policies
from retail_common.config import ServiceSettings
from retail_common.context import PrincipalKind
from retail_common.messaging import OutboxRelay, OutboxWriter, ensure_streams, suite_streams
from retail_common.service import ServiceContext, ServiceSpec
from retail_promotion.campaigning import CampaignFacts
from retail_promotion.consumers import Handlers, inbox_consumers
from retail_promotion.dependencies import GrpcInventory, GrpcPricing
from retail_promotion.evaluating import Evaluator
from retail_promotion.repository import MIGRATIONS, CampaignRepository, RedemptionRepository
from retail_promotion.scheduler import run_scheduler
from retail_promotion.servicer import APPROVER_ROLE, OPERATOR_ROLE, PromotionServicer

__all__ = ["SPEC", "PromotionSettings"]

SERVICE = promotion_service_pb2.DESCRIPTOR.services_by_name["PromotionService"]


class PromotionSettings(ServiceSettings):
    pricing_target: str = Field(description="host:port of the pricing service")
    inventory_reservation_target: str = Field(description="host:port of the inventory-reservation service")
    scheduler_max_wait_seconds: float = Field(default=5.0, gt=0, le=300)
    stream_replicas: int = Field(default=1, ge=1, le=5)


def _register(ctx: ServiceContext[PromotionSettings], server: grpc.aio.Server) -> None:
    campaigns = CampaignRepository(OutboxWriter(ctx.clock))
    redemptions = RedemptionRepository()
    pricing = GrpcPricing(ctx.channel(ctx.settings.pricing_target))
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
    nc = await ctx.nats.connected()
    js = nc.jetstream()
    await ensure_streams(js, suite_streams(replicas=ctx.settings.stream_replicas))
    await OutboxRelay(ctx.pool, js, lease_name="retail-promotion").run()


async def consumers(ctx: ServiceContext[PromotionSettings]) -> None:
    nc = await ctx.nats.connected()
    js = nc.jetstream()
    await ensure_streams(js, suite_streams(replicas=ctx.settings.stream_replicas))
    handlers = Handlers(CampaignRepository(OutboxWriter(ctx.clock)), ctx.clock)
    await asyncio.gather(*(c.run() for c in inbox_consumers(ctx.pool, js, handlers)))


async def scheduler(ctx: ServiceContext[PromotionSettings]) -> None:
    campaigns = CampaignRepository(OutboxWriter(ctx.clock))
    await run_scheduler(ctx.pool, campaigns, ctx.clock, ctx.settings.scheduler_max_wait_seconds)


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
    background=[outbox_relay, consumers, scheduler],
)
