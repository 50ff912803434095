"""Dead letters: the DEADLETTER stream + `dead_letters` table, listing and replay."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from retail_common.db import Connection
from retail_common.messaging._envelope import H_MSG_ID, H_ORIGINAL_EVENT_ID, new_event_id
from retail_common.messaging._subjects import deadletter_subject

__all__ = [
    "H_DL_CONSUMER",
    "H_DL_NUM_DELIVERED",
    "H_DL_ORIGINAL_MSG_ID",
    "H_DL_ORIGINAL_SEQ",
    "H_DL_ORIGINAL_STREAM",
    "H_DL_ORIGINAL_SUBJECT",
    "H_DL_REASON",
    "DeadLetter",
    "count_dead_letters",
    "get_dead_letters",
    "list_dead_letters",
    "mark_replayed",
    "publish_replay",
    "replay_dead_letter",
    "write_dead_letter",
]

H_DL_CONSUMER = "Retail-DL-Consumer"
H_DL_REASON = "Retail-DL-Reason"
H_DL_ORIGINAL_SUBJECT = "Retail-DL-Original-Subject"
H_DL_ORIGINAL_STREAM = "Retail-DL-Original-Stream"
H_DL_ORIGINAL_SEQ = "Retail-DL-Original-Seq"
H_DL_ORIGINAL_MSG_ID = "Retail-DL-Original-Msg-Id"
H_DL_NUM_DELIVERED = "Retail-DL-Num-Delivered"

_MAX_REASON = 1000


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    stream: str
    stream_seq: int
    subject: str
    event_id: uuid.UUID | None
    headers: dict[str, str]
    payload: bytes
    reason: str
    num_delivered: int
    dead_at: datetime
    deadletter_seq: int | None
    replay_count: int
    replayed_at: datetime | None
    last_replay_msg_id: uuid.UUID | None = None


def _header_safe(text: str) -> str:
    return " ".join(text.split())[:_MAX_REASON]


def _event_id(headers: Mapping[str, str]) -> uuid.UUID | None:
    for name in (H_ORIGINAL_EVENT_ID, H_MSG_ID):
        raw = headers.get(name)
        if raw:
            try:
                return uuid.UUID(raw)
            except ValueError:
                return None
    return None


async def write_dead_letter(
    pool: asyncpg.Pool[asyncpg.Record],
    js: JetStreamContext,
    msg: Msg,
    *,
    consumer: str,
    reason: str,
    deadletter_stream: str = "DEADLETTER",
    publish_timeout: float = 5.0,
) -> None:
    """Publish `msg` to the DEADLETTER stream and record it in `dead_letters` (both idempotent).

    The caller `term()`s the message afterwards; if this raises, the caller naks and it is retried.
    """
    meta = msg.metadata
    original = dict(msg.headers or {})
    reason = _header_safe(reason) or "unspecified"
    headers = {k: v for k, v in original.items() if k != H_MSG_ID}
    headers.update(
        {
            # Deterministic: a second dead-lettering of the same stream message is deduplicated.
            H_MSG_ID: f"dl.{consumer}.{meta.stream}.{meta.sequence.stream}",
            H_DL_CONSUMER: consumer,
            H_DL_REASON: reason,
            H_DL_ORIGINAL_SUBJECT: msg.subject,
            H_DL_ORIGINAL_STREAM: meta.stream,
            H_DL_ORIGINAL_SEQ: str(meta.sequence.stream),
            H_DL_NUM_DELIVERED: str(meta.num_delivered),
        }
    )
    if H_MSG_ID in original:
        headers[H_DL_ORIGINAL_MSG_ID] = original[H_MSG_ID]
    ack = await js.publish(
        deadletter_subject(consumer),
        msg.data,
        headers=headers,
        timeout=publish_timeout,
        stream=deadletter_stream,
    )
    await pool.execute(
        """
        insert into dead_letters (consumer, stream, stream_seq, subject, event_id, headers, payload,
                                  reason, num_delivered, deadletter_seq)
        values ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10)
        on conflict (consumer, stream, stream_seq) do nothing
        """,
        consumer,
        meta.stream,
        meta.sequence.stream,
        msg.subject,
        _event_id(original),
        json.dumps(original),
        msg.data,
        reason,
        meta.num_delivered,
        ack.seq,
        timeout=publish_timeout,
    )


_COLUMNS = """id, consumer, stream, stream_seq, subject, event_id, headers::text as headers, payload, reason,
              num_delivered, dead_at, deadletter_seq, replay_count, replayed_at, last_replay_msg_id"""


def _from_row(row: asyncpg.Record) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        consumer=row["consumer"],
        stream=row["stream"],
        stream_seq=row["stream_seq"],
        subject=row["subject"],
        event_id=row["event_id"],
        headers=json.loads(row["headers"]),
        payload=bytes(row["payload"]),
        reason=row["reason"],
        num_delivered=row["num_delivered"],
        dead_at=row["dead_at"],
        deadletter_seq=row["deadletter_seq"],
        replay_count=row["replay_count"],
        replayed_at=row["replayed_at"],
        last_replay_msg_id=row["last_replay_msg_id"],
    )


async def list_dead_letters(
    conn: Connection | asyncpg.Pool[asyncpg.Record],
    *,
    consumer: str | None = None,
    after_id: int = 0,
    limit: int = 100,
    include_replayed: bool = True,
) -> list[DeadLetter]:
    """Dead letters in id order (page with `after_id` = the last id seen)."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be within 1..1000")
    rows = await conn.fetch(
        f"""select {_COLUMNS} from dead_letters
            where id > $1 and ($2::text is null or consumer = $2) and ($3 or replay_count = 0)
            order by id limit $4""",
        after_id,
        consumer,
        include_replayed,
        limit,
    )
    return [_from_row(r) for r in rows]


async def get_dead_letters(
    conn: Connection | asyncpg.Pool[asyncpg.Record], ids: Sequence[int]
) -> dict[int, DeadLetter]:
    """The dead letters with these ids that exist, by id."""
    rows = await conn.fetch(f"select {_COLUMNS} from dead_letters where id = any($1::bigint[])", list(ids))
    return {row["id"]: _from_row(row) for row in rows}


async def count_dead_letters(
    conn: Connection | asyncpg.Pool[asyncpg.Record], *, consumer: str, include_replayed: bool = False
) -> int:
    count: int = await conn.fetchval(
        "select count(*) from dead_letters where consumer = $1 and ($2 or replay_count = 0)",
        consumer,
        include_replayed,
    )
    return count


async def publish_replay(
    js: JetStreamContext, letter: DeadLetter, replay_id: uuid.UUID, *, publish_timeout: float = 5.0
) -> None:
    """Republish `letter` to its original subject and stream as message `replay_id`.

    The message carries `Retail-Original-Event-Id` (the original event id), so the consumer's inbox
    dedupes it by the original id. A caller that derives `replay_id` deterministically (per request)
    also gets JetStream's duplicate window on a retried publish.
    """
    headers = dict(letter.headers)
    if letter.event_id is not None:
        headers[H_ORIGINAL_EVENT_ID] = str(letter.event_id)
    headers[H_MSG_ID] = str(replay_id)
    await js.publish(
        letter.subject, letter.payload, headers=headers, timeout=publish_timeout, stream=letter.stream
    )


async def mark_replayed(
    conn: Connection | asyncpg.Pool[asyncpg.Record], dead_letter_id: int, replay_id: uuid.UUID
) -> DeadLetter:
    """Record a replay (count, time, message id) and return the dead letter as it is now."""
    row = await conn.fetchrow(
        f"""update dead_letters set replay_count = replay_count + 1, replayed_at = now(),
                                    last_replay_msg_id = $2 where id = $1
            returning {_COLUMNS}""",
        dead_letter_id,
        replay_id,
    )
    if row is None:
        raise LookupError(f"no dead letter {dead_letter_id}")
    return _from_row(row)


async def replay_dead_letter(
    pool: asyncpg.Pool[asyncpg.Record],
    js: JetStreamContext,
    dead_letter_id: int,
    *,
    publish_timeout: float = 5.0,
) -> uuid.UUID:
    """Republish a dead letter to its original subject under a new Nats-Msg-Id (see publish_replay).

    Applied at most once by the consumer however often it is replayed. Returns the new message id.
    """
    letters = await get_dead_letters(pool, [dead_letter_id])
    if dead_letter_id not in letters:
        raise LookupError(f"no dead letter {dead_letter_id}")
    replay_id = new_event_id()
    await publish_replay(js, letters[dead_letter_id], replay_id, publish_timeout=publish_timeout)
    await mark_replayed(pool, dead_letter_id, replay_id)
    return replay_id
