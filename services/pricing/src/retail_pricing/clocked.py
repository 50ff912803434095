"""`python -m retail_pricing.clocked`: the pricing service on a clock that tests move from outside the
process, so several service processes share one injectable time (e.g. two replicas reaching a
scheduled instant together). PRICING_CLOCK_FILE holds an offset in seconds added to the system time;
it is re-read on every reading, so writing a larger offset jumps every process forward at once. For
tests only: production runs `python -m retail_pricing` on the system clock."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["OffsetFileClock"]


class OffsetFileClock:
    def __init__(self, path: Path, poll_seconds: float = 0.05) -> None:
        self._path = path
        self._poll = poll_seconds

    def _offset(self) -> timedelta:
        try:
            return timedelta(seconds=float(self._path.read_text().strip() or 0))
        except (OSError, ValueError):  # mid-write or absent: no offset for this reading
            return timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset()

    async def sleep_until(self, instant: datetime) -> None:
        # Polls: the offset changes in a file another process writes (no event to wait on).
        while (remaining := (instant - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(self._poll, remaining))


def main() -> None:
    from retail_common.service import run_service
    from retail_pricing.service import SPEC

    clock = OffsetFileClock(Path(os.environ["PRICING_CLOCK_FILE"]))
    run_service(dataclasses.replace(SPEC, clock=clock))


if __name__ == "__main__":
    main()
