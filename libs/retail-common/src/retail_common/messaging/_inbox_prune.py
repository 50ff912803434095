"""Inbox pruning: rows must outlive the stream's copy of their message (DESIGN §5), then they can go.

A row older than the stream's max age can no longer meet a redelivery of its message; the margin covers
clock skew and a consumer that fell behind. Replays of dead letters are still gated by
`inbox_versions`, which is never pruned. Deletes run in bounded chunks, one replica at a time (an
advisory lock per consumer), so they neither hold long locks nor fight each other.
"""

from __future__ import annotations

import asyncpg
from nats.js import JetStreamContext

from retail_common.db import Connection

__all__ = ["DEFAULT_MARGIN", "prune_inbox", "prune_inbox_chunked", "retention_for_stream"]

DEFAULT_MARGIN = 86_400.0  # one day beyond the stream's max age

_DELETE = """
delete from inbox where consumer = $1 and received_at < now() - make_interval(secs => $2)
"""

_DELETE_CHUNK = """
delete from inbox where (consumer, event_id) in (
    select consumer, event_id from inbox
    where consumer = $1 and received_at < now() - make_interval(secs => $2)
    limit $3
)
"""

_TRY_LOCK = "select pg_try_advisory_xact_lock(hashtextextended('retail.inbox.prune:' || $1, 0))"


async def prune_inbox(conn: Connection, *, consumer: str, older_than_seconds: float) -> int:
    """Delete inbox rows older than the retention (keep it >= the stream's max age)."""
    status = await conn.execute(_DELETE, consumer, older_than_seconds)
    return int(status.split()[-1])


async def prune_inbox_chunked(
    pool: asyncpg.Pool[asyncpg.Record], *, consumer: str, older_than_seconds: float, chunk: int = 5_000
) -> int | None:
    """Delete in chunks of `chunk` rows, one transaction each; None if another replica is pruning."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(_TRY_LOCK, consumer):
                return None if total == 0 else total
            status = await conn.execute(_DELETE_CHUNK, consumer, older_than_seconds, chunk)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < chunk:
            return total


async def retention_for_stream(
    js: JetStreamContext, stream: str, margin: float = DEFAULT_MARGIN
) -> float | None:
    """The stream's max age plus `margin`, in seconds; None if the stream keeps messages forever."""
    info = await js.stream_info(stream)
    max_age = info.config.max_age or 0.0
    return max_age + margin if max_age > 0 else None
