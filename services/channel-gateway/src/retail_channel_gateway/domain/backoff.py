"""Retry backoff with full jitter: attempt n (1-based) waits uniform(0, min(cap, base * 2^(n-1)))."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["backoff_ceiling", "backoff_delay"]


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    # Guard the exponent: 2**1000 overflows float multiplication long after it passed any sane cap.
    return min(cap, base * float(2 ** min(attempt - 1, 62)))


def backoff_delay(attempt: int, base: float, cap: float, uniform: Callable[[float, float], float]) -> float:
    """`uniform` is random.uniform or a seeded/fixed substitute in tests."""
    return uniform(0.0, backoff_ceiling(attempt, base, cap))
