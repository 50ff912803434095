"""The import's direct path (screen + COPY into change_set_items, real Postgres) against the staging
path: it never keeps a row the report refuses, writes the same items when both take a file, and any
refusal, at any point of the stream, falls back to the staging path with nothing kept twice."""

from __future__ import annotations

import tempfile
import uuid

import pytest

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_pricing.domain.csv_lines import LineScreen, WindowStyle, number_lines
from retail_pricing.domain.errors import BadInputError
from retail_pricing.handlers import imports

from .conftest import rolled_back
from .test_import import HEADER
from .test_import_paths import CASES as STAGING_CASES
from .test_import_paths import COLUMNS, GOOD

ITEMS = (
    "select kind, price_list_id, sku, coalesce(min_quantity, 1) as q, amount::text, start_abs, end_abs,"
    " start_local, end_local from change_set_items where change_set_id = $1 order by position"
)

# One cell changed from GOOD per case: the staging path's parity cases, plus values only the COPY or the
# checks after it can refuse (an offset out of range, a day the month lacks, a window ending at its
# start, unknown references).
CASES: list[tuple[str, str]] = [
    *STAGING_CASES,
    ("start_time", "2030-01-01T00:00+99"),
    ("start_time", "2030-02-30T00:00:00Z"),
    ("end_time", "2029-12-31T23:00:00-02:00"),
    ("sku", "ZZ"),
    ("sku", "A "),
]


def _stream(body: bytes, size: int = 1 << 20) -> imports._Stream:
    async def rest():
        for i in range(size, len(body), size):
            yield pb.ImportPriceEntriesRequest(data=body[i : i + size])

    return imports._Stream(pb.ImportPriceEntriesRequest(request_id="r", data=body[:size]), rest())


async def _direct(pool, body: bytes, size: int = 1 << 20):
    """The items the direct path kept, or None."""
    change_set_id = uuid.uuid4()
    async with rolled_back(pool) as conn:
        with tempfile.TemporaryFile() as spool:
            count = await imports._copy_directly(conn, change_set_id, COLUMNS, _stream(body, size), spool)
        assert await conn.fetchval("show enable_nestloop") == "on"  # the check's settings are undone
        items = await conn.fetch(ITEMS, change_set_id)
        if count is None:
            assert items == []  # a refusal keeps nothing
            return None
        assert count == len(items)
        return items


async def _through_staging(pool, body: bytes):
    """(items or None, report subjects) of the staging path for the same data."""
    change_set_id = uuid.uuid4()
    async with rolled_back(pool) as conn:
        with tempfile.TemporaryFile() as spool:
            try:
                await imports._copy_through_staging(conn, change_set_id, COLUMNS, _stream(body), spool)
            except BadInputError as refused:
                return None, [v.subject for v in refused.violations]
        return await conn.fetch(ITEMS, change_set_id), []


def _csv(rows: list[list[str]]) -> bytes:
    return "".join(",".join(row) + "\n" for row in rows).encode()


@pytest.mark.parametrize(("column", "value"), CASES)
async def test_direct_path_keeps_no_row_the_report_refuses_and_the_same_items_as_staging(
    seeded, pool, column: str, value: str
) -> None:
    row = list(GOOD)
    row[COLUMNS.index(column)] = value
    body = _csv([GOOD, row])
    direct = await _direct(pool, body)
    staged, report = await _through_staging(pool, body)
    if direct is not None:
        assert report == [], f"the direct path kept {value!r} in {column}, the report refuses it"
        assert direct == staged
    else:
        assert staged is not None or set(report) == {f"rows[3].{column}"}


async def test_a_good_file_takes_the_direct_path_whatever_the_chunking(seeded, pool) -> None:
    rows = [
        ["base", "A", f"{i}.50", "EUR", f"2030-01-{1 + i % 28:02d}T00:00:00+01:00", "", str(1 + i % 3)]
        for i in range(300)
    ]
    body = _csv(rows)
    whole = await _direct(pool, body)
    assert whole is not None
    assert len(whole) == 300
    for size in (1, 7, 64, 1000):
        chunked = await _direct(pool, body, size)
        assert chunked == whole
    assert [r["amount"] for r in whole] == [f"{i}.50" for i in range(300)]  # file order
    assert [r["q"] for r in whole] == [1 + i % 3 for i in range(300)]


async def test_crlf_lines_and_a_missing_last_newline_take_the_direct_path(seeded, pool) -> None:
    body = b"base,A,1.00,EUR,2030-01-01 10:00,2030-01-02 10:00,\r\nbase,A,2.00,EUR,2030-02-01 10:00,,2"
    items = await _direct(pool, body, size=5)
    assert items is not None
    assert [(r["amount"], r["q"], r["start_abs"], r["end_local"] is not None) for r in items] == [
        ("1.00", 1, None, True),
        ("2.00", 2, None, False),
    ]


async def _requests(request_id: str, data: bytes, size: int = 4096):
    for i in range(0, len(data), size):
        yield pb.ImportPriceEntriesRequest(request_id=request_id if i == 0 else "", data=data[i : i + size])


@pytest.mark.parametrize(
    ("late", "reported"),
    [
        (["base", "A", "9.00", "EUR", "2030-06-01 00:00", "", ""], None),  # local after absolute windows
        (["base", "A", "9.00", "EUR", "2030-06-01T00:00:00Z", "", "0"], "min_quantity"),  # the screen
        (["base", "A", "9.00", "EUR", "2030-06-31T00:00:00Z", "", ""], "start_time"),  # the COPY's cast
        (["base", "A", "9.00", "EUR", "2030-06-01T00:00:00Z", "2030-05-01T00:00:00Z", ""], "end_time"),
        (["base", "ZZ", "9.00", "EUR", "2030-06-01T00:00:00Z", "", ""], "sku"),  # the reference check
    ],
)
async def test_a_refusal_late_in_the_stream_replays_the_whole_file_once(
    seeded, deps, pool, late: list[str], reported: str | None
) -> None:
    body = (HEADER.encode() + _csv([GOOD] * 500 + [late] + [GOOD] * 20)).replace(b"\n", b"\r\n")
    if reported is None:  # the staging path imports it: every row once, in file order
        done = await imports.import_price_entries(deps, _requests("late", body, size=997))
        assert done.row_count == 521
        rows = await pool.fetch("select amount::text from change_set_items order by position")
        assert [r["amount"] for r in rows] == ["1.00"] * 500 + ["9.00"] + ["1.00"] * 20
    else:  # the report's row number would be off if a chunk were spooled twice or lost
        with pytest.raises(BadInputError) as caught:
            await imports.import_price_entries(deps, _requests("late", body, size=997))
        assert [v.subject for v in caught.value.violations] == [f"rows[502].{reported}"]
        assert await pool.fetchval("select count(*) from change_set_items") == 0


async def test_import_falls_back_to_the_report_for_rows_only_the_database_refuses(seeded, deps, pool) -> None:
    good = "base,A,1.00,EUR,2030-01-01T00:00:00Z,,\n"
    body = HEADER + good * 3000 + "base,ZZ,1.00,EUR,2030-01-01T00:00:00Z,,\n" + good * 10
    body += "base,A,1.00,EUR,2030-02-30T00:00:00Z,,\n"

    with pytest.raises(BadInputError) as caught:
        await imports.import_price_entries(deps, _requests("bad", body.encode()))
    assert [v.subject for v in caught.value.violations] == ["rows[3002].sku", "rows[3013].start_time"]
    assert await pool.fetchval("select count(*) from change_set_items") == 0
    assert await pool.fetchval("select count(*) from change_sets") == 0
    # the corrected file imports directly (the stated currency is only kept by the direct path)
    done = await imports.import_price_entries(deps, _requests("good", (HEADER + good * 3011).encode()))
    assert done.row_count == 3011
    assert await pool.fetchval("select count(*) from change_set_items where currency_code = 'EUR'") == 3011


def test_screen_fixes_the_window_style_on_the_first_block() -> None:
    screen = LineScreen(COLUMNS)
    assert screen.passes(b"base,A,1,EUR,2030-01-01T00:00Z,,\n")
    assert screen.style is WindowStyle.ABSOLUTE
    assert screen.item_columns()[4:6] == ["start_abs", "end_abs"]
    assert not screen.passes(b"base,A,1,EUR,2030-01-01T00:00,,\n")
    assert not LineScreen(COLUMNS).passes(b'"base",A,1,EUR,2030-01-01T00:00Z,,\n')
    assert not LineScreen(COLUMNS).passes(b"base,A,1,EUR,2030-01-01T00:00Z,\n")  # a cell short
    assert number_lines(b"a\nb\r\n", b"x,", 7) == (b"x,7,a\nx,8,b\r\n", 9)


async def test_an_oversized_message_mid_copy_refuses_the_import_and_keeps_nothing(seeded, deps, pool) -> None:
    good = _csv([GOOD] * 100)

    async def requests():
        yield pb.ImportPriceEntriesRequest(request_id="big", data=HEADER.encode() + good)
        yield pb.ImportPriceEntriesRequest(data=good)  # the direct COPY is under way
        yield pb.ImportPriceEntriesRequest(data=b"x" * (imports.MAX_MESSAGE_DATA + 1))

    with pytest.raises(BadInputError) as caught:
        await imports.import_price_entries(deps, requests())
    assert [v.subject for v in caught.value.violations] == ["data"]
    assert await pool.fetchval("select count(*) from change_set_items") == 0
    assert await pool.fetchval("select count(*) from change_sets") == 0


async def test_columns_in_any_order_and_optional_ones_left_out_take_the_direct_path(
    seeded, deps, pool
) -> None:
    header = "sku,start_time,currency_code,price_list_id,amount\n"
    body = header + "A,2030-01-01T00:00:00+02:00,EUR,base,1.25\nA,2030-02-01T00:00:00Z,EUR,base,2\n"
    done = await imports.import_price_entries(deps, _requests("perm", body.encode(), size=11))
    assert done.row_count == 2
    rows = await pool.fetch(
        "select position, price_list_id, sku, amount::text, coalesce(min_quantity, 1) as q, start_abs,"
        " end_abs, currency_code from change_set_items order by position"
    )
    assert [(r["position"], r["sku"], r["amount"], r["q"], r["end_abs"]) for r in rows] == [
        (0, "A", "1.25", 1, None),
        (1, "A", "2", 1, None),
    ]
    assert [r["start_abs"].isoformat() for r in rows] == [
        "2029-12-31T22:00:00+00:00",
        "2030-02-01T00:00:00+00:00",
    ]
    assert {r["currency_code"] for r in rows} == {"EUR"}  # kept only by the direct path
