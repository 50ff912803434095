"""Set-based CSV import: COPY the file into a staging table, validate in SQL, insert the items at once."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable, Sequence

import asyncpg

from retail_common.db import Connection
from retail_pricing.domain.errors import Violation

__all__ = [
    "MAX_REPORTED",
    "copy_rows",
    "create_staging",
    "insert_if_all_valid",
    "insert_items",
    "validate_rows",
]

MAX_REPORTED = 100
# ISO 8601 date-time as accepted by the import; an offset (Z or +hh:mm) makes it an absolute instant.
_TIME = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
_OFFSET = r"(Z|[+-]\d{2}(:?\d{2})?)$"
_LINE = re.compile(r"line (\d+)")


async def create_staging(conn: Connection) -> None:
    # Row 1 is the header, so data rows are numbered from 2 in file order (COPY keeps the order).
    await conn.execute(
        """
        create temp table import_rows (
            n bigint generated always as identity (start with 2),
            price_list_id text, sku text, amount text, currency_code text, start_time text,
            end_time text, min_quantity text
        ) on commit drop
        """
    )


async def copy_rows(
    conn: Connection, columns: Sequence[str], source: AsyncIterable[bytes]
) -> list[Violation]:
    """COPY the data rows (CSV without header); a malformed line is reported with its row number."""
    try:
        async with conn.transaction():  # savepoint: report the problem instead of aborting the caller
            await conn.copy_to_table("import_rows", source=source, columns=list(columns), format="csv")
    except (asyncpg.DataError, asyncpg.BadCopyFileFormatError, asyncpg.InvalidTextRepresentationError) as exc:
        where = _LINE.search(str(getattr(exc, "context", "") or exc))
        row = f"rows[{int(where.group(1)) + 1}]" if where else "data"
        return [Violation(row, f"malformed CSV: {exc}")]
    return []


_CHECKS = f"""
select n, field, message from (
    select r.n, 'price_list_id' as field, 'unknown price list ' || quote_literal(r.price_list_id) as message
        from import_rows r left join price_lists l using (price_list_id) where l.price_list_id is null
    union all
    select r.n, 'currency_code', 'must be the list''s currency ' || l.currency
        from import_rows r join price_lists l using (price_list_id)
        where r.currency_code is distinct from l.currency
    union all
    select r.n, 'sku', case when p.sku is null then 'unknown SKU ' else 'inactive SKU ' end
        || quote_literal(coalesce(r.sku, ''))
        from import_rows r left join products p using (sku)
        where p.sku is null or p.status <> 'active'
    union all
    select n, 'amount', 'must be a non-negative decimal with at most 9 fraction digits'
        from import_rows where amount is null or amount !~ '^\\d{{1,18}}(\\.\\d{{1,9}})?$'
    union all
    select n, 'start_time', 'must be an ISO 8601 date-time'
        from import_rows where start_time is null or start_time !~ ('{_TIME}' || '({_OFFSET})?$')
    union all
    select n, 'end_time', 'must be an ISO 8601 date-time'
        from import_rows where end_time <> '' and end_time !~ ('{_TIME}' || '({_OFFSET})?$')
    union all
    select n, 'end_time', 'must have an offset exactly when start_time has one'
        from import_rows where end_time <> '' and (end_time ~ '{_OFFSET}') <> (start_time ~ '{_OFFSET}')
    union all
    select n, 'min_quantity', 'must be an integer >= 1'
        from import_rows
        where min_quantity <> ''
          and case when min_quantity ~ '^\\d{{1,18}}$' then min_quantity::numeric < 1 else true end
) problems
order by n, field
limit {MAX_REPORTED}
"""

_WELL_FORMED = f"""
    start_time ~ ('{_TIME}' || '({_OFFSET})?$') and end_time ~ ('{_TIME}' || '({_OFFSET})?$')
    and (end_time ~ '{_OFFSET}') = (start_time ~ '{_OFFSET}')"""

# Casts every well-formed time (offsets dropped: only the calendar date and clock are checked here).
_DATES_CHECK = f"""
select count(regexp_replace(start_time, '{_OFFSET}', '')::timestamp)
     + count(regexp_replace(nullif(end_time, ''), '{_OFFSET}', '')::timestamp)
from import_rows where start_time ~ ('{_TIME}' || '({_OFFSET})?$')
  and (coalesce(end_time, '') = '' or end_time ~ ('{_TIME}' || '({_OFFSET})?$'))
"""

_ORDER_CHECK = f"""
select n from (select * from import_rows where end_time <> '' and {_WELL_FORMED}) r
where case when start_time ~ '{_OFFSET}' then end_time::timestamptz <= start_time::timestamptz
           else end_time::timestamp <= start_time::timestamp end
order by n limit {MAX_REPORTED}
"""


async def validate_rows(conn: Connection) -> list[Violation]:
    """Every bad row (up to MAX_REPORTED), as "rows[N].<column>" field violations."""
    found = [(r["n"], r["field"], r["message"]) for r in await conn.fetch(_CHECKS)]
    try:
        async with conn.transaction():
            rows = await conn.fetch(_ORDER_CHECK)
            await conn.fetchval(_DATES_CHECK)
    except asyncpg.DataError as exc:  # a well-formed but impossible date (e.g. 2030-02-30)
        return [Violation("rows", f"invalid date-time: {exc}")]
    found += [(r["n"], "end_time", "must be after start_time") for r in rows]
    found.sort()
    return [Violation(f"rows[{n}].{field}", message) for n, field, message in found[:MAX_REPORTED]]


_ABS = "(right({c}, 1) = 'Z' or strpos(substr({c}, 17), '+') > 0 or strpos(substr({c}, 17), '-') > 0)"
# Cheap shape checks only (no regex: it dominated the cost); a value Postgres cannot cast fails the
# statement, and any failure sends the import to validate_rows for the detailed report.
_SHAPE = "(length({c}) between 16 and 35 and substr({c}, 5, 1) = '-' and substr({c}, 11, 1) in ('T', ' '))"
_FAST_INSERT = f"""
insert into change_set_items (change_set_id, position, kind, price_list_id, sku, min_quantity, amount,
                              start_abs, end_abs, start_local, end_local)
select $1, (r.n - 2)::integer, 'add', r.price_list_id, r.sku, coalesce(nullif(r.min_quantity, '')::bigint, 1),
       r.amount::numeric,
       case when r.abs then r.start_time::timestamptz end,
       case when r.abs then nullif(r.end_time, '')::timestamptz end,
       case when not r.abs then r.start_time::timestamp end,
       case when not r.abs then nullif(r.end_time, '')::timestamp end
from (select *, {_ABS.format(c="start_time")} as abs, {_ABS.format(c="end_time")} as end_abs
      from import_rows) r
join price_lists l on l.price_list_id = r.price_list_id and l.currency = r.currency_code
join products p on p.sku = r.sku and p.status = 'active'
where r.amount::numeric >= 0 and r.amount::numeric < 'Infinity' and r.amount::numeric <> 'NaN'
  and scale(r.amount::numeric) <= 9
  and {_SHAPE.format(c="r.start_time")}
  and (coalesce(r.end_time, '') = ''
       or ({_SHAPE.format(c="r.end_time")} and r.end_abs = r.abs
           and case when r.abs then r.end_time::timestamptz > r.start_time::timestamptz
                    else r.end_time::timestamp > r.start_time::timestamp end))
  and (coalesce(r.min_quantity, '') = '' or r.min_quantity::bigint >= 1)
"""


class _SomeRowIsBadError(Exception):
    pass


async def insert_if_all_valid(conn: Connection, change_set_id: uuid.UUID) -> int | None:
    """The fast path for a good file: one INSERT ... SELECT with every check in it. None when some row
    is bad (a cast failed or a row was filtered out): nothing is kept, run validate_rows for the report."""
    try:
        async with conn.transaction():
            # Hash joins over the whole file instead of one index probe per row (the filter's selectivity
            # estimate would otherwise make the planner pick nested loops).
            await conn.execute("analyze import_rows; set local enable_nestloop = off")
            status = await conn.execute(_FAST_INSERT, change_set_id)
            inserted = int(status.split()[-1])
            if inserted != await conn.fetchval("select count(*) from import_rows"):
                raise _SomeRowIsBadError
    except (asyncpg.DataError, _SomeRowIsBadError):
        return None
    return inserted


async def insert_items(conn: Connection, change_set_id: uuid.UUID) -> int:
    status = await conn.execute(
        f"""
        insert into change_set_items (change_set_id, position, kind, price_list_id, sku, min_quantity, amount,
                                      start_abs, end_abs, start_local, end_local)
        select $1, (n - 2)::integer, 'add', price_list_id, sku,
               coalesce(nullif(min_quantity, '')::bigint, 1), amount::numeric,
               case when abs then start_time::timestamptz end,
               case when abs then nullif(end_time, '')::timestamptz end,
               case when not abs then start_time::timestamp end,
               case when not abs then nullif(end_time, '')::timestamp end
        from (select *, start_time ~ '{_OFFSET}' as abs from import_rows) r
        order by n
        """,
        change_set_id,
    )
    return int(status.split()[-1])
