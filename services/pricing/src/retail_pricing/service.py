"""The pricing service's spec: settings, access policies, servicer, migrations, background tasks."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import grpc
from pydantic import Field

from retail.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc
from retail_common.auth import MethodPolicy, authenticated, service_policies
from retail_common.config import ServiceSettings
from retail_common.context import PrincipalKind
from retail_common.messaging import OutboxRelay, OutboxWriter
from retail_common.service import ServiceContext, ServiceSpec
from retail_pricing.catalog import Catalog
from retail_pricing.consumers import location_consumer, watch_for_invalidation
from retail_pricing.domain.guardrails import GuardrailPolicy, Severity
from retail_pricing.handlers.common import Deps
from retail_pricing.scheduler import ActivationScheduler
from retail_pricing.schema import PRICING_MIGRATIONS
from retail_pricing.servicer import PricingServicer

__all__ = ["APPROVER_ROLE", "OPERATOR_ROLE", "SPEC", "PricingSettings"]

logger = logging.getLogger("retail_pricing")
SERVICE = pricing_service_pb2.DESCRIPTOR.services_by_name["PricingService"]
OPERATOR_ROLE = "pricing.operator"
APPROVER_ROLE = "pricing.approver"


class PricingSettings(ServiceSettings):
    guardrail_max_change_percent: Decimal = Field(default=Decimal(50), gt=0)
    guardrail_cost_floor: Severity = Severity.BLOCKING
    guardrail_minimum_advertised_price: Severity = Severity.WARNING
    guardrail_max_change: Severity = Severity.WARNING


_DEPS: dict[int, Deps] = {}
_SCHEDULERS: dict[int, ActivationScheduler] = {}


def deps_of(ctx: ServiceContext[PricingSettings]) -> Deps:
    """One Deps (and so one cache) per running service, shared by the servicer and background tasks."""
    deps = _DEPS.get(id(ctx))
    if deps is None:
        s = ctx.settings
        deps = Deps(
            pool=ctx.pool,
            clock=ctx.clock,
            catalog=Catalog(ctx.pool),
            writer=OutboxWriter(ctx.clock),
            policy=GuardrailPolicy(
                max_change_percent=s.guardrail_max_change_percent,
                cost_floor=s.guardrail_cost_floor,
                minimum_advertised_price=s.guardrail_minimum_advertised_price,
                max_change=s.guardrail_max_change,
            ),
        )
        scheduler = ActivationScheduler(ctx.pool, ctx.clock, deps.writer)
        deps.on_scheduled = scheduler.wake
        _DEPS[id(ctx)] = deps
        _SCHEDULERS[id(ctx)] = scheduler
    return deps


def _register(ctx: ServiceContext[PricingSettings], server: grpc.aio.Server) -> None:
    pricing_service_pb2_grpc.add_PricingServiceServicer_to_server(PricingServicer(deps_of(ctx)), server)


async def outbox_relay(ctx: ServiceContext[PricingSettings]) -> None:
    await OutboxRelay(ctx.pool, await ctx.jetstream(), lease_name="retail-pricing").run()


async def cache_invalidation(ctx: ServiceContext[PricingSettings]) -> None:
    """Keep this replica's resolution cache fresh from the service's own events."""
    js = await ctx.jetstream()
    deps = deps_of(ctx)
    subscriptions = await watch_for_invalidation(js, deps.catalog, deps.on_scheduled)
    try:
        await asyncio.Event().wait()
    finally:
        for sub in subscriptions:
            await sub.close()


async def activation_scheduler(ctx: ServiceContext[PricingSettings]) -> None:
    """Announce entries starting or ending at their instant (once across replicas, catching up)."""
    deps_of(ctx)
    await _SCHEDULERS[id(ctx)].run()


async def locations(ctx: ServiceContext[PricingSettings]) -> None:
    """Replicate locations (region, time zone) from the inventory service's LocationUpserted events."""
    await location_consumer(ctx.pool, await ctx.jetstream()).run()


OPERATOR = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[OPERATOR_ROLE])
APPROVER = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[APPROVER_ROLE])
OPERATOR_OR_SERVICE = MethodPolicy(kinds=[PrincipalKind.OPERATOR, PrincipalKind.SERVICE])
ANYONE = authenticated()

POLICIES = {
    "BatchUpsertProducts": OPERATOR_OR_SERVICE,  # the ERP connector is a service
    "ImportProducts": OPERATOR_OR_SERVICE,
    "GetProduct": ANYONE,
    "ListProducts": ANYONE,
    "CreatePriceList": OPERATOR,
    "UpdatePriceList": OPERATOR,
    "GetPriceList": ANYONE,
    "ListPriceLists": ANYONE,
    "ListPriceEntries": ANYONE,
    "SetTaxRate": OPERATOR,
    "ListTaxRates": ANYONE,
    "CreateChangeSet": OPERATOR,
    "UpdateChangeSet": OPERATOR,
    "GetChangeSet": OPERATOR_OR_SERVICE,
    "ListChangeSets": OPERATOR_OR_SERVICE,
    "ListChangeSetItems": OPERATOR_OR_SERVICE,
    "PreviewChangeSet": OPERATOR,
    "SubmitChangeSet": OPERATOR,
    "ApproveChangeSet": APPROVER,
    "RejectChangeSet": APPROVER,
    "RevertChangeSet": OPERATOR,
    "ImportPriceEntries": OPERATOR_OR_SERVICE,
    "ResolvePrice": ANYONE,
    "BatchResolvePrices": ANYONE,
    "ExplainPrice": ANYONE,
    "GetPriceHistory": ANYONE,
    "ListAuditRecords": OPERATOR,
}

SPEC: ServiceSpec[PricingSettings] = ServiceSpec(
    name="pricing",
    settings_cls=PricingSettings,
    services=[SERVICE],
    policies=service_policies(SERVICE, POLICIES),
    register=_register,
    migrations=[PRICING_MIGRATIONS],
    background=[outbox_relay, cache_invalidation, locations, activation_scheduler],
)
