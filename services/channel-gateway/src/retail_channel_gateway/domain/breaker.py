"""Circuit breaker per channel: CLOSED -> OPEN after `threshold` consecutive failures; after
`open_for` seconds one trial is allowed (HALF_OPEN): success closes it, failure reopens it.
While OPEN nothing is sent and the backlog stays queued.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitBreaker:
    def __init__(self, threshold: int, open_for: float, clock: Callable[[], float]) -> None:
        if threshold < 1 or open_for <= 0:
            raise ValueError("threshold must be >= 1 and open_for > 0")
        self.threshold = threshold
        self.open_for = open_for
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.open_for:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a delivery be attempted now? In HALF_OPEN only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = True
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until the next trial may run (0 when closed or half-open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.open_for - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._trial_in_flight = False
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._failures = 0
