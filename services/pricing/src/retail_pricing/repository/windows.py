"""Windows <-> Postgres ranges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from retail_pricing.domain.model import MAX_UTC_OFFSET, MIN_UTC_OFFSET, AbsoluteWindow, LocalWindow, Window

__all__ = ["window_columns", "window_from_row"]


def _range(lower: datetime, upper: datetime | None) -> asyncpg.Range[datetime]:
    return asyncpg.Range(lower, upper, lower_inc=True, upper_inc=False)


def window_columns(
    window: Window,
) -> tuple[str, asyncpg.Range[datetime] | None, asyncpg.Range[datetime] | None, asyncpg.Range[datetime]]:
    """(window_kind, abs_range, local_range, wide_range) for an entry row."""
    if isinstance(window, AbsoluteWindow):
        abs_range = _range(window.start, window.end)
        return "absolute", abs_range, None, abs_range
    wide_start = window.start.replace(tzinfo=UTC) - MAX_UTC_OFFSET
    wide_end = None if window.end is None else window.end.replace(tzinfo=UTC) - MIN_UTC_OFFSET
    return "local", None, _range(window.start, window.end), _range(wide_start, wide_end)


def window_from_row(row: Any) -> Window:
    if row["window_kind"] == "absolute":
        r = row["abs_range"]
        return AbsoluteWindow(r.lower, r.upper)
    r = row["local_range"]
    return LocalWindow(r.lower, r.upper)
