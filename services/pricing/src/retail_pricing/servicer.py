"""The gRPC adapter: each RPC hands its request to a handler and maps domain errors. Nothing else."""

# Method names are the RPC names grpc dispatches to.
# ruff: noqa: N802

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail.pricing.v1 import pricing_service_pb2_grpc
from retail_pricing.errors import to_grpc_error
from retail_pricing.handlers import change_sets, imports, price_lists, products, resolution, tax_rates
from retail_pricing.handlers.common import Deps

__all__ = ["PricingServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


async def _call(work: Awaitable[T]) -> T:
    try:
        return await work
    except Exception as exc:
        mapped = to_grpc_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


class PricingServicer(pricing_service_pb2_grpc.PricingServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def BatchUpsertProducts(
        self, request: pb.BatchUpsertProductsRequest, context: Context
    ) -> pb.BatchUpsertProductsResponse:
        return await _call(products.batch_upsert_products(self._deps, request))

    async def ImportProducts(
        self, request_iterator: AsyncIterator[pb.ImportProductsRequest], context: Context
    ) -> pb.ImportProductsResponse:
        return await _call(products.import_products(self._deps, request_iterator))

    async def GetProduct(self, request: pb.GetProductRequest, context: Context) -> pb.GetProductResponse:
        return await _call(products.get_product(self._deps, request))

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: Context
    ) -> pb.ListProductsResponse:
        return await _call(products.list_products(self._deps, request))

    async def CreatePriceList(
        self, request: pb.CreatePriceListRequest, context: Context
    ) -> pb.CreatePriceListResponse:
        return await _call(price_lists.create_price_list(self._deps, request))

    async def UpdatePriceList(
        self, request: pb.UpdatePriceListRequest, context: Context
    ) -> pb.UpdatePriceListResponse:
        return await _call(price_lists.update_price_list(self._deps, request))

    async def GetPriceList(
        self, request: pb.GetPriceListRequest, context: Context
    ) -> pb.GetPriceListResponse:
        return await _call(price_lists.get_price_list(self._deps, request))

    async def ListPriceLists(
        self, request: pb.ListPriceListsRequest, context: Context
    ) -> pb.ListPriceListsResponse:
        return await _call(price_lists.list_price_lists(self._deps, request))

    async def ListPriceEntries(
        self, request: pb.ListPriceEntriesRequest, context: Context
    ) -> pb.ListPriceEntriesResponse:
        return await _call(price_lists.list_price_entries(self._deps, request))

    async def SetTaxRate(self, request: pb.SetTaxRateRequest, context: Context) -> pb.SetTaxRateResponse:
        return await _call(tax_rates.set_tax_rate(self._deps, request))

    async def ListTaxRates(
        self, request: pb.ListTaxRatesRequest, context: Context
    ) -> pb.ListTaxRatesResponse:
        return await _call(tax_rates.list_tax_rates(self._deps, request))

    async def CreateChangeSet(
        self, request: pb.CreateChangeSetRequest, context: Context
    ) -> pb.CreateChangeSetResponse:
        return await _call(change_sets.create_change_set(self._deps, request))

    async def UpdateChangeSet(
        self, request: pb.UpdateChangeSetRequest, context: Context
    ) -> pb.UpdateChangeSetResponse:
        return await _call(change_sets.update_change_set(self._deps, request))

    async def GetChangeSet(
        self, request: pb.GetChangeSetRequest, context: Context
    ) -> pb.GetChangeSetResponse:
        return await _call(change_sets.get_change_set(self._deps, request))

    async def ListChangeSets(
        self, request: pb.ListChangeSetsRequest, context: Context
    ) -> pb.ListChangeSetsResponse:
        return await _call(change_sets.list_change_sets(self._deps, request))

    async def ListChangeSetItems(
        self, request: pb.ListChangeSetItemsRequest, context: Context
    ) -> pb.ListChangeSetItemsResponse:
        return await _call(change_sets.list_change_set_items(self._deps, request))

    async def PreviewChangeSet(
        self, request: pb.PreviewChangeSetRequest, context: Context
    ) -> pb.PreviewChangeSetResponse:
        return await _call(change_sets.preview_change_set(self._deps, request))

    async def SubmitChangeSet(
        self, request: pb.SubmitChangeSetRequest, context: Context
    ) -> pb.SubmitChangeSetResponse:
        return await _call(change_sets.submit_change_set(self._deps, request))

    async def ApproveChangeSet(
        self, request: pb.ApproveChangeSetRequest, context: Context
    ) -> pb.ApproveChangeSetResponse:
        return await _call(change_sets.approve_change_set(self._deps, request))

    async def RejectChangeSet(
        self, request: pb.RejectChangeSetRequest, context: Context
    ) -> pb.RejectChangeSetResponse:
        return await _call(change_sets.reject_change_set(self._deps, request))

    async def RevertChangeSet(
        self, request: pb.RevertChangeSetRequest, context: Context
    ) -> pb.RevertChangeSetResponse:
        return await _call(change_sets.revert_change_set(self._deps, request))

    async def ImportPriceEntries(
        self, request_iterator: AsyncIterator[pb.ImportPriceEntriesRequest], context: Context
    ) -> pb.ImportPriceEntriesResponse:
        return await _call(imports.import_price_entries(self._deps, request_iterator))

    async def ResolvePrice(
        self, request: pb.ResolvePriceRequest, context: Context
    ) -> pb.ResolvePriceResponse:
        return await _call(resolution.resolve_price(self._deps, request))

    async def BatchResolvePrices(
        self, request: pb.BatchResolvePricesRequest, context: Context
    ) -> pb.BatchResolvePricesResponse:
        return await _call(resolution.batch_resolve_prices(self._deps, request))

    async def ExplainPrice(
        self, request: pb.ExplainPriceRequest, context: Context
    ) -> pb.ExplainPriceResponse:
        return await _call(resolution.explain_price(self._deps, request))

    async def GetPriceHistory(
        self, request: pb.GetPriceHistoryRequest, context: Context
    ) -> pb.GetPriceHistoryResponse:
        return await _call(resolution.get_price_history(self._deps, request))

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        return await _call(resolution.list_audit_records(self._deps, request))
