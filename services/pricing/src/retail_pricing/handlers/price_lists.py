"""Price lists and their entries."""

from __future__ import annotations

from retail.pricing.v1 import events_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import Connection
from retail_pricing import events
from retail_pricing.convert import (
    entry_to_proto,
    price_list_from_proto,
    price_list_to_proto,
)
from retail_pricing.domain.errors import ConflictError, NotFoundError, RuleError, Violation
from retail_pricing.domain.model import PriceList
from retail_pricing.domain.preview import probes_for
from retail_pricing.handlers.common import (
    Deps,
    audit,
    decode_page_token,
    encode_page_token,
    page_size,
    raise_if,
    run_idempotent,
)
from retail_pricing.repository import entries as entries_repo
from retail_pricing.repository import price_lists as repo

__all__ = [
    "create_price_list",
    "get_price_list",
    "list_price_entries",
    "list_price_lists",
    "update_price_list",
]

ENTITY = "retail.pricing.v1.PriceList"


async def create_price_list(deps: Deps, request: pb.CreatePriceListRequest) -> pb.CreatePriceListResponse:
    problems: list[Violation] = []
    price_list, name = price_list_from_proto(request.price_list, "price_list", problems)
    raise_if(problems)

    async def body(conn: Connection) -> pb.CreatePriceListResponse:
        stored = await repo.insert_price_list(conn, price_list, name, deps.clock.now())
        if stored is None:
            raise RuleError("ALREADY_EXISTS", price_list.price_list_id, "a price list with this id exists")
        out = price_list_to_proto(stored)
        await audit(conn, "CreatePriceList", ENTITY, price_list.price_list_id, None, out)
        await events.price_list_upserted(deps.writer, conn, out)
        return pb.CreatePriceListResponse(price_list=out)

    response = await run_idempotent(
        deps, "CreatePriceList", request.request_id, request, pb.CreatePriceListResponse, body
    )
    deps.catalog.invalidate_config()
    return response


async def update_price_list(deps: Deps, request: pb.UpdatePriceListRequest) -> pb.UpdatePriceListResponse:
    problems: list[Violation] = []
    price_list, name = price_list_from_proto(request.price_list, "price_list", problems)
    if not request.price_list.etag.isdigit():
        problems.append(Violation("price_list.etag", "required (from the last read)"))
    raise_if(problems)

    async def body(conn: Connection) -> pb.UpdatePriceListResponse:
        before = await repo.get_price_list(conn, price_list.price_list_id, lock=True)
        if before is None:
            raise NotFoundError(ENTITY, price_list.price_list_id)
        if before.price_list.currency != price_list.currency:
            raise_if([Violation("price_list.currency_code", "cannot be changed")])
        if str(before.version) != request.price_list.etag:
            raise ConflictError(f"etag {request.price_list.etag} is stale; current is {before.version}")
        now = deps.clock.now()
        stored = await repo.update_price_list(conn, price_list, name, before.version, now)
        assert stored is not None
        out = price_list_to_proto(stored)
        await audit(
            conn, "UpdatePriceList", ENTITY, price_list.price_list_id, price_list_to_proto(before), out
        )
        await events.price_list_upserted(deps.writer, conn, out)
        if _affects_prices(before.price_list, price_list):
            # Every SKU of the list may resolve differently now, in the old and in the new scope.
            scopes = frozenset(probes_for(before.price_list)) | frozenset(probes_for(price_list))
            skus = await entries_repo.skus_of_list(conn, price_list.price_list_id)
            await events.price_changed_many(
                deps.writer,
                conn,
                [
                    events.PriceChange(sku, scopes, now, events_pb2.PRICE_CHANGE_CAUSE_CONFIGURATION)
                    for sku in skus
                ],
            )
        return pb.UpdatePriceListResponse(price_list=out)

    response = await run_idempotent(
        deps, "UpdatePriceList", request.request_id, request, pb.UpdatePriceListResponse, body
    )
    deps.catalog.invalidate_all()
    return response


def _affects_prices(before: PriceList, after: PriceList) -> bool:
    return (before.active, before.effective_priority, before.scope, before.tax_treatment) != (
        after.active,
        after.effective_priority,
        after.scope,
        after.tax_treatment,
    )


async def get_price_list(deps: Deps, request: pb.GetPriceListRequest) -> pb.GetPriceListResponse:
    async with deps.pool.acquire() as conn:
        stored = await repo.get_price_list(conn, request.price_list_id)
    if stored is None:
        raise NotFoundError(ENTITY, request.price_list_id)
    return pb.GetPriceListResponse(price_list=price_list_to_proto(stored))


async def list_price_lists(deps: Deps, request: pb.ListPriceListsRequest) -> pb.ListPriceListsResponse:
    size = page_size(request.page_size)
    async with deps.pool.acquire() as conn:
        rows = await repo.list_price_lists(conn, decode_page_token(request.page_token), size + 1)
    token = encode_page_token(rows[size - 1].price_list.price_list_id) if len(rows) > size else ""
    return pb.ListPriceListsResponse(
        price_lists=[price_list_to_proto(r) for r in rows[:size]], next_page_token=token
    )


async def list_price_entries(deps: Deps, request: pb.ListPriceEntriesRequest) -> pb.ListPriceEntriesResponse:
    size = page_size(request.page_size)
    raw = decode_page_token(request.page_token)
    if raw and not raw.isdigit():
        raise_if([Violation("page_token", "malformed")])
    async with deps.pool.acquire() as conn:
        stored = await repo.get_price_list(conn, request.price_list_id)
        if stored is None:
            raise NotFoundError(ENTITY, request.price_list_id)
        rows = await entries_repo.list_entries(
            conn, request.price_list_id, request.sku, int(raw or 0), size + 1
        )
    currency = stored.price_list.currency
    token = encode_page_token(str(rows[size - 1][0].entry_id)) if len(rows) > size else ""
    return pb.ListPriceEntriesResponse(
        entries=[entry_to_proto(e, currency, cs, at) for e, cs, at in rows[:size]], next_page_token=token
    )
