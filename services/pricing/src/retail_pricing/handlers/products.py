"""BatchUpsertProducts, GetProduct, ListProducts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import Connection, claim_request, store_response, transaction
from retail_pricing import events
from retail_pricing.convert import product_from_proto, product_to_proto
from retail_pricing.domain.errors import BadInputError, NotFoundError, Violation
from retail_pricing.domain.products import MAX_BATCH, validate_product
from retail_pricing.handlers.common import (
    IDEMPOTENCY_SCOPE,
    Deps,
    audit,
    decode_page_token,
    encode_page_token,
    page_size,
    raise_if,
    run_idempotent,
    stream_fingerprint,
)
from retail_pricing.repository import products as repo

__all__ = ["batch_upsert_products", "get_product", "import_products", "list_products"]


class _ReplayError(Exception):
    """A retried stream: roll back what it did again and answer with the first response."""

    def __init__(self, response: pb.ImportProductsResponse) -> None:
        self.response = response


async def batch_upsert_products(
    deps: Deps, request: pb.BatchUpsertProductsRequest
) -> pb.BatchUpsertProductsResponse:
    if not 1 <= len(request.products) <= MAX_BATCH:
        raise BadInputError([Violation("products", f"1 to {MAX_BATCH} products")])
    problems: list[Violation] = []
    products = [product_from_proto(p, f"products[{i}]", problems) for i, p in enumerate(request.products)]
    for i, product in enumerate(products):
        problems += validate_product(product, f"products[{i}]")
    seen: set[str] = set()
    for i, product in enumerate(products):
        if product.sku in seen:
            problems.append(Violation(f"products[{i}].sku", "duplicate in this request"))
        seen.add(product.sku)
    raise_if(problems)

    async def body(conn: Connection) -> pb.BatchUpsertProductsResponse:
        changed = await repo.upsert_products(conn, products, deps.clock.now())
        announced = []
        for stored, before in changed:
            after_proto = product_to_proto(stored)
            await audit(
                conn,
                "BatchUpsertProducts",
                "retail.pricing.v1.Product",
                stored.sku,
                None if before is None else product_to_proto(before),
                after_proto,
            )
            announced.append(after_proto)
        await events.product_upserted_many(deps.writer, conn, announced)
        current = await repo.get_products(conn, [p.sku for p in products])
        return pb.BatchUpsertProductsResponse(products=[product_to_proto(current[p.sku]) for p in products])

    response = await run_idempotent(
        deps, "BatchUpsertProducts", request.request_id, request, pb.BatchUpsertProductsResponse, body
    )
    deps.catalog.invalidate_skus(p.sku for p in products)
    return response


async def import_products(
    deps: Deps, requests: AsyncIterator[pb.ImportProductsRequest]
) -> pb.ImportProductsResponse:
    first = await anext(aiter(requests), None)
    if first is None or not first.request_id:
        raise BadInputError([Violation("request_id", "required in the first message")])
    digest = hashlib.sha256()
    received = changed = 0
    touched: list[str] = []

    async def messages() -> AsyncIterator[pb.ImportProductsRequest]:
        yield first
        async for request in requests:
            yield request

    try:
        async with transaction(deps.pool) as conn:
            seen: set[str] = set()
            async for message in messages():
                if len(message.products) > MAX_BATCH:
                    raise BadInputError([Violation("products", f"at most {MAX_BATCH} per message")])
                digest.update(message.SerializeToString(deterministic=True))
                problems: list[Violation] = []
                batch = []
                for proto in message.products:
                    path = f"products[{received}]"
                    item = product_from_proto(proto, path, problems)
                    problems += validate_product(item, path)
                    if item.sku in seen:
                        problems.append(Violation(f"{path}.sku", "duplicate in this stream"))
                    seen.add(item.sku)
                    batch.append(item)
                    received += 1
                raise_if(problems)
                announced = []
                for stored, before in await repo.upsert_products(conn, batch, deps.clock.now()):
                    after = product_to_proto(stored)
                    before_proto = None if before is None else product_to_proto(before)
                    await audit(
                        conn, "ImportProducts", "retail.pricing.v1.Product", stored.sku, before_proto, after
                    )
                    announced.append(after)
                    touched.append(stored.sku)
                    changed += 1
                await events.product_upserted_many(deps.writer, conn, announced)
            replay = await claim_request(
                conn,
                scope=IDEMPOTENCY_SCOPE,
                request_id=first.request_id,
                fingerprint=stream_fingerprint("ImportProducts", digest.hexdigest()),
            )
            if replay is not None:
                raise _ReplayError(pb.ImportProductsResponse.FromString(replay))
            response = pb.ImportProductsResponse(received_count=received, changed_count=changed)
            await store_response(
                conn, scope=IDEMPOTENCY_SCOPE, request_id=first.request_id, response=response
            )
    except _ReplayError as replay:
        return replay.response
    deps.catalog.invalidate_skus(touched)
    return response


async def get_product(deps: Deps, request: pb.GetProductRequest) -> pb.GetProductResponse:
    async with deps.pool.acquire() as conn:
        found = await repo.get_products(conn, [request.sku])
    product = found.get(request.sku)
    if product is None:
        raise NotFoundError("retail.pricing.v1.Product", request.sku)
    return pb.GetProductResponse(product=product_to_proto(product))


async def list_products(deps: Deps, request: pb.ListProductsRequest) -> pb.ListProductsResponse:
    size = page_size(request.page_size)
    after = decode_page_token(request.page_token)
    async with deps.pool.acquire() as conn:
        rows = await repo.list_products(conn, after, size + 1)
    token = encode_page_token(rows[size - 1].sku) if len(rows) > size else ""
    return pb.ListProductsResponse(products=[product_to_proto(p) for p in rows[:size]], next_page_token=token)
