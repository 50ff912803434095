"""Calls to the services promotion depends on: unit prices and products from pricing, available-to-sell
and threshold rules from inventory. Behind small protocols so the application layer can be tested
with in-memory stand-ins; the gRPC implementations carry the service credential (ServiceContext)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import grpc

from retail.inventory.v1 import (
    availability_pb2,
    inventory_service_pb2,
    inventory_service_pb2_grpc,
    threshold_pb2,
)
from retail.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc, products_pb2, resolution_pb2
from retail_common.errors import Unavailable
from retail_promotion.convert import money_from_proto, timestamp

__all__ = [
    "GrpcInventory",
    "GrpcPricing",
    "Inventory",
    "PriceAnswer",
    "PriceQuery",
    "Pricing",
    "ProductAnswer",
    "RegisteredRule",
]

_TAX_EXCLUDED = 2  # retail.common.v1.TAX_TREATMENT_EXCLUDED


@dataclass(frozen=True)
class PriceQuery:
    sku: str
    currency: str
    channel_id: str
    location_id: str
    segment: str
    quantity: int
    at: datetime


@dataclass(frozen=True)
class PriceAnswer:
    """A unit price, or why there is none ("NOT_FOUND" / "FAILED_PRECONDITION" ...)."""

    unit_price: Decimal | None
    error_code: str = ""
    error: str = ""


@dataclass(frozen=True)
class ProductAnswer:
    sku: str
    exists: bool
    active: bool


class Pricing(Protocol):
    async def resolve(self, queries: Sequence[PriceQuery]) -> list[PriceAnswer]: ...

    async def product(self, sku: str) -> ProductAnswer: ...


@dataclass(frozen=True)
class RegisteredRule:
    """A campaign-owned threshold rule as inventory created it."""

    rule_id: str
    sku: str
    location_id: str
    channel_id: str
    below: bool  # already BELOW at creation (no crossing event will announce it)
    version: int


@dataclass(frozen=True)
class RuleTarget:
    """One campaign-owned threshold rule to register, with its idempotency key."""

    request_id: str
    sku: str
    location_id: str
    channel_id: str


# BatchCreateThresholdRules takes at most 1,000 rules per call (one inventory transaction each).
_RULES_PER_CALL = 1000
# A full batch is one bulk transaction at inventory: on a loaded machine it outlasted the channel's
# 10 s default deadline. Rules are idempotent by request_id, so a retried launch repeats nothing.
_RULES_CALL_TIMEOUT_SECONDS = 60.0


class Inventory(Protocol):
    async def available(self, channel_id: str, pairs: Sequence[tuple[str, str]]) -> list[int]: ...

    async def create_campaign_rules(
        self, campaign_id: str, below: int, rules: Sequence[RuleTarget]
    ) -> list[RegisteredRule]: ...

    async def delete_rule(self, request_id: str, rule_id: str) -> None: ...


def _unavailable(what: str, error: grpc.aio.AioRpcError) -> Unavailable:
    return Unavailable(f"{what} unavailable: {error.code().name}")


class GrpcPricing:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = pricing_service_pb2_grpc.PricingServiceStub(channel)

    async def resolve(self, queries: Sequence[PriceQuery]) -> list[PriceAnswer]:
        out: list[PriceAnswer] = []
        for start in range(0, len(queries), 1000):
            chunk = queries[start : start + 1000]
            request = pricing_service_pb2.BatchResolvePricesRequest(
                queries=[
                    resolution_pb2.PriceQuery(
                        sku=q.sku,
                        currency_code=q.currency,
                        channel_id=q.channel_id,
                        location_id=q.location_id,
                        customer_segment=q.segment,
                        quantity=q.quantity,
                        at_time=timestamp(q.at),
                    )
                    for q in chunk
                ]
            )
            try:
                response = await self._stub.BatchResolvePrices(request)
            except grpc.aio.AioRpcError as error:
                raise _unavailable("pricing", error) from error
            for result in response.results:
                if result.WhichOneof("result") == "price":
                    price = result.price
                    excluded = price.price_list.tax_treatment == _TAX_EXCLUDED
                    amount = price.price.net if excluded else price.price.gross
                    out.append(PriceAnswer(money_from_proto(amount)))
                else:
                    out.append(PriceAnswer(None, result.error.code, result.error.message))
        return out

    async def product(self, sku: str) -> ProductAnswer:
        try:
            response = await self._stub.GetProduct(pricing_service_pb2.GetProductRequest(sku=sku))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return ProductAnswer(sku, False, False)
            raise _unavailable("pricing", error) from error
        return ProductAnswer(sku, True, response.product.status == products_pb2.PRODUCT_STATUS_ACTIVE)


class GrpcInventory:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = inventory_service_pb2_grpc.InventoryServiceStub(channel)

    async def available(self, channel_id: str, pairs: Sequence[tuple[str, str]]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(pairs), 1000):
            request = inventory_service_pb2.BatchGetAvailabilityRequest(
                channel_id=channel_id,
                totals_only=True,
                queries=[
                    inventory_service_pb2.AvailabilityQuery(
                        sku=sku, scope=availability_pb2.AvailabilityScope(location_id=location)
                    )
                    for sku, location in pairs[start : start + 1000]
                ],
            )
            try:
                response = await self._stub.BatchGetAvailability(request)
            except grpc.aio.AioRpcError as error:
                raise _unavailable("inventory", error) from error
            out.extend(a.available_to_sell for a in response.availabilities)
        return out

    async def create_campaign_rules(
        self, campaign_id: str, below: int, rules: Sequence[RuleTarget]
    ) -> list[RegisteredRule]:
        out: list[RegisteredRule] = []
        for start in range(0, len(rules), _RULES_PER_CALL):
            chunk = rules[start : start + _RULES_PER_CALL]
            request = inventory_service_pb2.BatchCreateThresholdRulesRequest(
                requests=[
                    inventory_service_pb2.CreateThresholdRuleRequest(
                        request_id=r.request_id,
                        rule=threshold_pb2.ThresholdRule(
                            sku=r.sku,
                            location_id=r.location_id,
                            channel_id=r.channel_id,
                            owner=threshold_pb2.ThresholdOwner(campaign_id=campaign_id),
                            absolute=threshold_pb2.AbsoluteThreshold(below_quantity=below),
                        ),
                    )
                    for r in chunk
                ]
            )
            try:
                response = await self._stub.BatchCreateThresholdRules(
                    request, timeout=_RULES_CALL_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as error:
                raise _unavailable("inventory", error) from error
            out.extend(
                RegisteredRule(
                    created.rule_id,
                    r.sku,
                    r.location_id,
                    r.channel_id,
                    created.state == threshold_pb2.THRESHOLD_STATE_BELOW,
                    created.version,
                )
                for r, created in zip(chunk, response.rules, strict=True)
            )
        return out

    async def delete_rule(self, request_id: str, rule_id: str) -> None:
        try:
            await self._stub.DeleteThresholdRule(
                inventory_service_pb2.DeleteThresholdRuleRequest(request_id=request_id, rule_id=rule_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:  # already gone is what we want
                raise _unavailable("inventory", error) from error
