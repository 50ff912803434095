"""ListAuditRecords through the shared audit_page, and one idempotency key across all pricing methods."""

from __future__ import annotations

import pytest

from retail.common.v1 import principal_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.errors import InvalidArgument
from retail_pricing.handlers import price_lists as pl
from retail_pricing.handlers import products as products_h
from retail_pricing.handlers import resolution as res
from retail_pricing.testing import price_list, product

LIST = "retail.pricing.v1.PriceList"


async def test_audit_records_carry_the_principal_kind_and_page(deps, acting) -> None:
    await pl.create_price_list(
        deps, pb.CreatePriceListRequest(request_id="l1", price_list=price_list("base"))
    )
    await pl.create_price_list(deps, pb.CreatePriceListRequest(request_id="l2", price_list=price_list("b2b")))
    listed = await res.list_audit_records(deps, pb.ListAuditRecordsRequest(entity_type=LIST))
    assert [(r.entity_key, r.principal_id) for r in listed.records] == [("b2b", "alice"), ("base", "alice")]
    assert {r.principal_kind for r in listed.records} == {principal_pb2.PRINCIPAL_KIND_OPERATOR}
    assert listed.records[0].after["price_list_id"] == "b2b"
    first = await res.list_audit_records(deps, pb.ListAuditRecordsRequest(entity_type=LIST, page_size=1))
    assert [r.entity_key for r in first.records] == ["b2b"]
    second = await res.list_audit_records(
        deps, pb.ListAuditRecordsRequest(entity_type=LIST, page_size=1, page_token=first.next_page_token)
    )
    assert [r.entity_key for r in second.records] == ["base"]
    one = await res.list_audit_records(deps, pb.ListAuditRecordsRequest(entity_type=LIST, entity_key="base"))
    assert [r.entity_key for r in one.records] == ["base"]


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (pb.ListAuditRecordsRequest(page_size=-1), "page_size"),
        (pb.ListAuditRecordsRequest(page_token="not-a-token"), "page_token"),
        (pb.ListAuditRecordsRequest(entity_key="base"), "entity_key"),
    ],
)
async def test_bad_audit_requests_name_the_field(deps, acting, request_, named) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await res.list_audit_records(deps, request_)
    assert [v.field for v in caught.value.violations] == [named]


async def test_a_request_id_is_one_key_across_all_methods(deps, acting, pool) -> None:
    request = pb.CreatePriceListRequest(request_id="k", price_list=price_list("base"))
    first = await pl.create_price_list(deps, request)
    assert await pl.create_price_list(deps, request) == first  # retry: the first answer
    for call in (
        pl.create_price_list(deps, pb.CreatePriceListRequest(request_id="k", price_list=price_list("b2b"))),
        products_h.batch_upsert_products(
            deps, pb.BatchUpsertProductsRequest(request_id="k", products=[product("A")])
        ),
    ):
        with pytest.raises(InvalidArgument) as caught:
            await call
        assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
        assert [v.field for v in caught.value.violations] == ["request_id"]

    async def stream():
        yield pb.ImportProductsRequest(request_id="k", products=[product("A")])

    with pytest.raises(InvalidArgument) as streamed:
        await products_h.import_products(deps, stream())
    assert streamed.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert await pool.fetchval("select count(*) from products") == 0
    assert await pool.fetchval("select count(*) from request_idempotency where scope = 'pricing'") == 1
