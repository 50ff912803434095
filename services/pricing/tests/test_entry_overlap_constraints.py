"""The database refuses overlapping windows per list, SKU and tier, for each pair of window kinds
(migration 0001's exclusion constraints, made partial per kind by 0007), through the repository's insert."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from retail_pricing.domain.change_sets import AddEntry
from retail_pricing.domain.errors import RuleError
from retail_pricing.domain.model import AbsoluteWindow, LocalWindow, Window
from retail_pricing.repository.entries import insert_entries, insert_entry

from .conftest import rolled_back

DAY = timedelta(days=1)
MONDAY = datetime(2026, 6, 1)  # wall-clock (local windows)
MONDAY_UTC = MONDAY.replace(tzinfo=UTC)


def _days(origin: datetime, start_day: int, end_day: int | None) -> tuple[datetime, datetime | None]:
    return origin + start_day * DAY, None if end_day is None else origin + end_day * DAY


def absolute(start_day: int, end_day: int | None = None) -> AbsoluteWindow:
    return AbsoluteWindow(*_days(MONDAY_UTC, start_day, end_day))


def local(start_day: int, end_day: int | None = None) -> LocalWindow:
    return LocalWindow(*_days(MONDAY, start_day, end_day))


def entry(window: Window, tier: int = 1) -> AddEntry:
    return AddEntry("base", "A", Decimal("9.99"), window, tier)


OVERLAPPING = [
    pytest.param(absolute(0, 10), absolute(5), id="absolute-absolute"),
    pytest.param(local(0, 10), local(9, 11), id="local-local"),
    pytest.param(absolute(0, 10), local(3, 4), id="absolute-local"),
    pytest.param(local(3, 4), absolute(0, 10), id="local-absolute"),
    # Local windows are compared with absolute ones widened by every zone's offset (-14 h .. +12 h).
    pytest.param(local(0, 1), absolute(1, 2), id="local-absolute-within-the-zones-widening"),
]

APART = [
    pytest.param(absolute(0, 10), absolute(10), id="absolute-back-to-back"),
    pytest.param(local(0, 10), local(10, 20), id="local-back-to-back"),
    pytest.param(absolute(0, 10), local(20, 30), id="absolute-local-far-apart"),
]


@pytest.mark.parametrize(("first", "second"), OVERLAPPING)
async def test_overlaps_are_refused_one_by_one_and_in_bulk(seeded, pool, first, second) -> None:
    now = datetime.now(UTC)
    async with rolled_back(pool) as conn:
        await insert_entry(conn, entry(first), uuid.uuid4(), now)
        with pytest.raises(RuleError, match="ENTRY_OVERLAP"):
            await insert_entry(conn, entry(second), uuid.uuid4(), now)
        with pytest.raises(RuleError, match="ENTRY_OVERLAP"):
            await insert_entries(conn, [entry(second, tier=5), entry(second)], uuid.uuid4(), now)
        assert await conn.fetchval("select count(*) from price_entries") == 1  # nothing of either kept


@pytest.mark.parametrize(("first", "second"), [*OVERLAPPING, *APART])
async def test_another_tier_never_conflicts(seeded, pool, first, second) -> None:
    now = datetime.now(UTC)
    async with rolled_back(pool) as conn:
        await insert_entries(conn, [entry(first), entry(second, tier=2)], uuid.uuid4(), now)
        assert await conn.fetchval("select count(*) from price_entries") == 2


@pytest.mark.parametrize(("first", "second"), APART)
async def test_windows_that_do_not_meet_are_kept(seeded, pool, first, second) -> None:
    now = datetime.now(UTC)
    async with rolled_back(pool) as conn:
        await insert_entry(conn, entry(first), uuid.uuid4(), now)
        await insert_entry(conn, entry(second), uuid.uuid4(), now)
        assert await conn.fetchval("select count(*) from price_entries") == 2


async def test_each_same_kind_constraint_indexes_only_its_kind(seeded, pool) -> None:
    rows = await pool.fetch(
        "select conname, pg_get_constraintdef(oid) as definition from pg_constraint"
        " where conrelid = 'price_entries'::regclass and contype = 'x' order by conname"
    )
    definitions = {row["conname"]: row["definition"] for row in rows}
    assert "WHERE ((window_kind = 'absolute'::text))" in definitions["price_entries_no_overlap_absolute"]
    assert "WHERE ((window_kind = 'local'::text))" in definitions["price_entries_no_overlap_local"]
    assert "WHERE" not in definitions["price_entries_no_overlap_mixed"]
