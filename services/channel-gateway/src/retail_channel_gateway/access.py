"""Who may act for which channel: channels only for themselves and their assortment, operators with a
role for any channel (they must name it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from retail_channel_gateway.repository import ChannelRecord
from retail_common.context import Principal, PrincipalKind, current_call
from retail_common.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied

__all__ = [
    "ADMIN_ROLE",
    "VIEWER_ROLE",
    "Registry",
    "caller",
    "require_assortment",
    "require_location",
    "require_operator_role",
    "resolve_channel",
]

ADMIN_ROLE = "channel.admin"
VIEWER_ROLE = "channel.viewer"
SKU_NOT_IN_ASSORTMENT = "SKU_NOT_IN_ASSORTMENT"


def caller() -> Principal:
    call = current_call()
    if call is None or call.principal is None:  # the auth interceptor guarantees one
        raise PermissionDenied("no principal")
    return call.principal


def require_operator_role(*roles: str) -> Principal:
    principal = caller()
    if principal.kind is PrincipalKind.OPERATOR and not principal.roles.intersection(roles):
        raise PermissionDenied(f"needs role {' or '.join(roles)}")
    return principal


class Registry(Protocol):
    """Where the checks read the registry (registry_cache.RegistryCache: cached, or the database)."""

    async def channel(self, channel_id: str) -> ChannelRecord | None: ...

    async def outside_assortment(self, channel_id: str, skus: Sequence[str]) -> list[str]: ...


async def resolve_channel(registry: Registry, requested: str) -> ChannelRecord:
    """The channel a façade call acts for. Channels: their own (requested empty or equal); another
    channel's id is PERMISSION_DENIED. Operators (role channel.admin): the named channel."""
    principal = caller()
    if principal.kind is PrincipalKind.CHANNEL:
        if requested and requested != principal.id:
            raise PermissionDenied("a channel may only act for itself")
        channel_id = principal.id
    elif principal.kind is PrincipalKind.OPERATOR:
        require_operator_role(ADMIN_ROLE)
        if not requested:
            raise InvalidArgument([FieldViolation("channel_id", "required for operators")])
        channel_id = requested
    else:
        raise PermissionDenied("only channels and operators use the channel façade")
    record = await registry.channel(channel_id)
    if record is None:
        if principal.kind is PrincipalKind.CHANNEL:
            raise PermissionDenied("the calling channel is not registered")
        raise NotFound("retail.channel.v1.Channel", channel_id)
    if not record.active:
        raise PermissionDenied(f"channel {channel_id} is suspended")
    return record


async def require_assortment(
    registry: Registry, channel: ChannelRecord, skus: Sequence[str], field: str
) -> None:
    outside = await registry.outside_assortment(channel.channel_id, skus)
    if outside:
        raise PermissionDenied(
            f"SKU(s) not in channel {channel.channel_id}'s assortment: "
            + ", ".join(sorted(set(outside))[:20]),
            reason=SKU_NOT_IN_ASSORTMENT,
            metadata={"field": field},
        )


def require_location(channel: ChannelRecord, location_id: str) -> None:
    if location_id not in channel.location_ids:
        raise PermissionDenied(f"channel {channel.channel_id} does not sell from location {location_id}")
