"""Injectable time source: services read "now" from a Clock so tests can drive time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """Current instant, timezone-aware UTC."""
        ...

    async def sleep_until(self, instant: datetime) -> None:
        """Return once now() >= instant (or soon after)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, instant: datetime) -> None:
        delay = (instant - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that only moves when told to; sleepers wake when the time they wait for is reached."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, instant: datetime) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= instant)

    async def advance(self, delta: timedelta) -> None:
        await self.set(self._now + delta)

    async def set(self, instant: datetime) -> None:
        if instant < self._now:
            raise ValueError("ManualClock never moves backwards")
        async with self._moved:
            self._now = instant
            self._moved.notify_all()
