"""Amounts for pushed price changes: list and reference price from pricing, sale price from active
promotions, in the channel's currency, resolved for the channel (and each location the change names)
right before delivery, so the channel receives the price that is effective when it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from retail.channel.v1 import changes_pb2
from retail.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc, resolution_pb2
from retail_channel_gateway.domain.money import round_money, to_money
from retail_channel_gateway.downstream import call
from retail_channel_gateway.facade import PromotionSource

__all__ = ["PriceComposer"]


class PriceComposer:
    def __init__(self, pricing: grpc.aio.Channel, promotions: PromotionSource, timeout: float) -> None:
        self._pricing = pricing_service_pb2_grpc.PricingServiceStub(pricing)
        self._promotions = promotions
        self._timeout = timeout

    async def compose(
        self, channel_id: str, currency: str, changes: Sequence[changes_pb2.ChannelChange]
    ) -> None:
        """Fill the amounts of the batch's price changes in place. A PriceUpdate naming locations gets the
        amounts of its first location (a channel sees one price per SKU and location list); raises on a
        dependency failure (the caller retries the batch later without blaming the channel)."""
        updates = [c.price for c in changes if c.WhichOneof("body") == "price"]
        if not updates:
            return
        queries = [
            resolution_pb2.PriceQuery(sku=u.sku, currency_code=currency, channel_id=channel_id,
                                      location_id=u.location_ids[0] if u.location_ids else "", quantity=1)
            for u in updates
        ]  # fmt: skip
        by_location: dict[str, list[str]] = {}
        for u in updates:
            by_location.setdefault(u.location_ids[0] if u.location_ids else "", []).append(u.sku)
        request = pricing_service_pb2.BatchResolvePricesRequest(queries=queries)
        pending = self._pricing.BatchResolvePrices(request, timeout=self._timeout)
        prices_task = asyncio.ensure_future(call(pending, "pricing"))
        try:
            sales = await asyncio.gather(
                *(
                    self._promotions.sale_prices(channel_id, location, currency, skus, self._timeout)
                    for location, skus in by_location.items()
                )
            )
        except BaseException:
            prices_task.cancel()
            raise
        prices = await prices_task
        sale_of = {
            (location, sku): sale
            for location, found in zip(by_location, sales, strict=True)
            for sku, sale in found.items()
        }
        for update, result in zip(updates, prices.results, strict=True):
            if not result.HasField("price"):
                continue  # no price in this scope (e.g. inactive product): the change says so by omission
            price = result.price
            update.list_price.CopyFrom(price.price.gross)
            update.sale_price.CopyFrom(price.price.gross)
            if price.HasField("reference_price"):
                update.reference_price.CopyFrom(price.reference_price.gross)
            sale = sale_of.get((update.location_ids[0] if update.location_ids else "", update.sku))
            if sale is not None:
                update.sale_price.CopyFrom(to_money(round_money(sale.amount, currency), currency))
