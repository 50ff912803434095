"""gRPC stubs of the four services for the scenario's three kinds of caller: the author (operator), the
approver (a second operator) and each channel (its own API key, through the gateway only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from pydantic import SecretStr

from retail.channel.v1 import channel_gateway_service_pb2_grpc, channel_operations_service_pb2_grpc
from retail.inventory.v1 import inventory_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2_grpc
from retail_common.grpcx import connect

if TYPE_CHECKING:  # the async stub types exist only in the generated .pyi
    from retail.channel.v1.channel_gateway_service_pb2_grpc import ChannelGatewayServiceAsyncStub
    from retail.channel.v1.channel_operations_service_pb2_grpc import ChannelOperationsServiceAsyncStub
    from retail.inventory.v1.inventory_service_pb2_grpc import InventoryServiceAsyncStub
    from retail.pricing.v1.pricing_service_pb2_grpc import PricingServiceAsyncStub
    from retail.promotion.v1.promotion_service_pb2_grpc import PromotionServiceAsyncStub

__all__ = ["Caller", "Clients"]


class Caller:
    """One identity's stubs of every service."""

    def __init__(
        self, targets: dict[str, str], credential: SecretStr, opened: list[grpc.aio.Channel]
    ) -> None:
        def channel(service: str) -> grpc.aio.Channel:
            ch = connect(targets[service], credential=credential, default_timeout=30.0)
            opened.append(ch)
            return ch

        self.pricing: PricingServiceAsyncStub = pricing_service_pb2_grpc.PricingServiceStub(
            channel("pricing")
        )
        self.inventory: InventoryServiceAsyncStub = inventory_service_pb2_grpc.InventoryServiceStub(
            channel("inventory-reservation")
        )
        self.promotion: PromotionServiceAsyncStub = promotion_service_pb2_grpc.PromotionServiceStub(
            channel("promotion")
        )
        gateway = channel("channel-gateway")
        self.operations: ChannelOperationsServiceAsyncStub = (
            channel_operations_service_pb2_grpc.ChannelOperationsServiceStub(gateway)
        )
        self.gateway: ChannelGatewayServiceAsyncStub = (
            channel_gateway_service_pb2_grpc.ChannelGatewayServiceStub(gateway)
        )


class Clients:
    def __init__(self, targets: dict[str, str], operator: SecretStr, approver: SecretStr) -> None:
        self._targets = targets
        self._opened: list[grpc.aio.Channel] = []
        self.author = Caller(targets, operator, self._opened)
        self.approver = Caller(targets, approver, self._opened)
        self._channels: dict[str, ChannelGatewayServiceAsyncStub] = {}

    def add_channel_key(self, channel_id: str, api_key: str) -> None:
        ch = connect(self._targets["channel-gateway"], credential=SecretStr(api_key), default_timeout=30.0)
        self._opened.append(ch)
        self._channels[channel_id] = channel_gateway_service_pb2_grpc.ChannelGatewayServiceStub(ch)

    def channel(self, channel_id: str) -> ChannelGatewayServiceAsyncStub:
        """The gateway as the channel system itself sees it (its own API key)."""
        return self._channels[channel_id]

    async def close(self) -> None:
        for ch in self._opened:
            await ch.close(None)
