"""Promotion composition through the promotion service (PROMOTION_TARGET): sale prices of single units
from GetActivePromotions, cart quotes from EvaluateCart (which takes its prices from pricing itself)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from retail.channel.v1 import offers_pb2
from retail.promotion.v1 import evaluation_pb2, promotion_service_pb2, promotion_service_pb2_grpc
from retail_channel_gateway.domain.money import from_money
from retail_channel_gateway.downstream import call
from retail_channel_gateway.facade import SalePrice

__all__ = ["PromotionClient"]


class PromotionClient:
    applied = True

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = promotion_service_pb2_grpc.PromotionServiceStub(channel)

    async def sale_prices(
        self,
        channel_id: str,
        location_id: str,
        currency: str,
        skus: Sequence[str],
        deadline_seconds: float,
    ) -> dict[str, SalePrice]:
        if not skus:
            return {}
        request = promotion_service_pb2.GetActivePromotionsRequest(
            skus=sorted(set(skus)),
            scope=evaluation_pb2.CartScope(channel_id=channel_id, location_id=location_id),
            currency_code=currency,
        )
        response = await call(self._stub.GetActivePromotions(request, timeout=deadline_seconds), "promotion")
        out = {}
        for item in response.skus:
            if item.promotions and item.HasField("sale_unit_price"):
                ids = tuple(p.promotion_id for p in item.promotions)
                out[item.sku] = SalePrice(amount=from_money(item.sale_unit_price), promotion_ids=ids)
        return out

    async def evaluate_cart(
        self,
        channel_id: str,
        location_id: str,
        currency: str,
        lines: Sequence[offers_pb2.CartLine],
        codes: Sequence[str],
        segment: str,
        deadline_seconds: float,
    ) -> offers_pb2.CartQuote | None:
        request = promotion_service_pb2.EvaluateCartRequest(
            scope=evaluation_pb2.CartScope(
                channel_id=channel_id, location_id=location_id, customer_segment=segment
            ),
            currency_code=currency,
            lines=[evaluation_pb2.CartLine(sku=line.sku, quantity=line.quantity) for line in lines],
            codes=list(codes),
        )
        response = await call(self._stub.EvaluateCart(request, timeout=deadline_seconds), "promotion")
        quote = offers_pb2.CartQuote(promotions_applied=True)
        for line in response.lines:
            quote.lines.append(
                offers_pb2.QuotedLine(
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    line_total=line.final_amount,
                    discount=line.discount,
                    promotion_ids=[a.promotion_id for a in line.adjustments],
                )
            )
        quote.subtotal.CopyFrom(response.totals.subtotal)
        quote.discount_total.CopyFrom(response.totals.discount)
        quote.total.CopyFrom(response.totals.total)
        return quote
