"""The inventory service's spec: settings, policies, servicer, migrations, background jobs."""

from __future__ import annotations

import asyncio
import logging

import grpc
from pydantic import Field

from retail.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from retail_common.auth import MethodPolicy, authenticated, service_policies
from retail_common.config import ServiceSettings
from retail_common.context import PrincipalKind
from retail_common.db import transaction
from retail_common.messaging import OutboxRelay, OutboxWriter
from retail_common.service import ServiceContext, ServiceSpec
from retail_inventory.metrics import ReservationEvent, reservation_metrics
from retail_inventory.repository import MIGRATIONS, InventoryRepository
from retail_inventory.servicer import OPERATOR_ROLE, InventoryServicer

__all__ = ["SPEC", "InventorySettings"]

logger = logging.getLogger("retail_inventory")
SERVICE = inventory_service_pb2.DESCRIPTOR.services_by_name["InventoryService"]


class InventorySettings(ServiceSettings):
    expiry_sweep_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    expiry_sweep_batch: int = Field(default=200, ge=1, le=10_000)


def _register(ctx: ServiceContext[InventorySettings], server: grpc.aio.Server) -> None:
    repo = InventoryRepository(OutboxWriter(ctx.clock))
    inventory_service_pb2_grpc.add_InventoryServiceServicer_to_server(InventoryServicer(ctx, repo), server)


async def expiry_sweep(ctx: ServiceContext[InventorySettings]) -> None:
    """Expire reservations past their expiry (database clock); safe on every replica (SKIP LOCKED)."""
    repo = InventoryRepository(OutboxWriter(ctx.clock))
    metrics = reservation_metrics(ctx.meter)
    while True:
        try:
            while True:
                async with transaction(ctx.pool) as conn:
                    expired = await repo.expire_due(conn, limit=ctx.settings.expiry_sweep_batch)
                metrics.record(ReservationEvent.EXPIRED, None, len(expired))
                if len(expired) < ctx.settings.expiry_sweep_batch:
                    break
        except Exception:  # the DB may be down for a while; the sweep keeps trying
            logger.exception("expiry sweep failed")
        await asyncio.sleep(ctx.settings.expiry_sweep_interval_seconds)


async def outbox_relay(ctx: ServiceContext[InventorySettings]) -> None:
    js = await ctx.jetstream()
    await OutboxRelay(ctx.pool, js, lease_name="retail-inventory").run()


OPERATOR = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[OPERATOR_ROLE])
OPERATOR_OR_SERVICE = MethodPolicy(kinds=[PrincipalKind.OPERATOR, PrincipalKind.SERVICE])
ANYONE = authenticated()

SPEC: ServiceSpec[InventorySettings] = ServiceSpec(
    name="inventory",
    settings_cls=InventorySettings,
    services=[SERVICE],
    policies=service_policies(
        SERVICE,
        {
            "UpsertLocation": OPERATOR,
            "GetLocation": ANYONE,
            "ListLocations": ANYONE,
            "RecordMovements": OPERATOR_OR_SERVICE,
            "ImportStockSnapshots": OPERATOR_OR_SERVICE,
            "SetStockPolicies": OPERATOR,
            "BatchGetStockPositions": OPERATOR_OR_SERVICE,
            # channels only for themselves: checked against the principal in the servicer
            "GetAvailability": ANYONE,
            "BatchGetAvailability": ANYONE,
            "ReserveStock": ANYONE,
            "ExtendReservation": ANYONE,
            "ConfirmReservation": ANYONE,
            "ReleaseReservation": ANYONE,
            "GetReservation": ANYONE,
            "ListReservations": ANYONE,
            # operators; services for campaign-owned rules (checked in the servicer)
            "CreateThresholdRule": OPERATOR_OR_SERVICE,
            "BatchCreateThresholdRules": OPERATOR_OR_SERVICE,
            "GetThresholdRule": OPERATOR_OR_SERVICE,
            "ListThresholdRules": OPERATOR_OR_SERVICE,
            "DeleteThresholdRule": OPERATOR_OR_SERVICE,
            "ListAuditRecords": OPERATOR,
        },
    ),
    register=_register,
    migrations=[MIGRATIONS],
    background=[expiry_sweep, outbox_relay],
)
