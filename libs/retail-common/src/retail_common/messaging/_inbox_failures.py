"""How the inbox runner answers a failed message: retry, retry with backoff, or dead-letter.

Connection-level errors are usually the infrastructure's fault (Postgres restarting, a lost connection,
a deadlock), so they are retried without counting toward `max_deliver`. But a handler that fails that
way on every delivery (e.g. it calls a service that is down for good) would then loop forever. So a
message's consecutive transient failures are counted; past `transient_retries` they count like handler
failures, unless the database itself does not answer (an outage must not dead-letter the backlog).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from retail_common.db import CONNECTION_ERRORS

__all__ = ["TRANSIENT_ERRORS", "TransientStreaks", "Verdict", "handler_failure", "transient_failure"]

# Infrastructure trouble (not obviously the message's fault).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """`dead_reason` set: dead-letter now; else nak with `delay` seconds."""

    delay: float
    dead_reason: str | None = None


def _backoff(backoff: Sequence[float], attempt: int) -> float:
    return backoff[min(max(attempt, 1) - 1, len(backoff) - 1)]


def handler_failure(
    error: BaseException, delivered: int, max_deliver: int, backoff: Sequence[float]
) -> Verdict:
    if delivered >= max_deliver:
        return Verdict(0.0, f"handler failed {delivered} times: {error!r}")
    return Verdict(_backoff(backoff, delivered))


def transient_failure(
    error: BaseException,
    streak: int,
    *,
    free: int,
    database_answers: bool,
    max_deliver: int,
    backoff: Sequence[float],
) -> Verdict:
    """`streak`: this message's consecutive transient failures, this one included."""
    counted = streak - free
    if counted <= 0 or not database_answers:
        return Verdict(backoff[0])
    if counted >= max_deliver:
        return Verdict(
            0.0,
            f"transient error on {streak} consecutive deliveries while the database answered: {error!r}",
        )
    return Verdict(_backoff(backoff, counted))


class TransientStreaks:
    """Consecutive transient failures per message (stream sequence), in memory and bounded.

    Per process: another replica or a restart starts counting afresh, which only delays dead-lettering.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._streaks: OrderedDict[int, int] = OrderedDict()

    def next(self, seq: int) -> int:
        """The streak if this failure is counted (see `count`)."""
        return self._streaks.get(seq, 0) + 1

    def count(self, seq: int, streak: int) -> None:
        self._streaks[seq] = streak
        self._streaks.move_to_end(seq)
        while len(self._streaks) > self._capacity:
            self._streaks.popitem(last=False)

    def forget(self, seq: int) -> None:
        self._streaks.pop(seq, None)

    def __len__(self) -> int:
        return len(self._streaks)
