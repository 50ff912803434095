"""Amounts for pushed price changes: list and reference price from pricing, sale price from active
promotions, in the channel's currency, resolved for the channel and the one location each change is
presented for, right before delivery, so the channel receives the price that is effective when sent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from retail.channel.v1 import changes_pb2
from retail.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc, resolution_pb2
from retail_channel_gateway.domain.money import round_money, to_money
from retail_channel_gateway.downstream import call
from retail_channel_gateway.facade import PromotionSource, SalePrice

__all__ = ["PriceComposer"]

# Promotion answers one location per call: a batch of a store group's per-location entities asks for
# many locations at once, so bound how many calls are in flight.
_PROMOTION_CONCURRENCY = 16


def _location(update: changes_pb2.PriceUpdate, served: Sequence[str]) -> str | None:
    """The one location an update's amounts are for ("" = the channel as a whole); None when the update
    stands for several locations, which one amount cannot be right for. A channel-wide update is its
    one location's price when the channel serves one, and has no single price when it serves several."""
    if len(update.location_ids) > 1:
        return None
    if update.location_ids:
        return update.location_ids[0]
    if len(served) > 1:
        return None
    return served[0] if served else ""


class PriceComposer:
    def __init__(self, pricing: grpc.aio.Channel, promotions: PromotionSource, timeout: float) -> None:
        self._pricing = pricing_service_pb2_grpc.PricingServiceStub(pricing)
        self._promotions = promotions
        self._timeout = timeout

    async def compose(
        self,
        channel_id: str,
        currency: str,
        changes: Sequence[changes_pb2.ChannelChange],
        served: Sequence[str] = (),
    ) -> None:
        """Fill the amounts of the batch's price changes in place, each for its own location (one batched
        pricing call; one promotion call per location in the batch). `served`: the channel's locations.
        An update standing for several locations gets no amounts: never one location's price presented
        for another (projection gives such channels one entity per location; only rows projected before
        that, or before the channel served several locations, can stand for several).
        Raises on a dependency failure (the caller retries the batch later without blaming the channel)."""
        updates = []
        for change in changes:
            if change.WhichOneof("body") != "price":
                continue
            for field in ("list_price", "sale_price", "reference_price"):
                change.price.ClearField(field)  # a resent row may hold amounts composed earlier
            location = _location(change.price, served)
            if location is not None:
                updates.append((location, change.price))
        if not updates:
            return
        queries = [
            resolution_pb2.PriceQuery(
                sku=u.sku, currency_code=currency, channel_id=channel_id, location_id=location, quantity=1
            )
            for location, u in updates
        ]
        by_location: dict[str, list[str]] = {}
        for location, u in updates:
            by_location.setdefault(location, []).append(u.sku)
        request = pricing_service_pb2.BatchResolvePricesRequest(queries=queries)
        pending = self._pricing.BatchResolvePrices(request, timeout=self._timeout)
        prices_task = asyncio.ensure_future(call(pending, "pricing"))
        gate = asyncio.Semaphore(_PROMOTION_CONCURRENCY)

        async def sales_at(location: str, skus: list[str]) -> dict[str, SalePrice]:
            async with gate:
                return await self._promotions.sale_prices(channel_id, location, currency, skus, self._timeout)

        try:
            sales = await asyncio.gather(*(sales_at(loc, skus) for loc, skus in by_location.items()))
        except BaseException:
            prices_task.cancel()
            raise
        prices = await prices_task
        sale_of = {
            (location, sku): sale
            for location, found in zip(by_location, sales, strict=True)
            for sku, sale in found.items()
        }
        for (location, update), result in zip(updates, prices.results, strict=True):
            if not result.HasField("price"):
                continue  # no price in this scope (e.g. inactive product): the change says so by omission
            price = result.price
            update.list_price.CopyFrom(price.price.gross)
            update.sale_price.CopyFrom(price.price.gross)
            if price.HasField("reference_price"):
                update.reference_price.CopyFrom(price.reference_price.gross)
            sale = sale_of.get((location, update.sku))
            if sale is not None:
                update.sale_price.CopyFrom(to_money(round_money(sale.amount, currency), currency))
