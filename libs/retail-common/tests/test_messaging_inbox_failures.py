"""How the inbox runner answers failures: counted handler errors, free then counted transient errors."""

from __future__ import annotations

from retail_common.messaging._inbox_failures import (
    TransientStreaks,
    Verdict,
    handler_failure,
    transient_failure,
)

BACKOFF = (1.0, 5.0, 30.0)
ERROR = OSError("connection refused")


def verdict(streak: int, *, answers: bool = True) -> Verdict:
    return transient_failure(ERROR, streak, free=3, database_answers=answers, max_deliver=4, backoff=BACKOFF)


def test_transient_errors_are_free_then_counted_then_dead_lettered() -> None:
    assert [verdict(s) for s in (1, 2, 3)] == [Verdict(1.0)] * 3
    assert [verdict(s) for s in (4, 5, 6)] == [Verdict(1.0), Verdict(5.0), Verdict(30.0)]
    dead = verdict(7)
    assert dead.dead_reason == (
        "transient error on 7 consecutive deliveries while the database answered: "
        "OSError('connection refused')"
    )


def test_a_database_outage_never_dead_letters() -> None:
    assert verdict(100, answers=False) == Verdict(1.0)


def test_handler_failures_count_deliveries() -> None:
    assert handler_failure(ValueError("x"), 1, 3, BACKOFF) == Verdict(1.0)
    assert handler_failure(ValueError("x"), 2, 3, BACKOFF) == Verdict(5.0)
    assert (
        handler_failure(ValueError("x"), 3, 3, BACKOFF).dead_reason
        == "handler failed 3 times: ValueError('x')"
    )


def test_streaks_are_per_message_and_bounded() -> None:
    streaks = TransientStreaks(capacity=2)
    streaks.count(1, streaks.next(1))
    streaks.count(1, streaks.next(1))
    assert streaks.next(1) == 3
    streaks.count(2, 1)
    streaks.count(3, 1)  # evicts the oldest entry
    assert len(streaks) == 2
    assert streaks.next(1) == 1
    streaks.forget(3)
    assert streaks.next(3) == 1
