"""Campaign windows: absolute instants, or local wall-clock times resolved in a location's time zone.

Half-open [start, end). Local wall times follow RFC 5545 / zoneinfo fold=0: a time skipped by a DST gap
is read with the offset before the gap (02:30 on a spring-forward night is 03:30 local), a repeated
time is its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["Window", "local_instant"]


def local_instant(wall: datetime, zone: str) -> datetime:
    """The UTC instant of a naive wall-clock time in `zone` (fold=0; gaps read with the earlier offset)."""
    aware = wall.replace(tzinfo=ZoneInfo(zone), fold=0)
    return aware.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """Either absolute (aware UTC datetimes) or local (naive wall-clock datetimes); end None = open."""

    start: datetime
    end: datetime | None = None
    local: bool = False

    def bounds(self, zone: str | None) -> tuple[datetime, datetime | None] | None:
        """The window's instants, or None for a local window without a time zone."""
        if not self.local:
            return self.start, self.end
        if zone is None:
            return None
        end = local_instant(self.end, zone) if self.end is not None else None
        return local_instant(self.start, zone), end

    def contains(self, at: datetime, zone: str | None) -> bool:
        bounds = self.bounds(zone)
        if bounds is None:
            return False
        start, end = bounds
        return start <= at and (end is None or at < end)

    def overlaps(self, other: Window) -> bool:
        """Conservative overlap: local windows are compared with a +-14h margin (every zone)."""
        from datetime import timedelta

        margin = timedelta(hours=14)

        def span(w: Window) -> tuple[datetime, datetime | None]:
            if not w.local:
                return w.start, w.end
            start = w.start.replace(tzinfo=UTC) - margin
            end = w.end.replace(tzinfo=UTC) + margin if w.end is not None else None
            return start, end

        a0, a1 = span(self)
        b0, b1 = span(other)
        return (a1 is None or b0 < a1) and (b1 is None or a0 < b1)
