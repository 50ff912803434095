"""Turning windows into instants for a location's time zone (half-open, DST-correct via zoneinfo)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from retail_pricing.domain.model import MAX_UTC_OFFSET, AbsoluteWindow, Window

__all__ = [
    "Bounds",
    "bounds",
    "contains",
    "earliest_possible_start",
    "is_time_zone",
    "local_to_instant",
    "safe_local_wall",
    "zone",
]

Bounds = tuple[datetime, datetime | None]


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def is_time_zone(name: str) -> bool:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_to_instant(wall: datetime, time_zone: str) -> datetime:
    """A wall-clock time in a zone as a UTC instant, RFC 5545 style (zoneinfo fold=0): a time skipped
    by a DST gap is read with the offset before the gap (02:30 -> 03:30 local); a repeated time is its
    first occurrence."""
    return wall.replace(tzinfo=zone(time_zone), fold=0).astimezone(UTC)


def bounds(window: Window, time_zone: str | None) -> Bounds | None:
    """The window's [start, end) instants; None for a local window without a time zone."""
    if isinstance(window, AbsoluteWindow):
        return window.start, window.end
    if time_zone is None:
        return None
    start = local_to_instant(window.start, time_zone)
    end = None if window.end is None else local_to_instant(window.end, time_zone)
    return start, end


def contains(b: Bounds, instant: datetime) -> bool:
    start, end = b
    return start <= instant and (end is None or instant < end)


def earliest_possible_start(window: Window) -> datetime:
    """The earliest instant the window can start anywhere (local windows start first at UTC+14)."""
    if isinstance(window, AbsoluteWindow):
        return window.start
    return window.start.replace(tzinfo=UTC) - MAX_UTC_OFFSET


def safe_local_wall(instant: datetime) -> datetime:
    """The earliest wall-clock time that is at or after `instant` in every time zone."""
    return (instant.astimezone(UTC) + MAX_UTC_OFFSET).replace(tzinfo=None)
