"""Token-bucket rate limiter driven by an injected monotonic clock (seconds)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """`rate` tokens per second, at most `burst` banked. rate <= 0 means unlimited."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(1, burst) if burst > 0 else max(1, int(rate))
        self._clock = clock
        self._tokens = float(self.burst)
        self._at = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)

    def try_take(self, tokens: float = 1.0) -> bool:
        """Take `tokens` if available now."""
        if self.unlimited:
            return True
        self._refill()
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    def wait_time(self, tokens: float = 1.0) -> float:
        """Seconds until `tokens` are available (0 if now)."""
        if self.unlimited:
            return 0.0
        self._refill()
        missing = tokens - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate
