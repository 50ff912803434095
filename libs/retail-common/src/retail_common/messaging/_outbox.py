"""Outbox writer: an event row written in the caller's transaction, with the aggregate's next version."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from retail_common.clock import Clock, SystemClock
from retail_common.db import Connection
from retail_common.messaging._envelope import new_event_id
from retail_common.messaging._propagation import current_trace_headers

__all__ = ["OutboxEvent", "OutboxWriter", "Payload"]

Payload = Message | bytes | Callable[[int], Message | bytes]

# Bumps every aggregate of a batch at once, in a fixed (type, key) order so that concurrent batches
# lock version rows in the same order and cannot deadlock; returns each aggregate's new top version.
_BUMP_MANY = """
with wanted as (
    select aggregate_type, aggregate_key, count(*) as n
    from unnest($1::text[], $2::text[]) as u(aggregate_type, aggregate_key)
    group by aggregate_type, aggregate_key
)
insert into aggregate_versions (aggregate_type, aggregate_key, version)
select aggregate_type, aggregate_key, n from wanted order by aggregate_type, aggregate_key
on conflict (aggregate_type, aggregate_key)
do update set version = aggregate_versions.version + excluded.version
returning aggregate_type, aggregate_key, version
"""

_INSERT_MANY = """
insert into outbox (event_id, subject, event_type, schema_version, aggregate_type, aggregate_key,
                    aggregate_version, payload, occurred_at, traceparent, tracestate)
select * from unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                     $7::bigint[], $8::bytea[], $9::timestamptz[], $10::text[], $11::text[])
"""


# append_select: one event per row of the caller's SELECT, set-based. The bump takes the version rows'
# locks in (type, key) order as _BUMP_MANY does; the outbox rows are inserted in that order too, so for
# one aggregate the outbox ids stay in version order. {a_type} and {e_type} are the writer's parameters
# or the source's columns; the writer's parameters are numbered after the caller's. The event id is a
# UUIDv7: the call's millisecond timestamp and version nibble (7 bytes, one per call), then 9 random
# bytes of a v4 UUID (its bytes 7-15, whose variant bits are already right).
_APPEND_SELECT = """
with {ctes}s as materialized ({source}),
bumped as (
    insert into aggregate_versions (aggregate_type, aggregate_key, version)
    select {a_type}, s.aggregate_key, 1 from s order by 1, 2
    on conflict (aggregate_type, aggregate_key)
    do update set version = aggregate_versions.version + 1
    returning aggregate_type, aggregate_key, version as aggregate_version
)
insert into outbox (event_id, subject, event_type, schema_version, aggregate_type, aggregate_key,
                    aggregate_version, payload, occurred_at, traceparent, tracestate)
select encode(${id_prefix}::bytea || substring(uuid_send(gen_random_uuid()) from 8 for 9), 'hex')::uuid,
       s.subject, {e_type}, ${schema}, {a_type}, s.aggregate_key, b.aggregate_version, ({payload}),
       ${occurred}, ${traceparent}, ${tracestate}
from s join bumped b on b.aggregate_type = {a_type} and b.aggregate_key = s.aggregate_key
order by {a_type}, s.aggregate_key
{returning}"""


def _id_prefix(instant: datetime) -> bytes:
    """The first 7 bytes of a UUIDv7 at `instant`: 48-bit Unix milliseconds, version 7, 4 random bits."""
    millis = int(instant.timestamp() * 1000)
    return millis.to_bytes(6, "big") + bytes([0x70 | (uuid.uuid4().bytes[0] & 0x0F)])


@dataclass(frozen=True)
class OutboxEvent:
    """One event for `OutboxWriter.append_many`; `payload` may be a callable of the new version."""

    subject: str
    event_type: str
    aggregate_type: str
    aggregate_key: str
    payload: Payload
    schema_version: int = 1
    occurred_at: datetime | None = None


def _bytes(payload: Message | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.SerializeToString(deterministic=True)


class OutboxWriter:
    """Appends events to the outbox inside the caller's transaction (never publishes itself).

    The version bump is an upsert on `aggregate_versions`, which holds that row's lock until the caller
    commits: concurrent writers of one aggregate serialise, so versions are 1..n without gaps among
    committed transactions (a rollback rolls its bump back too), and for one aggregate the outbox ids
    are in version order. Any number of events costs two statements (bulk writers use append_many), or
    one with append_select when the caller can build the payloads in SQL.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()

    async def append(
        self,
        conn: Connection,
        *,
        subject: str,
        event_type: str,
        aggregate_type: str,
        aggregate_key: str,
        payload: Payload,
        schema_version: int = 1,
        occurred_at: datetime | None = None,
    ) -> tuple[uuid.UUID, int]:
        """Write one event; returns (event id, aggregate version).

        `payload` may be a callable taking the new version, for state-carried events whose body holds it.
        Must be called inside a transaction (the caller's): raises RuntimeError otherwise.
        """
        event = OutboxEvent(
            subject, event_type, aggregate_type, aggregate_key, payload, schema_version, occurred_at
        )
        return (await self.append_many(conn, [event]))[0]

    async def append_many(
        self, conn: Connection, events: Sequence[OutboxEvent]
    ) -> list[tuple[uuid.UUID, int]]:
        """Write events in order; returns (event id, aggregate version) for each, in the same order.

        Several events of one aggregate get consecutive versions in list order.
        """
        if not conn.is_in_transaction():
            raise RuntimeError("OutboxWriter.append must run inside the caller's transaction")
        if not events:
            return []
        if any(event.schema_version < 1 for event in events):
            raise ValueError("schema_version must be >= 1")
        keys = [(event.aggregate_type, event.aggregate_key) for event in events]
        rows = await conn.fetch(_BUMP_MANY, [k[0] for k in keys], [k[1] for k in keys])
        # Each aggregate's versions for this batch end at its new top: hand them out in list order.
        counts = Counter(keys)
        next_version: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row["aggregate_type"], row["aggregate_key"])
            next_version[key] = int(row["version"]) - counts[key] + 1
        traceparent, tracestate = current_trace_headers()
        now = self._clock.now()
        results: list[tuple[uuid.UUID, int]] = []
        columns: list[list[Any]] = [[] for _ in range(11)]
        for event, key in zip(events, keys, strict=True):
            version = next_version[key]
            next_version[key] = version + 1
            payload = event.payload
            body = _bytes(payload(version) if callable(payload) else payload)
            event_id = new_event_id()
            values = (
                event_id,
                event.subject,
                event.event_type,
                event.schema_version,
                event.aggregate_type,
                event.aggregate_key,
                version,
                body,
                (event.occurred_at or now).astimezone(UTC),
                traceparent,
                tracestate,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
            results.append((event_id, version))
        await conn.execute(_INSERT_MANY, *columns)
        return results

    async def append_select(
        self,
        conn: Connection,
        *,
        source: str,
        payload: str,
        event_type: str | None = None,
        aggregate_type: str | None = None,
        args: Sequence[object] = (),
        schema_version: int = 1,
        ctes: str = "",
    ) -> int:
        """Write one event per row of `source`, set-based (one statement whatever the count): for bulk
        changes whose events can be built in SQL, where append_many's per-event Python is the cost.

        `source` is a trusted SELECT (never user input) over the caller's parameters `args` ($1..$n)
        with at least the columns `aggregate_key` and `subject`, and `event_type` / `aggregate_type`
        unless given here for every row. A (type, key) appears at most once among its rows (one event
        per aggregate per call: Postgres refuses a second bump of one row). `payload` is a SQL
        expression of type bytea over the source's columns (alias `s`) and `b.aggregate_version`, the
        aggregate's new version (bumped by one, exactly as append_many would). `ctes` are further
        common table expressions put first in the statement's WITH ("name as (...), "), which may
        modify data (Postgres allows that only at the top level): the change and its events in one
        statement. Same rows as append_many writes: occurred_at from the writer's clock, the trace
        headers of the current span, UUIDv7 event ids; ordered by (aggregate type, key).

        Outside a transaction only when the change is in `ctes`: the statement is then a transaction of
        its own, so the change and its events still commit together. Returns the number of events.
        """
        sql, params = self._append_select_sql(
            conn, source, payload, event_type, aggregate_type, args, schema_version, ctes, ""
        )
        status = await conn.execute(sql, *params)
        return int(status.split()[-1])

    async def append_select_returning(
        self,
        conn: Connection,
        *,
        source: str,
        payload: str,
        event_type: str | None = None,
        aggregate_type: str | None = None,
        args: Sequence[object] = (),
        schema_version: int = 1,
        ctes: str = "",
    ) -> list[Any]:
        """append_select, returning the written events (aggregate_type, aggregate_key,
        aggregate_version, payload), in outbox order: for a caller whose reply is in a payload built by
        the statement (state with database times), so that it needs no read after the write."""
        sql, params = self._append_select_sql(
            conn,
            source,
            payload,
            event_type,
            aggregate_type,
            args,
            schema_version,
            ctes,
            "returning aggregate_type, aggregate_key, aggregate_version, payload",
        )
        return list(await conn.fetch(sql, *params))

    def _append_select_sql(
        self,
        conn: Connection,
        source: str,
        payload: str,
        event_type: str | None,
        aggregate_type: str | None,
        args: Sequence[object],
        schema_version: int,
        ctes: str,
        returning: str,
    ) -> tuple[str, list[object]]:
        if not conn.is_in_transaction() and not ctes:
            raise RuntimeError("OutboxWriter.append must run inside the caller's transaction")
        if schema_version < 1:
            raise ValueError("schema_version must be >= 1")
        if ctes and not ctes.rstrip().endswith(","):
            ctes = ctes.rstrip() + ", "
        params: list[object] = list(args)

        def param(value: object, cast: str = "") -> str:
            params.append(value)
            return f"${len(params)}{cast}"

        sql = _APPEND_SELECT.format(
            ctes=ctes,
            source=source,
            payload=payload,
            a_type="s.aggregate_type" if aggregate_type is None else param(aggregate_type, "::text"),
            e_type="s.event_type" if event_type is None else param(event_type, "::text"),
            schema=len(params) + 1,
            occurred=len(params) + 2,
            id_prefix=len(params) + 3,
            traceparent=len(params) + 4,
            tracestate=len(params) + 5,
            returning=returning,
        )
        traceparent, tracestate = current_trace_headers()
        now = self._clock.now().astimezone(UTC)
        params.extend([schema_version, now, _id_prefix(now), traceparent, tracestate])
        return sql, params
