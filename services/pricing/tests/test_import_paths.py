"""The CSV import's two SQL paths agree (real Postgres): the one-statement fast path never accepts a row
the detailed report refuses, and writes the same items as the report-then-insert path."""

from __future__ import annotations

import uuid

import pytest

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_pricing.domain.errors import BadInputError
from retail_pricing.handlers import imports
from retail_pricing.repository import imports as staging

from .conftest import rolled_back

COLUMNS = ["price_list_id", "sku", "amount", "currency_code", "start_time", "end_time", "min_quantity"]
GOOD = ["base", "A", "1.00", "EUR", "2030-01-01T00:00:00Z", "", ""]
ITEM_COLUMNS = (
    "position, price_list_id, sku, min_quantity, amount::text, start_abs, end_abs, start_local, end_local"
)

# One cell changed from GOOD per case: values both paths accept, and values the report refuses (the
# fast path must refuse them too); some are accepted by the report but not by the fast path (01.50).
CASES: list[tuple[str, str]] = [
    ("amount", "0"),
    ("amount", "01.50"),
    ("amount", "123456789012345678.123456789"),
    ("amount", "1234567890123456789"),
    ("amount", "1e5"),
    ("amount", "+1"),
    ("amount", " 1"),
    ("amount", "-0"),
    ("amount", "NaN"),
    ("amount", "Infinity"),
    ("amount", "1."),
    ("amount", ".5"),
    ("amount", "1.0000000001"),
    ("start_time", "2030-01-01 00:00"),
    ("start_time", "2030-01-01T00:00:00.123456+01:00"),
    ("start_time", "2030-01-01T00:00:00.1234567Z"),
    ("start_time", "2030-01-01T00:00-0530"),
    ("start_time", "2030-01-01T00:00+05"),
    ("start_time", "2030-01-01T24:00:00Z"),
    ("start_time", "2030-01-01T23:59:60Z"),
    ("start_time", "2030-01-01T00:60:00Z"),
    ("start_time", "2030-13-01T00:00:00Z"),
    ("start_time", "2030-00-10T00:00:00Z"),
    ("start_time", "2030-01-01t00:00:00z"),
    ("start_time", "2030-01-01T00:00:00 PST"),
    ("start_time", "2030-01-01T00:00:00 Europe/Berlin"),
    ("start_time", "yesterday"),
    ("start_time", "epoch"),
    ("start_time", "20300101T000000Z"),
    ("end_time", "2030-01-01T00:00:01Z"),
    ("end_time", "2030-01-01T00:00:00Z"),
    ("end_time", "2030-01-02T00:00:00"),
    ("end_time", "infinity"),
    ("min_quantity", "1"),
    ("min_quantity", "05"),
    ("min_quantity", "0"),
    ("min_quantity", "+5"),
    ("min_quantity", "5.0"),
    ("min_quantity", "9999999999999999999"),
    ("currency_code", "USD"),
    ("currency_code", "eur"),
    ("sku", "OFF"),
    ("sku", "a"),
    ("price_list_id", "BASE"),
]


def _csv(rows: list[list[str]]) -> bytes:
    return "".join(",".join(f'"{c}"' if c else "" for c in row) + "\n" for row in rows).encode()


async def _source(data: bytes):
    yield data


@pytest.mark.parametrize(("column", "value"), CASES)
async def test_fast_path_accepts_no_row_the_report_refuses_and_writes_the_same_items(
    seeded, pool, column: str, value: str
) -> None:
    row = list(GOOD)
    row[COLUMNS.index(column)] = value
    change_set_id = uuid.uuid4()
    async with rolled_back(pool) as conn:
        await staging.create_staging(conn)
        staged, problems = await staging.copy_rows(conn, COLUMNS, _source(_csv([GOOD, row])))
        assert (staged, problems) == (2, [])
        fast = await staging.insert_if_all_valid(conn, change_set_id, staged)
        fast_items = await conn.fetch(f"select {ITEM_COLUMNS} from change_set_items order by position")
        assert await conn.fetchval("show enable_nestloop") == "on"  # the path's settings are undone
        report = await staging.validate_rows(conn)
        if fast is not None:
            assert report == [], f"the fast path accepted {value!r} in {column}, the report refuses it"
            assert fast == 2
        elif not report:
            await conn.execute("delete from change_set_items")
            assert await staging.insert_items(conn, change_set_id) == 2
            fast_items = []
        else:
            assert {v.subject for v in report} == {f"rows[3].{column}"}
        if fast is not None or not report:
            slow = await conn.fetch(f"select {ITEM_COLUMNS} from change_set_items order by position")
            assert len(slow) == 2
            if fast_items:
                assert fast_items == slow


async def test_fast_path_and_report_path_write_identical_items(seeded, pool) -> None:
    rows = [
        GOOD,
        ["base", "A", "2.5", "EUR", "2030-02-01 10:00", "2030-03-01 10:00:00.5", "3"],
        ["base", "A", "0.000000001", "EUR", "2030-04-01T00:00:00+01:00", "2030-05-01T00:00-0200", ""],
    ]
    got = []
    for fast in (True, False):
        async with rolled_back(pool) as conn:
            await staging.create_staging(conn)
            staged, _ = await staging.copy_rows(conn, COLUMNS, _source(_csv(rows)))
            if fast:
                assert await staging.insert_if_all_valid(conn, uuid.uuid4(), staged) == 3
            else:
                assert await staging.validate_rows(conn) == []
                assert await staging.insert_items(conn, uuid.uuid4()) == 3
            got.append(await conn.fetch(f"select {ITEM_COLUMNS} from change_set_items order by position"))
    assert got[0] == got[1]


async def test_a_bad_row_late_in_a_large_file_is_named_and_nothing_is_kept(seeded, deps, pool) -> None:
    lines = [",".join(COLUMNS)] + [
        f"base,A,{i}.00,EUR,2030-01-01T00:00:00Z,,"
        if i != 4321
        else "base,A,1.00,EUR,2030-01-01T00:00:00Z,,0"
        for i in range(5000)
    ]
    data = ("\n".join(lines) + "\n").encode()

    async def stream():
        for first in range(0, len(data), 4096):
            yield pb.ImportPriceEntriesRequest(
                request_id="big" if first == 0 else "", data=data[first : first + 4096]
            )

    with pytest.raises(BadInputError) as caught:
        await imports.import_price_entries(deps, stream())
    assert [v.subject for v in caught.value.violations] == ["rows[4323].min_quantity"]
    assert await pool.fetchval("select count(*) from change_sets") == 0
    assert await pool.fetchval("select count(*) from change_set_items") == 0
    # the request id stays free: the corrected file can be sent with it
    assert await pool.fetchval("select count(*) from request_idempotency where request_id = 'big'") == 0
