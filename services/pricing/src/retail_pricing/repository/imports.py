"""Set-based CSV import: the direct path, and the staging path with its row-numbered report.

Direct (`copy_items`, `references_known`): rows the service screened (domain/csv_lines.py) are COPYed
straight into `change_set_items`, the database casting each value and checking each window's order,
then one query checks the SKUs, lists and currencies. Any failure rolls it back and the import takes the
staging path.

Staging: the file is COPYed into a (temporary, unindexed, all-text) staging table, then one
INSERT ... SELECT into `change_set_items` casts every value once and checks every rule with cheap
expressions and hash joins (`insert_if_all_valid`). Only when that statement refuses some row does the
import run the detailed checks (`validate_rows`: regular expressions, one query per rule, row numbers);
they are stricter than or equal to the fast path, so a file the fast path refuses for a reason the report
does not know still imports, through `insert_items`.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence

import asyncpg

from retail_common.db import Connection
from retail_pricing.domain.errors import Violation

__all__ = [
    "MAX_REPORTED",
    "copy_items",
    "copy_rows",
    "create_staging",
    "insert_if_all_valid",
    "insert_items",
    "references_known",
    "validate_rows",
]

MAX_REPORTED = 100
# ISO 8601 date-time as accepted by the import; an offset (Z or +hh:mm) makes it an absolute instant.
_TIME = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
_OFFSET = r"(Z|[+-]\d{2}(:?\d{2})?)$"
_TIME_OR_LOCAL = f"'{_TIME}' || '({_OFFSET})?$'"
_LINE = re.compile(r"line (\d+)")


async def create_staging(conn: Connection) -> None:
    # Row 1 is the header, so data rows are numbered from 2 in file order (COPY keeps the order). The
    # identity caches its values: one sequence access per 10,000 rows instead of one per row.
    await conn.execute(
        """
        create temp table import_rows (
            n bigint generated always as identity (start with 2 cache 10000),
            price_list_id text, sku text, amount text, currency_code text, start_time text,
            end_time text, min_quantity text
        ) on commit drop
        """
    )


async def copy_rows(
    conn: Connection, columns: Sequence[str], source: AsyncIterable[bytes]
) -> tuple[int, list[Violation]]:
    """COPY the data rows (CSV without header): (rows copied, []), or a malformed line with its row
    number."""
    try:
        async with conn.transaction():  # savepoint: report the problem instead of aborting the caller
            status = await conn.copy_to_table(
                "import_rows", source=source, columns=list(columns), format="csv"
            )
    except (asyncpg.DataError, asyncpg.BadCopyFileFormatError, asyncpg.InvalidTextRepresentationError) as exc:
        where = _LINE.search(str(getattr(exc, "context", "") or exc))
        row = f"rows[{int(where.group(1)) + 1}]" if where else "data"
        return 0, [Violation(row, f"malformed CSV: {exc}")]
    return int(status.split()[-1]), []


@contextlib.asynccontextmanager
async def _hash_joins_in_memory(conn: Connection) -> AsyncIterator[None]:
    """The statements inside plan whole-table checks as hash joins in memory (no nested loops, no merge
    joins, no spill to disk). The settings are reset after: SET LOCAL outlives a released savepoint and
    would last to the end of the import's transaction. (If a statement fails, the transaction or
    savepoint it aborts is rolled back, and the settings with it.)"""
    await conn.execute(
        "set local enable_nestloop = off; set local enable_mergejoin = off; set local work_mem = '64MB'"
    )
    yield
    await conn.execute(
        "set local enable_nestloop to default; set local enable_mergejoin to default;"
        " set local work_mem to default"
    )


# --- the direct path ---------------------------------------------------------------------------------


async def copy_items(conn: Connection, columns: Sequence[str], source: AsyncIterable[bytes]) -> int:
    """COPY screened, numbered CSV rows into change_set_items (`columns` in line order). Raises
    asyncpg.DataError (a value that does not cast) or asyncpg.IntegrityConstraintViolationError (a window
    ending at or before its start)."""
    status = await conn.copy_to_table("change_set_items", source=source, columns=list(columns), format="csv")
    return int(status.split()[-1])


async def references_known(conn: Connection, change_set_id: uuid.UUID) -> bool:
    """Whether every item of the change set names an active SKU and a price list in its currency."""
    # Hash joins over the whole change set, in memory, instead of two index probes per row.
    async with _hash_joins_in_memory(conn):
        unknown = await conn.fetchval(
            """
            select exists (
                select 1 from change_set_items i
                left join products p on p.sku = i.sku and p.status = 'active'
                left join price_lists l on l.price_list_id = i.price_list_id and l.currency = i.currency_code
                where i.change_set_id = $1 and (p.sku is null or l.price_list_id is null)
            )
            """,
            change_set_id,
        )
    return not unknown


# --- the detailed report: one query per rule, every bad row with its number --------------------------

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
        from import_rows where start_time is null or start_time !~ ({_TIME_OR_LOCAL})
    union all
    select n, 'start_time', 'not a date-time that exists (e.g. a day the month does not have)'
        from import_rows where start_time ~ ({_TIME_OR_LOCAL}) and not pg_temp.import_time_ok(start_time)
    union all
    select n, 'end_time', 'must be an ISO 8601 date-time'
        from import_rows where end_time <> '' and end_time !~ ({_TIME_OR_LOCAL})
    union all
    select n, 'end_time', 'not a date-time that exists (e.g. a day the month does not have)'
        from import_rows where end_time ~ ({_TIME_OR_LOCAL}) and not pg_temp.import_time_ok(end_time)
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

# Whether a well-formed value is a real instant (2030-02-30 is not; neither is an offset of +99:99): a
# cast either works or raises, and plpgsql is the way to catch that per row on PostgreSQL 15 (no
# pg_input_is_valid). Only the report path calls it.
_TIME_OK_FUNCTION = f"""
create or replace function pg_temp.import_time_ok(t text) returns boolean language plpgsql immutable as $$
begin
    if t ~ '{_OFFSET}' then
        perform t::timestamptz;
    else
        perform t::timestamp;
    end if;
    return true;
exception when data_exception then
    return false;
end $$
"""

_ORDER_CHECK = f"""
select n from import_rows
where end_time <> '' and start_time ~ ({_TIME_OR_LOCAL}) and end_time ~ ({_TIME_OR_LOCAL})
  and (end_time ~ '{_OFFSET}') = (start_time ~ '{_OFFSET}')
  -- a CASE, not AND: the planner may evaluate ANDed conditions in any order, casts first
  and case when not (pg_temp.import_time_ok(start_time) and pg_temp.import_time_ok(end_time)) then false
           when start_time ~ '{_OFFSET}' then end_time::timestamptz <= start_time::timestamptz
           else end_time::timestamp <= start_time::timestamp end
order by n limit {MAX_REPORTED}
"""


async def validate_rows(conn: Connection) -> list[Violation]:
    """Every bad row (up to MAX_REPORTED), as "rows[N].<column>" field violations."""
    await conn.execute(_TIME_OK_FUNCTION)
    found = [(r["n"], r["field"], r["message"]) for r in await conn.fetch(_CHECKS)]
    found += [(r["n"], "end_time", "must be after start_time") for r in await conn.fetch(_ORDER_CHECK)]
    found.sort()
    return [Violation(f"rows[{n}].{field}", message) for n, field, message in found[:MAX_REPORTED]]


# --- the fast path: one statement for a good file ----------------------------------------------------


# Whether any row breaks a rule the report checks, with the report's own regular expressions, so the
# fast path is exactly as strict. Each distinct value of a column is checked and cast once (a file has few
# distinct windows, amounts and tiers: the expressions run a few hundred times, not once per row), all
# columns' distinct values from one scan (hashed grouping sets); SKUs are a hash anti-join with the active
# products. A value that matches but does not exist (2030-02-30) fails its cast, which sends the import
# to the report as well. Window order is checked by the insert itself.
_ANY_BAD_VALUE = f"""
select exists (
    select 1 from import_rows r left join products p on p.sku = r.sku and p.status = 'active'
    where p.sku is null
) or exists (
    select 1 from (
        select price_list_id, currency_code, amount, min_quantity, start_time, end_time,
               grouping(price_list_id, currency_code) = 0 as by_list, grouping(amount) = 0 as by_amount,
               grouping(min_quantity) = 0 as by_quantity, grouping(start_time) = 0 as by_start
        from import_rows
        group by grouping sets ((price_list_id, currency_code), (amount), (min_quantity), (start_time),
                                (end_time))
        offset 0
    ) d
    left join price_lists l
        on d.by_list and l.price_list_id = d.price_list_id and l.currency = d.currency_code
    where case when d.by_list then l.price_list_id is null
               when d.by_amount then d.amount is null or d.amount !~ '^\\d{{1,18}}(\\.\\d{{1,9}})?$'
               when d.by_quantity then
                   case when d.min_quantity is null or d.min_quantity = '' then false
                        when d.min_quantity !~ '^\\d{{1,18}}$' then true
                        else d.min_quantity::numeric < 1 end
               when d.by_start then
                   case when d.start_time is null or d.start_time = '' then true
                        when d.start_time !~ ({_TIME_OR_LOCAL}) then true
                        when d.start_time ~ '{_OFFSET}' then d.start_time::timestamptz is null
                        else d.start_time::timestamp is null end
               else
                   case when d.end_time is null or d.end_time = '' then false
                        when d.end_time !~ ({_TIME_OR_LOCAL}) then true
                        when d.end_time ~ '{_OFFSET}' then d.end_time::timestamptz is null
                        else d.end_time::timestamp is null end
          end
)
"""

# The items of a file without bad values: every value is well-formed, so the offset test can be cheap,
# and each cast runs once per row. A window ending at or before its start, or mixing an absolute and a
# local end, drops its row (the caller compares the count).
# (LIKE matches bytes; right()/strpos() count characters and cost several times more per row.)
_ABS = "({c} like '%Z' or {c} like '________________%+%' or {c} like '________________%-%')"
_FAST_INSERT = f"""
insert into change_set_items (change_set_id, position, kind, price_list_id, sku, min_quantity, amount,
                              start_abs, end_abs, start_local, end_local)
select $1, (n - 2)::integer, 'add', price_list_id, sku, coalesce(nullif(min_quantity, '')::bigint, 1),
       amount::numeric,
       case when abs then start_time::timestamptz end, case when abs then end_time::timestamptz end,
       case when not abs then start_time::timestamp end, case when not abs then end_time::timestamp end
from (select n, price_list_id, sku, min_quantity, amount, start_time, nullif(end_time, '') as end_time,
             {_ABS.format(c="start_time")} as abs, {_ABS.format(c="nullif(end_time, '')")} as end_abs
      from import_rows offset 0) r
where end_time is null
   or (end_abs = abs and case when abs then end_time::timestamptz > start_time::timestamptz
                              else end_time::timestamp > start_time::timestamp end)
"""


class _SomeRowIsBadError(Exception):
    pass


async def insert_if_all_valid(conn: Connection, change_set_id: uuid.UUID, staged: int) -> int | None:
    """The fast path: the items of a good file, inserted by one statement. None when some row is bad (a
    cast failed or a check filtered it out): nothing is kept; run validate_rows for the report."""
    try:
        async with conn.transaction():  # savepoint: a refusal keeps nothing, the settings included
            # Hash joins over the whole file instead of one index probe per row (without statistics on
            # the staging table the planner may pick nested loops).
            async with _hash_joins_in_memory(conn):
                if await conn.fetchval(_ANY_BAD_VALUE):
                    raise _SomeRowIsBadError
            status = await conn.execute(_FAST_INSERT, change_set_id)
            inserted = int(status.split()[-1])
            if inserted != staged:
                raise _SomeRowIsBadError
    except (asyncpg.DataError, _SomeRowIsBadError):
        return None
    return inserted


async def insert_items(conn: Connection, change_set_id: uuid.UUID) -> int:
    """The items of a file validate_rows found nothing wrong with (the fast path refused it anyway)."""
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
