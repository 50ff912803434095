"""The channel façade's calls to pricing and inventory (promotion: see PromotionSource), with deadlines
and the gateway's service credential (ServiceContext.channel). Prices always come from pricing.

Promotion composition goes through `PromotionSource`: `promotions.PromotionClient` when PROMOTION_TARGET
is set (GetActivePromotions for sale prices, EvaluateCart for quotes), else `NoPromotions`, which applies
none and says so (`promotions_applied = false`): never a made-up price.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.type import money_pb2

from retail.channel.v1 import offers_pb2
from retail.inventory.v1 import (
    availability_pb2,
    inventory_service_pb2,
    inventory_service_pb2_grpc,
    reservation_pb2,
)
from retail.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc, resolution_pb2
from retail_channel_gateway.domain.money import from_money, round_money, to_money
from retail_channel_gateway.downstream import call
from retail_channel_gateway.offer_cache import OfferCache
from retail_common.errors import NotFound

__all__ = ["Facade", "NoPromotions", "PromotionSource", "SalePrice"]


@dataclass(frozen=True)
class SalePrice:
    amount: Decimal
    promotion_ids: tuple[str, ...]


class PromotionSource(Protocol):
    """Sale prices and cart evaluation; `applied` says whether promotions were consulted at all."""

    applied: bool

    async def sale_prices(
        self,
        channel_id: str,
        location_id: str,
        currency: str,
        skus: Sequence[str],
        deadline_seconds: float,
    ) -> dict[str, SalePrice]: ...

    async def evaluate_cart(
        self,
        channel_id: str,
        location_id: str,
        currency: str,
        lines: Sequence[offers_pb2.CartLine],
        codes: Sequence[str],
        segment: str,
        deadline_seconds: float,
    ) -> offers_pb2.CartQuote | None: ...


class NoPromotions:
    """No promotion service configured: nothing applied, and responses say so."""

    applied = False

    async def sale_prices(
        self,
        channel_id: str,
        location_id: str,
        currency: str,
        skus: Sequence[str],
        deadline_seconds: float,
    ) -> dict[str, SalePrice]:
        return {}

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
        return None


@functools.lru_cache(maxsize=4096)
def _sale_money(amount: Decimal, currency: str) -> money_pb2.Money:
    """The rounded sale price on the wire; cached because the same few prices repeat on every call
    (callers only copy from it)."""
    return to_money(round_money(amount, currency), currency)


class Facade:
    def __init__(
        self,
        pricing: grpc.aio.Channel,
        inventory: grpc.aio.Channel,
        promotions: PromotionSource,
        *,
        timeout: float = 2.0,
        cache: OfferCache | None = None,
    ) -> None:
        self._pricing = pricing_service_pb2_grpc.PricingServiceStub(pricing)
        self._inventory = inventory_service_pb2_grpc.InventoryServiceStub(inventory)
        self._promotions = promotions
        self.timeout = timeout
        self.cache = cache

    async def _prices(
        self, channel_id: str, location_id: str, currency: str, quantities: Sequence[tuple[str, int]]
    ) -> list[resolution_pb2.ResolvedPrice | None]:
        request = pricing_service_pb2.BatchResolvePricesRequest(
            queries=[
                resolution_pb2.PriceQuery(
                    sku=sku,
                    currency_code=currency,
                    channel_id=channel_id,
                    location_id=location_id,
                    quantity=qty,
                )
                for sku, qty in quantities
            ]
        )
        response = await call(self._pricing.BatchResolvePrices(request, timeout=self.timeout), "pricing")
        return [r.price if r.HasField("price") else None for r in response.results]

    async def _availability(self, channel_id: str, location_id: str, skus: Sequence[str]) -> list[int]:
        request = inventory_service_pb2.BatchGetAvailabilityRequest(
            channel_id=channel_id,
            queries=[
                inventory_service_pb2.AvailabilityQuery(
                    sku=sku, scope=availability_pb2.AvailabilityScope(location_id=location_id)
                )
                for sku in skus
            ],
            totals_only=True,
        )
        response = await call(
            self._inventory.BatchGetAvailability(request, timeout=self.timeout), "inventory"
        )
        return [a.available_to_sell for a in response.availabilities]

    async def offers(
        self,
        channel_id: str,
        location_id: str,
        currency: str,
        skus: Sequence[str],
        into: RepeatedCompositeFieldContainer[offers_pb2.Offer],
    ) -> None:
        """Append one offer per SKU to `into` (the response's field: no second copy of each offer)."""
        cache = self.cache
        if cache is not None and cache.usable:
            prices, ats, sales = await self._cached_components(cache, channel_id, location_id, currency, skus)
        else:
            # Independent (promotion takes its unit prices from pricing itself): one round trip.
            prices, ats, sales = await asyncio.gather(
                self._prices(channel_id, location_id, currency, [(sku, 1) for sku in skus]),
                self._availability(channel_id, location_id, skus),
                self._promotions.sale_prices(channel_id, location_id, currency, skus, self.timeout),
            )
        self._compose(location_id, currency, skus, prices, ats, sales, into)

    async def _cached_components(
        self, cache: OfferCache, channel_id: str, location_id: str, currency: str, skus: Sequence[str]
    ) -> tuple[list[resolution_pb2.ResolvedPrice | None], list[int], dict[str, SalePrice]]:
        """Each component from the cache; the misses of each fetched in one call per service, the
        calls concurrent, only for the components that miss."""
        now = cache.clock.now()
        price_keys = [(sku, location_id, channel_id, currency) for sku in skus]
        ats_keys = [(sku, location_id, channel_id) for sku in skus]
        price_hits, price_misses = cache.prices.lookup(price_keys, now)
        # without a promotion service there is no sale price to cache (NoPromotions answers nothing)
        sale_keys = price_keys if self._promotions.applied else []
        sale_hits, sale_misses = cache.sales.lookup(sale_keys, now)
        ats_hits, ats_misses = cache.ats.lookup(ats_keys, now)

        async def fetch_prices() -> None:
            with cache.prices.fetching() as token:
                got = await self._prices(channel_id, location_id, currency, [(k[0], 1) for k in price_misses])
                for key, price in zip(price_misses, got, strict=True):
                    price_hits[key] = price
                    cache.prices.store(key, price, token, now)

        async def fetch_sales() -> None:
            with cache.sales.fetching() as token:
                wanted = [k[0] for k in sale_misses]
                got = await self._promotions.sale_prices(
                    channel_id, location_id, currency, wanted, self.timeout
                )
                for key in sale_misses:
                    sale = got.get(key[0])
                    sale_hits[key] = sale
                    cache.sales.store(key, sale, token, now)

        async def fetch_ats() -> None:
            with cache.ats.fetching() as token:
                got = await self._availability(channel_id, location_id, [k[0] for k in ats_misses])
                for key, available in zip(ats_misses, got, strict=True):
                    ats_hits[key] = available
                    cache.ats.store(key, available, token, now)

        fetches = [
            fetch()
            for fetch, misses in (
                (fetch_prices, price_misses),
                (fetch_sales, sale_misses),
                (fetch_ats, ats_misses),
            )
            if misses
        ]
        if len(fetches) == 1:
            await fetches[0]
        elif fetches:
            await asyncio.gather(*fetches)
        sales = {key[0]: sale for key, sale in sale_hits.items() if sale is not None}
        return [price_hits[k] for k in price_keys], [ats_hits[k] for k in ats_keys], sales

    def _compose(
        self,
        location_id: str,
        currency: str,
        skus: Sequence[str],
        prices: Sequence[resolution_pb2.ResolvedPrice | None],
        ats: Sequence[int],
        sales: dict[str, SalePrice],
        into: RepeatedCompositeFieldContainer[offers_pb2.Offer],
    ) -> None:
        applied = self._promotions.applied
        for sku, price, available in zip(skus, prices, ats, strict=True):
            offer = into.add(
                sku=sku, location_id=location_id, available_to_sell=available, promotions_applied=applied
            )
            if price is not None:
                offer.list_price.CopyFrom(price.price.gross)
                sale = sales.get(sku)
                if sale is None:
                    offer.sale_price.CopyFrom(price.price.gross)
                else:
                    offer.sale_price.CopyFrom(_sale_money(sale.amount, currency))
                    offer.promotion_ids.extend(sale.promotion_ids)
                if price.HasField("reference_price"):
                    offer.reference_price.CopyFrom(price.reference_price.gross)
                if price.HasField("effective_since"):
                    offer.price_effective_time.CopyFrom(price.effective_since)

    async def quote(
        self,
        channel_id: str,
        location_id: str,
        currency: str,
        lines: Sequence[offers_pb2.CartLine],
        codes: Sequence[str] = (),
        segment: str = "",
    ) -> offers_pb2.CartQuote:
        """With promotions: the promotion service's evaluation (its prices come from pricing). Without:
        pricing's unit prices x quantities, rounded once per line."""
        evaluated = await self._promotions.evaluate_cart(
            channel_id, location_id, currency, lines, codes, segment, self.timeout
        )
        if evaluated is not None:
            return evaluated
        prices = await self._prices(
            channel_id, location_id, currency, [(line.sku, line.quantity) for line in lines]
        )
        missing = [line.sku for line, price in zip(lines, prices, strict=True) if price is None]
        if missing:
            raise NotFound("retail.pricing.v1.ResolvedPrice", ",".join(missing), "no price for SKU(s)")
        quote = offers_pb2.CartQuote(promotions_applied=self._promotions.applied)
        subtotal = Decimal(0)
        zero = to_money(Decimal(0), currency)
        for line, price in zip(lines, prices, strict=True):
            assert price is not None
            unit = from_money(price.price.gross)
            total = round_money(unit * line.quantity, currency)
            subtotal += total
            quote.lines.append(
                offers_pb2.QuotedLine(
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price=price.price.gross,
                    line_total=to_money(total, currency),
                    discount=zero,
                )
            )
        quote.subtotal.CopyFrom(to_money(subtotal, currency))
        quote.discount_total.CopyFrom(zero)
        quote.total.CopyFrom(to_money(subtotal, currency))
        return quote

    # ---------------------------------------------------------------------------------- reservations

    async def reserve(
        self, request: inventory_service_pb2.ReserveStockRequest
    ) -> reservation_pb2.Reservation:
        response = await call(self._inventory.ReserveStock(request, timeout=self.timeout), "inventory")
        return response.reservation

    async def _owned(self, channel_id: str, reservation_id: str) -> None:
        """Inventory trusts the gateway's service credential, so the gateway checks ownership itself."""
        got = await call(
            self._inventory.GetReservation(
                inventory_service_pb2.GetReservationRequest(reservation_id=reservation_id),
                timeout=self.timeout,
            ),
            "inventory",
        )
        if got.reservation.channel_id != channel_id:
            raise NotFound("retail.inventory.v1.Reservation", reservation_id)

    async def confirm(
        self, channel_id: str, request_id: str, reservation_id: str
    ) -> reservation_pb2.Reservation:
        await self._owned(channel_id, reservation_id)
        request = inventory_service_pb2.ConfirmReservationRequest(
            request_id=request_id, reservation_id=reservation_id
        )
        response = await call(self._inventory.ConfirmReservation(request, timeout=self.timeout), "inventory")
        return response.reservation

    async def release(
        self, channel_id: str, request_id: str, reservation_id: str
    ) -> reservation_pb2.Reservation:
        await self._owned(channel_id, reservation_id)
        request = inventory_service_pb2.ReleaseReservationRequest(
            request_id=request_id, reservation_id=reservation_id
        )
        response = await call(self._inventory.ReleaseReservation(request, timeout=self.timeout), "inventory")
        return response.reservation
