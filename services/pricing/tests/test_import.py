"""CSV import into a draft change set (real Postgres): row-numbered errors, nothing kept, idempotent."""

from __future__ import annotations

import pytest

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_pricing.domain.errors import BadInputError
from retail_pricing.handlers import imports
from retail_pricing.handlers import price_lists as pl
from retail_pricing.handlers import products as products_h
from retail_pricing.testing import price_list, product

HEADER = "price_list_id,sku,amount,currency_code,start_time,end_time,min_quantity\n"


async def stream(data: bytes, request_id: str = "imp", size: int = 13):
    for i in range(0, max(len(data), 1), size):
        yield pb.ImportPriceEntriesRequest(request_id=request_id if i == 0 else "", data=data[i : i + size])


async def seed(deps) -> None:
    await products_h.batch_upsert_products(
        deps,
        pb.BatchUpsertProductsRequest(request_id="p", products=[product("A"), product("OFF", active=False)]),
    )
    await pl.create_price_list(deps, pb.CreatePriceListRequest(request_id="l", price_list=price_list("base")))


async def fields_of(deps, text: str) -> list[str]:
    with pytest.raises(BadInputError) as caught:
        await imports.import_price_entries(deps, stream(text.encode()))
    return [v.subject for v in caught.value.violations]


async def test_every_bad_row_is_reported_with_its_row_number_and_nothing_is_kept(deps, acting, pool) -> None:
    await seed(deps)
    text = HEADER + (
        "base,A,1.00,EUR,2030-01-01T00:00:00Z,,\n"  # row 2: fine
        "nope,A,1.00,EUR,2030-01-01T00:00:00Z,,\n"  # row 3
        "base,A,1.00,USD,2030-01-01T00:00:00Z,,\n"  # row 4
        "base,ZZ,1.00,EUR,2030-01-01T00:00:00Z,,\n"  # row 5
        "base,OFF,1.00,EUR,2030-01-01T00:00:00Z,,\n"  # row 6
        "base,A,-1,EUR,2030-01-01T00:00:00Z,,\n"  # row 7
        "base,A,1.0000000001,EUR,2030-01-01T00:00:00Z,,\n"  # row 8
        "base,A,1.00,EUR,yesterday,,\n"  # row 9
        "base,A,1.00,EUR,2030-01-01T00:00:00Z,2029-01-01T00:00:00Z,\n"  # row 10
        "base,A,1.00,EUR,2030-01-01T00:00:00Z,2031-01-01T00:00:00,\n"  # row 11: local end, absolute start
        "base,A,1.00,EUR,2030-01-01T00:00:00Z,,0\n"  # row 12
        "base,A,1.00,EUR,2030-01-01T00:00:00Z,,x\n"  # row 13
    )
    assert await fields_of(deps, text) == [
        "rows[3].price_list_id",
        "rows[4].currency_code",
        "rows[5].sku",
        "rows[6].sku",
        "rows[7].amount",
        "rows[8].amount",
        "rows[9].start_time",
        "rows[10].end_time",
        "rows[11].end_time",
        "rows[12].min_quantity",
        "rows[13].min_quantity",
    ]
    assert await pool.fetchval("select count(*) from change_sets") == 0
    assert await pool.fetchval("select count(*) from change_set_items") == 0


async def test_malformed_line_and_impossible_dates_are_refused(deps, acting) -> None:
    await seed(deps)
    assert await fields_of(deps, HEADER + "base,A,1.00,EUR,2030-01-01T00:00:00Z,,\nbase,A,1.00\n") == [
        "rows[3]"
    ]
    impossible = (
        "base,A,1.00,EUR,2030-01-01T00:00:00Z,,\n"
        "base,A,1.00,EUR,2030-02-30T00:00:00Z,,\n"  # row 3: February has no 30th
        "base,A,1.00,EUR,2030-01-01T00:00:00,2030-04-31T00:00:00,\n"  # row 4: nor April a 31st
        "base,A,1.00,EUR,2030-01-01T00:00:00+99:99,,\n"  # row 5: no such offset
    )
    assert await fields_of(deps, HEADER + impossible) == [
        "rows[3].start_time",
        "rows[4].end_time",
        "rows[5].start_time",
    ]
    assert await fields_of(deps, "sku,amount\nA,1\n") == ["rows[1]", "rows[1]", "rows[1]"]


async def test_import_creates_draft_items_in_file_order_and_retry_returns_the_same_change_set(
    deps, acting, pool
) -> None:
    await seed(deps)
    text = (
        HEADER
        + "base,A,1.00,EUR,2030-01-01T00:00:00Z,2030-02-01T00:00:00Z,\n"
        + "base,A,2.50,EUR,2030-03-01T00:00:00,,5\n"
    )
    first = await imports.import_price_entries(deps, stream(text.encode()))
    again = await imports.import_price_entries(deps, stream(text.encode(), size=7))
    assert first.row_count == 2
    assert again == first
    rows = await pool.fetch(
        "select position, amount, start_abs, start_local, min_quantity"
        " from change_set_items order by position"
    )
    assert [
        (
            r["position"],
            str(r["amount"]),
            r["start_abs"] is not None,
            r["start_local"] is not None,
            r["min_quantity"],
        )
        for r in rows
    ] == [
        (0, "1.00", True, False, 1),
        (1, "2.50", False, True, 5),
    ]
    assert await pool.fetchval("select count(*) from change_sets") == 1


async def product_stream(batches, request_id: str = "erp-1"):
    for i, batch in enumerate(batches):
        yield pb.ImportProductsRequest(request_id=request_id if i == 0 else "", products=batch)


async def test_product_import_is_all_or_nothing_and_names_the_bad_product_by_stream_position(
    deps, acting, pool
) -> None:
    good = [[product(f"P{i}") for i in range(3)], [product(f"P{i}") for i in range(3, 6)]]
    bad = [good[0], [product("P3"), product("bad sku")]]
    with pytest.raises(BadInputError) as caught:
        await products_h.import_products(deps, product_stream(bad))
    assert [v.subject for v in caught.value.violations] == ["products[4].sku"]
    assert await pool.fetchval("select count(*) from products") == 0

    first = await products_h.import_products(deps, product_stream(good))
    assert (first.received_count, first.changed_count) == (6, 6)
    assert await products_h.import_products(deps, product_stream(good)) == first  # retry: first answer
    events = await pool.fetchval(
        "select count(*) from outbox where event_type = 'retail.pricing.v1.ProductUpserted'"
    )
    assert events == 6


async def test_items_of_a_large_change_set_are_read_page_by_page(deps, acting) -> None:
    from retail_pricing.handlers import change_sets as cs

    await seed(deps)
    rows = "".join(f"base,A,{i}.00,EUR,203{i}-01-01T00:00:00Z,203{i}-06-01T00:00:00Z,\n" for i in range(5))
    imported = await imports.import_price_entries(deps, stream((HEADER + rows).encode()))
    amounts, token = [], ""
    while True:
        page = await cs.list_change_set_items(
            deps,
            pb.ListChangeSetItemsRequest(
                change_set_id=imported.change_set.change_set_id, page_size=2, page_token=token
            ),
        )
        amounts += [item.add_entry.amount.units for item in page.items]
        token = page.next_page_token
        if not token:
            break
    assert amounts == [0, 1, 2, 3, 4]
    assert imported.change_set.item_count == 5
