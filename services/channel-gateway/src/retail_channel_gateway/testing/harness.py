"""Helpers of the gateway's process-level tests: clients with API keys, channel builders, publishing
domain events the way their producers do (test support, not used by the service)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import nats
import pytest
from google.protobuf.duration_pb2 import Duration
from pydantic import SecretStr

from retail.channel.v1 import (
    channel_gateway_service_pb2_grpc,
    channel_operations_service_pb2_grpc,
    channel_pb2,
)
from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail.inventory.v1 import events_pb2 as inventory_events
from retail.pricing.v1 import events_pb2 as pricing_events
from retail_common.auth import CredentialStore, parse_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.errors import ErrorDetails, parse_error
from retail_common.grpcx import connect
from retail_common.messaging import SUITE_STREAMS, Envelope, ensure_streams, event_subject, new_event_id

__all__ = [
    "Clients",
    "availability",
    "eventually",
    "price_changed",
    "publish",
    "refused",
    "register",
    "register_keys",
    "secret_of",
    "stream_channel",
    "webhook_channel",
]

Event = tuple[str, str, str, int, bytes]
if TYPE_CHECKING:  # the async stub types exist only in the generated .pyi
    OpsStub = channel_operations_service_pb2_grpc.ChannelOperationsServiceAsyncStub
    GatewayStub = channel_gateway_service_pb2_grpc.ChannelGatewayServiceAsyncStub


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    """Poll until check() holds (a generous bound, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.05)


class Clients:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], address: str) -> None:
        self.store = CredentialStore(pool)
        self.address = address
        self.channels: list[grpc.aio.Channel] = []

    def _channel(self, key: str | SecretStr | None) -> grpc.aio.Channel:
        credential = SecretStr(key) if isinstance(key, str) else key
        channel = connect(self.address, credential=credential, default_timeout=30.0, tracing=False)
        self.channels.append(channel)
        return channel

    async def operator(self, roles: tuple[str, ...] = ("channel.admin",), name: str = "alice") -> OpsStub:
        key = (await self.store.create(name, PrincipalKind.OPERATOR, roles)).key
        return channel_operations_service_pb2_grpc.ChannelOperationsServiceStub(self._channel(key))

    def gateway(self, key: str | SecretStr | None) -> GatewayStub:
        return channel_gateway_service_pb2_grpc.ChannelGatewayServiceStub(self._channel(key))

    def operations(self, key: str | SecretStr | None) -> OpsStub:
        return channel_operations_service_pb2_grpc.ChannelOperationsServiceStub(self._channel(key))

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)


def webhook_channel(channel_id: str, url: str, **policy: Any) -> channel_pb2.Channel:
    return channel_pb2.Channel(
        channel_id=channel_id,
        display_name=channel_id.upper(),
        kind=channel_pb2.CHANNEL_KIND_MARKETPLACE,
        location_ids=["s1", "s2"],
        active=True,
        delivery=channel_pb2.DeliveryPolicy(
            webhook=channel_pb2.WebhookTarget(url=url),
            retry=channel_pb2.RetryPolicy(initial_backoff=Duration(nanos=20_000_000)),
            **policy,
        ),
    )


def stream_channel(channel_id: str, retention_seconds: int = 0) -> channel_pb2.Channel:
    return channel_pb2.Channel(
        channel_id=channel_id,
        display_name=channel_id.upper(),
        kind=channel_pb2.CHANNEL_KIND_POS_STORE_GROUP,
        location_ids=["s1"],
        active=True,
        delivery=channel_pb2.DeliveryPolicy(
            change_stream=channel_pb2.ChangeStreamTarget(retention=Duration(seconds=retention_seconds))
        ),
    )


async def register(
    operator: OpsStub,
    channel: channel_pb2.Channel,
    skus: list[str],
) -> tuple[str, str]:
    """Create a channel with its assortment and one API key; returns (api key, webhook secret)."""
    created = await operator.CreateChannel(ops.CreateChannelRequest(request_id=f"c-{channel.channel_id}",
                                                                    channel=channel))  # fmt: skip
    await operator.UpdateAssortment(
        ops.UpdateAssortmentRequest(
            request_id=f"a-{channel.channel_id}", channel_id=channel.channel_id, add_skus=skus
        )
    )
    issued = await operator.CreateChannelCredential(
        ops.CreateChannelCredentialRequest(
            request_id=f"k-{channel.channel_id}", channel_id=channel.channel_id
        )
    )
    return issued.issued.api_key, created.webhook_signing_secret


KeyEntry = tuple[SecretStr, str, PrincipalKind, list[str]]


async def register_keys(dsn: str, entries: list[KeyEntry]) -> None:
    """Register (key, principal id, kind, roles) in the credential table of the database at `dsn`."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        for key, who, kind, roles in entries:
            await CredentialStore(pool).register(key, who, kind, roles)
    finally:
        await pool.close()


def secret_of(api_key: str) -> str:
    """The secret part of an API key. It is URL-safe base64 and may itself contain "_", so splitting on
    the last "_" can yield a one-letter fragment that any log contains."""
    parsed = parse_key(api_key)
    assert parsed is not None, "not an API key"
    return parsed.secret.get_secret_value()


async def refused(call: Awaitable[object]) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return parse_error(err.value)


async def publish(nats_url: str, events: list[tuple[str, str, str, int, bytes]]) -> None:
    """Publish domain events as their producers do (subject, type, key, version, payload)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, SUITE_STREAMS)
        for subject, event_type, key, version, payload in events:
            envelope = Envelope(
                subject=subject, event_id=new_event_id(), event_type=event_type, schema_version=1,
                aggregate_type=event_type, aggregate_key=key, aggregate_version=version,
                occurred_at=datetime.now(UTC), payload=payload,
            )  # fmt: skip
            await js.publish(subject, payload, headers=envelope.headers())
    finally:
        await nc.close()


def availability(
    sku: str, location: str, version: int, ats: dict[str, int]
) -> tuple[str, str, str, int, bytes]:
    event = inventory_events.AvailabilityChanged(
        sku=sku, location_id=location, version=version, on_hand=sum(ats.values()),
        channels=[inventory_events.ChannelAvailableToSell(channel_id=c, available_to_sell=n)
                  for c, n in ats.items()],
    )  # fmt: skip
    return (event_subject("inventory", "availability_changed", sku, location),
            "retail.inventory.v1.AvailabilityChanged", f"{sku}/{location}", version,
            event.SerializeToString())  # fmt: skip


def price_changed(sku: str, version: int) -> tuple[str, str, str, int, bytes]:
    event = pricing_events.PriceChanged(sku=sku, version=version)
    return (event_subject("pricing", "price_changed", sku), "retail.pricing.v1.PriceChanged", sku, version,
            event.SerializeToString())  # fmt: skip
