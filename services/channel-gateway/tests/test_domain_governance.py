"""Rate limiter, circuit breaker, backoff and ledger rules, driven by an injected clock."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from retail_channel_gateway.domain.backoff import backoff_ceiling, backoff_delay
from retail_channel_gateway.domain.breaker import BreakerState, CircuitBreaker
from retail_channel_gateway.domain.changes import Lane
from retail_channel_gateway.domain.ledger import (
    Pending,
    accepts_projection,
    advance_delivered,
    due_at,
    idempotency_key,
    is_pending,
    order_for_delivery,
)
from retail_channel_gateway.domain.ratelimit import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # a call, so mypy does not narrow the property across state changes


def test_token_bucket_allows_burst_then_the_sustained_rate() -> None:
    clock = FakeTime()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == 0.5
    clock.t += 0.5
    assert bucket.try_take()
    assert not bucket.try_take()
    clock.t += 100  # long idle: never more than the burst banked
    assert sum(bucket.try_take() for _ in range(10)) == 3


@given(st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), min_size=1, max_size=200))
def test_token_bucket_never_exceeds_burst_plus_rate_times_elapsed(steps: list[float]) -> None:
    clock = FakeTime()
    start = clock.t
    bucket = TokenBucket(rate=5.0, burst=4, clock=clock)
    taken = 0
    for step in steps:
        clock.t += step
        taken += sum(bucket.try_take() for _ in range(3))
    assert taken <= 4 + 5.0 * (clock.t - start) + 1e-9


def test_unlimited_bucket() -> None:
    bucket = TokenBucket(rate=0, burst=0, clock=FakeTime())
    assert all(bucket.try_take() for _ in range(1000))
    assert bucket.wait_time() == 0


def test_breaker_opens_after_threshold_holds_then_half_opens_with_one_trial() -> None:
    clock = FakeTime()
    breaker = CircuitBreaker(threshold=3, open_for=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == 30
    clock.t += 29.9
    assert not breaker.allow()
    clock.t += 0.1
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_failure()  # trial failed: open again for a full period
    assert state(breaker) is BreakerState.OPEN
    assert breaker.retry_in() == 30
    clock.t += 30
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allow()


def test_success_resets_the_consecutive_failure_count() -> None:
    breaker = CircuitBreaker(threshold=2, open_for=1, clock=FakeTime())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED


@given(st.integers(min_value=1, max_value=2000), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_jittered_within_the_exponential_ceiling(attempt: int, seed: int) -> None:
    rng = random.Random(seed)
    delay = backoff_delay(attempt, 0.5, 60.0, rng.uniform)
    assert 0 <= delay <= backoff_ceiling(attempt, 0.5, 60.0) <= 60.0


def test_backoff_ceiling_doubles_until_the_cap() -> None:
    assert [backoff_ceiling(n, 0.5, 5.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay(3, 0.5, 5.0, lambda lo, hi: hi) == 2.0


def test_a_newer_version_is_never_overwritten_by_an_older_retry() -> None:
    assert accepts_projection(None, 1)
    assert accepts_projection(3, 4)
    assert not accepts_projection(4, 3)
    assert not accepts_projection(4, 4)
    assert advance_delivered(5, 3) == 5
    assert advance_delivered(3, 5) == 5
    assert is_pending(5, 3, dead=False)
    assert not is_pending(5, 5, dead=False)
    assert not is_pending(5, 3, dead=True)


def test_lanes_price_never_waits_behind_bulk_stock() -> None:
    bulk = [Pending(f"availability/{i}", 1, Lane.BULK, seq=i) for i in range(1, 10_001)]
    price = Pending("price/A", 1, Lane.FAST, seq=10_002)
    batch = order_for_delivery([*bulk, price], batch_size=100)
    assert batch[0] == price
    assert len(batch) == 100
    assert [p.seq for p in batch[1:]] == list(range(1, 100))


def test_due_at_is_lead_time_ahead_of_effect_never_before_known() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    start = now + timedelta(days=2)
    assert due_at(start, now, timedelta(hours=6)) == start - timedelta(hours=6)
    assert due_at(start, now, timedelta(days=3)) == now
    assert due_at(None, now, timedelta(hours=1)) == now
    assert due_at(start, now, timedelta(0)) == now  # 0 = as soon as known, per the contract


def test_idempotency_key_depends_on_the_set_of_entity_versions_only() -> None:
    a = idempotency_key("web", [("price/A", 2), ("price/B", 1)])
    assert a == idempotency_key("web", [("price/B", 1), ("price/A", 2)])
    assert a != idempotency_key("web", [("price/A", 3), ("price/B", 1)])
    assert a != idempotency_key("app", [("price/A", 2), ("price/B", 1)])
    assert "." not in a
