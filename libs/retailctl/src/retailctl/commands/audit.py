"""`retailctl audit`: the audit logs of the services (ListAuditRecords of each), newest first, merged.

Filters are the RPC's own: entity type (full message name, e.g. retail.pricing.v1.PriceList) and entity
key; pages are followed through next_page_token until --limit records per service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from retail.channel.v1 import channel_operations_service_pb2, channel_operations_service_pb2_grpc
from retail.common.v1 import audit_pb2, principal_pb2
from retail.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2, promotion_service_pb2_grpc
from retailctl.commands._shared import Commands, leaf, pages
from retailctl.connection import SERVICES
from retailctl.errors import ExitCode
from retailctl.output import enum_name, message_dict, timestamp
from retailctl.runner import Context, command

__all__ = ["register"]

MAX_PAGE = 500  # the smallest maximum among the services (the gateway's)

# service -> (stub class, request class): the four RPCs share field names, not message types.
_RPCS: dict[str, tuple[Any, Any]] = {
    "pricing": (pricing_service_pb2_grpc.PricingServiceStub, pricing_service_pb2.ListAuditRecordsRequest),
    "inventory-reservation": (
        inventory_service_pb2_grpc.InventoryServiceStub,
        inventory_service_pb2.ListAuditRecordsRequest,
    ),
    "promotion": (
        promotion_service_pb2_grpc.PromotionServiceStub,
        promotion_service_pb2.ListAuditRecordsRequest,
    ),
    "channel-gateway": (
        channel_operations_service_pb2_grpc.ChannelOperationsServiceStub,
        channel_operations_service_pb2.ListAuditRecordsRequest,
    ),
}


async def _records(ctx: Context, service: str) -> list[audit_pb2.AuditRecord]:
    stub_class, request_class = _RPCS[service]
    list_records: Callable[..., Awaitable[Any]] = stub_class(ctx.channel(service)).ListAuditRecords
    limit: int = ctx.args.limit
    records: list[audit_pb2.AuditRecord] = []

    async def fetch(token: str) -> Any:
        request = request_class(
            entity_type=ctx.args.entity_type or "",
            entity_key=ctx.args.entity_key or "",
            page_size=min(limit - len(records), MAX_PAGE),
            page_token=token,
        )
        return await list_records(request)

    async for page in pages(fetch):
        records.extend(page.records)
        if len(records) >= limit:
            break
    return records[:limit]


def _kind(kind: int) -> str:
    return enum_name(principal_pb2.PrincipalKind.Name(kind), "PRINCIPAL_KIND_").lower()  # type: ignore[arg-type]


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


async def _audit(ctx: Context) -> ExitCode:
    services: list[str] = ctx.args.services or list(SERVICES)
    merged: list[tuple[str, audit_pb2.AuditRecord]] = []
    for service in services:
        merged += [(service, record) for record in await _records(ctx, service)]
    # Newest first across services; audit ids are UUIDv7, so they break ties in time order.
    merged.sort(key=lambda item: (item[1].occurred_at.ToNanoseconds(), item[1].audit_id), reverse=True)
    merged = merged[: ctx.args.limit]
    if ctx.out.as_json:
        ctx.out.json({"records": [{"service": service, **message_dict(r)} for service, r in merged]})
        return ExitCode.OK
    ctx.out.table(
        ["TIME", "SERVICE", "PRINCIPAL", "ACTION", "ENTITY", "KEY", "REQUEST ID", "TRACE ID"],
        (
            [
                timestamp(r.occurred_at),
                service,
                f"{r.principal_id} ({_kind(r.principal_kind)})",
                _short(r.action),
                _short(r.entity_type),
                r.entity_key,
                r.request_id or "-",
                r.trace_id or "-",
            ]
            for service, r in merged
        ),
        empty="no audit records match",
    )
    return ExitCode.OK


def register(commands: Commands) -> None:
    parser = leaf(
        commands,
        "audit",
        command(_audit),
        "audit records of the services, newest first (who changed what, when, with which request id)",
    )
    parser.add_argument(
        "--service",
        dest="services",
        action="append",
        choices=SERVICES,
        help="only this service (repeatable; default: all four)",
    )
    parser.add_argument("--entity-type", help="full message name, e.g. retail.pricing.v1.PriceList")
    parser.add_argument("--entity-key", help="entity key (composite keys joined with '/')")
    parser.add_argument("--limit", type=int, default=50, help="at most this many records (default 50)")
