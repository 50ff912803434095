"""The per-channel delivery ledger and queue, the change log of change-stream channels, dead letters
and delivery health. Version rules (domain/ledger.py) are applied by conditional statements here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from retail.channel.v1 import changes_pb2
from retail_channel_gateway.domain.changes import Lane
from retail_common.db import Connection
from retail_common.messaging import current_trace_headers

__all__ = ["ChangeLogRow", "CursorState", "DeadLetterRow", "HealthRow", "LedgerRepository", "PendingRow"]


@dataclass(frozen=True)
class PendingRow:
    entity_key: str
    kind: str
    lane: Lane
    version: int
    payload: bytes
    seq: int
    attempts: int
    resend: bool
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    channel_id: str
    entity_key: str
    kind: str
    version: int
    attempts: int
    last_error: str
    dead_at: datetime
    replayed_at: datetime | None


@dataclass(frozen=True)
class ChangeLogRow:
    seq: int
    entity_key: str
    version: int
    payload: bytes
    resync: bool


@dataclass(frozen=True)
class CursorState:
    last_seq: int
    pruned_through: int


@dataclass(frozen=True)
class HealthRow:
    breaker_state: str
    owner: str
    last_success_at: datetime | None
    last_failure_at: datetime | None
    backlog_fast: int
    backlog_bulk: int
    oldest_pending_at: datetime | None
    dead_letters: int
    ok: int
    failed: int


# A newer projection of an entity replaces the row and restarts its delivery; an older one changes nothing.
_REPLACE_IF_NEWER = """
on conflict (channel_id, entity_key) do update
set kind = excluded.kind, lane = excluded.lane, projected_version = excluded.projected_version,
    payload = excluded.payload, seq = excluded.seq, projected_at = excluded.projected_at,
    due_at = excluded.due_at, next_attempt_at = excluded.next_attempt_at, attempts = 0, last_error = null,
    dead = false, resend = false, updated_at = now(), traceparent = excluded.traceparent,
    tracestate = excluded.tracestate
where l.projected_version < excluded.projected_version
"""

_PROJECT = f"""
with s as (update channel_sequences set last_seq = last_seq + 1 where channel_id = $1 returning last_seq)
insert into delivery_ledger as l (channel_id, entity_key, kind, lane, projected_version, payload, seq,
                                  projected_at, due_at, next_attempt_at, traceparent, tracestate)
select $1, $2, $3, $4, $5, $6, s.last_seq, $7, $8, $8, $9, $10 from s
{_REPLACE_IF_NEWER}
returning l.seq
"""

# _PROJECT for several entities of one change at once (a store group's per-store prices): one sequence
# bump for all, seqs in array order; rows not newer than what is projected leave a gap, as in _PROJECT.
_PROJECT_MANY = f"""
with s as (update channel_sequences set last_seq = last_seq + cardinality($2::text[]) where channel_id = $1
           returning last_seq - cardinality($2::text[]) as base),
x as (select * from unnest($2::text[], $5::bigint[], $6::bytea[]) with ordinality as x(k, v, p, n))
insert into delivery_ledger as l (channel_id, entity_key, kind, lane, projected_version, payload, seq,
                                  projected_at, due_at, next_attempt_at, traceparent, tracestate)
select $1, x.k, $3, $4, x.v, x.p, s.base + x.n, $7, $8, $8, $9, $10 from s, x order by x.n
{_REPLACE_IF_NEWER}
returning l.entity_key, l.seq
"""

_PENDING = """
select entity_key, kind, lane, projected_version, payload, seq, attempts, resend, traceparent, tracestate
from delivery_ledger
where channel_id = $1 and (projected_version > delivered_version or resend) and not dead
  and next_attempt_at <= $2
order by lane, seq limit $3
"""

_DELIVERED = """
update delivery_ledger l
set delivered_version = greatest(l.delivered_version, x.v),
    acknowledged_version = case when $4 then greatest(l.acknowledged_version, x.v)
                                else l.acknowledged_version end,
    resend = l.resend and l.projected_version <> x.v,
    attempts = case when l.projected_version = x.v then 0 else l.attempts end,
    last_error = null, updated_at = now()
from unnest($2::text[], $3::bigint[]) as x(k, v)
where l.channel_id = $1 and l.entity_key = x.k
"""

_FAILED = """
update delivery_ledger l
set attempts = l.attempts + 1, last_error = $5, next_attempt_at = x.next_at,
    dead = l.attempts + 1 >= $6, updated_at = now()
from unnest($2::text[], $3::bigint[], $4::timestamptz[]) as x(k, v, next_at)
where l.channel_id = $1 and l.entity_key = x.k and l.projected_version = x.v and not l.dead
returning l.entity_key, l.kind, l.projected_version, l.attempts, l.dead
"""


class LedgerRepository:
    # ------------------------------------------------------------------------------------ projection

    async def project(
        self,
        conn: Connection,
        *,
        channel_id: str,
        change: changes_pb2.ChannelChange,
        kind: str,
        lane: Lane,
        projected_at: datetime,
        due_at: datetime,
        change_log: bool,
    ) -> int | None:
        """Queue `change` for the channel if its version is newer than the one projected; returns its seq
        (None when an equal or newer version is already there: a late or duplicate event)."""
        payload = change.SerializeToString(deterministic=True)
        seq = await conn.fetchval(
            _PROJECT,
            channel_id,
            change.entity_key,
            kind,
            int(lane),
            change.version,
            payload,
            projected_at,
            due_at,
            *current_trace_headers(),
        )
        if seq is None:
            return None
        if change_log:
            await conn.execute(
                "insert into change_log (channel_id, seq, entity_key, version, payload)"
                " values ($1, $2, $3, $4, $5)",
                channel_id,
                seq,
                change.entity_key,
                change.version,
                payload,
            )
        return int(seq)

    async def project_many(
        self,
        conn: Connection,
        *,
        channel_id: str,
        changes: Sequence[changes_pb2.ChannelChange],
        kind: str,
        lane: Lane,
        projected_at: datetime,
        due_at: datetime,
        change_log: bool,
    ) -> list[int]:
        """`project` for several entities of one change (distinct entity keys) in two statements instead
        of one or two per entity; returns the seqs of the entities that took it."""
        if not changes:
            return []
        payloads = [c.SerializeToString(deterministic=True) for c in changes]
        rows = await conn.fetch(
            _PROJECT_MANY,
            channel_id,
            [c.entity_key for c in changes],
            kind,
            int(lane),
            [c.version for c in changes],
            payloads,
            projected_at,
            due_at,
            *current_trace_headers(),
        )
        taken = {r["entity_key"]: int(r["seq"]) for r in rows}
        if change_log and taken:
            logged = [(c, p) for c, p in zip(changes, payloads, strict=True) if c.entity_key in taken]
            await conn.execute(
                "insert into change_log (channel_id, seq, entity_key, version, payload)"
                " select $1, x.s, x.k, x.v, x.p"
                " from unnest($2::bigint[], $3::text[], $4::bigint[], $5::bytea[]) as x(s, k, v, p)",
                channel_id,
                [taken[c.entity_key] for c, _ in logged],
                [c.entity_key for c, _ in logged],
                [c.version for c, _ in logged],
                [p for _, p in logged],
            )
        return sorted(taken.values())

    # -------------------------------------------------------------------------------------- delivery

    async def pending(self, conn: Connection, channel_id: str, now: datetime, limit: int) -> list[PendingRow]:
        rows = await conn.fetch(_PENDING, channel_id, now, limit)
        return [
            PendingRow(
                entity_key=r["entity_key"],
                kind=r["kind"],
                lane=Lane(r["lane"]),
                version=r["projected_version"],
                payload=bytes(r["payload"]),
                seq=r["seq"],
                attempts=r["attempts"],
                resend=r["resend"],
                traceparent=r["traceparent"],
                tracestate=r["tracestate"],
            )
            for r in rows
        ]

    async def next_due(self, conn: Connection, channel_id: str) -> datetime | None:
        value: datetime | None = await conn.fetchval(
            "select min(next_attempt_at) from delivery_ledger"
            " where channel_id = $1 and (projected_version > delivered_version or resend) and not dead",
            channel_id,
        )
        return value

    async def mark_delivered(
        self, conn: Connection, channel_id: str, items: Sequence[tuple[str, int]], *, acknowledged: bool
    ) -> None:
        await conn.execute(_DELIVERED, channel_id, [k for k, _ in items], [v for _, v in items], acknowledged)

    async def record_composed(
        self, conn: Connection, channel_id: str, items: Sequence[tuple[str, int, bytes]]
    ) -> None:
        """Keep the payload as delivered (composed price amounts) for entities still at that version, so
        ReconcileChannel can compare what the channel was sent with the systems of record."""
        if not items:
            return
        await conn.execute(
            "update delivery_ledger l set payload = x.p"
            " from unnest($2::text[], $3::bigint[], $4::bytea[]) as x(k, v, p)"
            " where l.channel_id = $1 and l.entity_key = x.k and l.projected_version = x.v",
            channel_id,
            [k for k, _, _ in items],
            [v for _, v, _ in items],
            [p for _, _, p in items],
        )

    async def mark_failed(
        self,
        conn: Connection,
        channel_id: str,
        items: Sequence[tuple[str, int, datetime]],
        *,
        error: str,
        max_attempts: int,
    ) -> list[DeadLetterRow]:
        """Count a failed attempt for each (entity, version still projected); returns new dead letters."""
        rows = await conn.fetch(
            _FAILED,
            channel_id,
            [k for k, _, _ in items],
            [v for _, v, _ in items],
            [n for _, _, n in items],
            error[:500],
            max_attempts,
        )
        dead = [r for r in rows if r["dead"]]
        out = []
        for r in dead:
            row = await conn.fetchrow(
                """
                insert into delivery_dead_letters
                    (channel_id, entity_key, kind, version, attempts, last_error)
                values ($1, $2, $3, $4, $5, $6) returning *
                """,
                channel_id,
                r["entity_key"],
                r["kind"],
                r["projected_version"],
                r["attempts"],
                error[:500],
            )
            assert row is not None
            out.append(_dead_letter(row))
        return out

    # ---------------------------------------------------------------------------------- dead letters

    async def list_dead_letters(
        self, conn: Connection, channel_id: str, *, before_id: int | None, limit: int, include_replayed: bool
    ) -> list[DeadLetterRow]:
        rows = await conn.fetch(
            """
            select * from delivery_dead_letters
            where channel_id = $1 and ($2::bigint is null or id < $2) and ($4 or replayed_at is null)
            order by id desc limit $3
            """,
            channel_id,
            before_id,
            limit,
            include_replayed,
        )
        return [_dead_letter(r) for r in rows]

    async def replay_dead_letters(
        self, conn: Connection, channel_id: str, ids: Sequence[int] | None, now: datetime
    ) -> int:
        rows = await conn.fetch(
            """
            update delivery_dead_letters set replayed_at = $3
            where channel_id = $1 and replayed_at is null and ($2::bigint[] is null or id = any($2))
            returning entity_key, version
            """,
            channel_id,
            None if ids is None else list(ids),
            now,
        )
        if rows:
            await conn.execute(
                """
                update delivery_ledger
                set dead = false, attempts = 0, next_attempt_at = $3, last_error = null, updated_at = now()
                where channel_id = $1 and entity_key = any($2::text[]) and dead
                """,
                channel_id,
                [r["entity_key"] for r in rows],
                now,
            )
        return len(rows)

    # ------------------------------------------------------------------------------ resync / repush

    async def mark_resend(
        self, conn: Connection, channel_id: str, entity_keys: Sequence[str] | None, now: datetime
    ) -> int:
        """Queue entities again at their projected version (push modes): RequestResync, reconcile."""
        status = await conn.execute(
            """
            update delivery_ledger set resend = true, dead = false, attempts = 0, next_attempt_at = $3,
                   updated_at = now()
            where channel_id = $1 and ($2::text[] is null or entity_key = any($2))
            """,
            channel_id,
            None if entity_keys is None else list(entity_keys),
            now,
        )
        return int(status.split()[-1])

    async def resync_change_log(self, conn: Connection, channel_id: str) -> tuple[int, int]:
        """Append every entity's latest projected state to the change log (resync=true), in projection
        order. Returns (entities, cursor seq just before them)."""
        base = await conn.fetchval(
            "select last_seq from channel_sequences where channel_id = $1 for update", channel_id
        )
        count = await conn.fetchval(
            """
            with ins as (
                insert into change_log (channel_id, seq, entity_key, version, payload, resync)
                select $1, $2 + row_number() over (order by seq), entity_key, projected_version, payload, true
                from delivery_ledger where channel_id = $1
                returning 1)
            select count(*) from ins
            """,
            channel_id,
            base,
        )
        await conn.execute(
            "update channel_sequences set last_seq = last_seq + $2 where channel_id = $1", channel_id, count
        )
        return int(count), int(base)

    # ------------------------------------------------------------------------------------ change log

    async def cursor_state(self, conn: Connection, channel_id: str) -> CursorState | None:
        row = await conn.fetchrow(
            "select last_seq, pruned_through from channel_sequences where channel_id = $1", channel_id
        )
        return None if row is None else CursorState(row["last_seq"], row["pruned_through"])

    async def changes_after(
        self, conn: Connection, channel_id: str, after: int, limit: int
    ) -> list[ChangeLogRow]:
        rows = await conn.fetch(
            "select seq, entity_key, version, payload, resync from change_log"
            " where channel_id = $1 and seq > $2 order by seq limit $3",
            channel_id,
            after,
            limit,
        )
        return [
            ChangeLogRow(r["seq"], r["entity_key"], r["version"], bytes(r["payload"]), r["resync"])
            for r in rows
        ]

    async def acknowledge(
        self, conn: Connection, channel_id: str, through: int
    ) -> list[tuple[str, str, int]]:
        """AckChanges: every change up to `through` applied; returns (entity, kind, version) of the
        entities whose acknowledged version advanced."""
        acked = await conn.fetchval(
            "select acked_seq from channel_sequences where channel_id = $1 for update", channel_id
        )
        if acked is None or through <= acked:
            return []
        rows = await conn.fetch(
            """
            update delivery_ledger l
            set acknowledged_version = c.v, delivered_version = greatest(l.delivered_version, c.v),
                resend = l.resend and l.projected_version <> c.v, updated_at = now()
            from (select entity_key, max(version) as v from change_log
                  where channel_id = $1 and seq > $2 and seq <= $3 group by entity_key) c
            where l.channel_id = $1 and l.entity_key = c.entity_key and l.acknowledged_version < c.v
            returning l.entity_key, l.kind, c.v
            """,
            channel_id,
            acked,
            through,
        )
        await conn.execute(
            "update channel_sequences set acked_seq = $2 where channel_id = $1", channel_id, through
        )
        return [(r["entity_key"], r["kind"], int(r["v"])) for r in rows]

    async def acknowledge_store(
        self, conn: Connection, channel_id: str, store_key_suffix: str, through: int
    ) -> list[tuple[str, str, int]]:
        """AckChanges of one store of a store group: that store's per-store entities (keys ending in
        `/<escaped store>`, kind campaign) acknowledged at their latest version in the change log up to
        `through`; the channel's own acked position is not moved. Returns what advanced. Scans the
        retained log of the channel (no per-store position is kept; the version guard makes a repeat
        a no-op)."""
        rows = await conn.fetch(
            """
            update delivery_ledger l
            set acknowledged_version = c.v, delivered_version = greatest(l.delivered_version, c.v),
                resend = l.resend and l.projected_version <> c.v, updated_at = now()
            from (select entity_key, max(version) as v from change_log
                  where channel_id = $1 and seq <= $2 and entity_key like 'campaign/%'
                    and right(entity_key, length($3) + 1) = '/' || $3
                  group by entity_key) c
            where l.channel_id = $1 and l.entity_key = c.entity_key and l.acknowledged_version < c.v
            returning l.entity_key, l.kind, c.v
            """,
            channel_id,
            through,
            store_key_suffix,
        )
        return [(r["entity_key"], r["kind"], int(r["v"])) for r in rows]

    async def prune_housekeeping(self, conn: Connection, older_than: datetime) -> None:
        """Delivery stats past their use (the error rate looks back 5 minutes; kept at least 2 days)."""
        await conn.execute("delete from delivery_stats where minute < $1", older_than)

    async def prune_change_log(self, conn: Connection, channel_id: str, older_than: datetime) -> int:
        through = await conn.fetchval(
            "with d as (delete from change_log where channel_id = $1 and created_at < $2 returning seq)"
            " select max(seq) from d",
            channel_id,
            older_than,
        )
        if through is None:
            return 0
        await conn.execute(
            "update channel_sequences set pruned_through = greatest(pruned_through, $2)"
            " where channel_id = $1",
            channel_id,
            through,
        )
        return int(through)

    # ---------------------------------------------------------------------------------------- health

    async def record_outcome(
        self, conn: Connection, channel_id: str, *, ok: int, failed: int, now: datetime
    ) -> None:
        minute = now.replace(second=0, microsecond=0)
        await conn.execute(
            """
            insert into delivery_stats (channel_id, minute, ok, failed) values ($1, $2, $3, $4)
            on conflict (channel_id, minute) do update
            set ok = delivery_stats.ok + excluded.ok, failed = delivery_stats.failed + excluded.failed
            """,
            channel_id,
            minute,
            ok,
            failed,
        )
        column = "last_success_at" if ok else "last_failure_at"
        await conn.execute(
            f"update channel_health set {column} = $2, updated_at = now() where channel_id = $1",
            channel_id,
            now,
        )

    async def set_breaker(self, conn: Connection, channel_id: str, state: str, owner: str) -> str | None:
        """Store the breaker state; returns the previous one (None if unknown channel)."""
        previous: str | None = await conn.fetchval(
            """
            with old as (select breaker_state from channel_health where channel_id = $1 for update)
            update channel_health h set breaker_state = $2, owner = $3, updated_at = now()
            from old where h.channel_id = $1 returning old.breaker_state
            """,
            channel_id,
            state,
            owner,
        )
        return previous

    async def health(self, conn: Connection, channel_id: str, now: datetime) -> HealthRow | None:
        row = await conn.fetchrow(
            """
            select h.breaker_state, h.owner, h.last_success_at, h.last_failure_at,
              (select count(*) filter (where lane = 1) from delivery_ledger l where l.channel_id = $1
                 and (l.projected_version > l.delivered_version or l.resend) and not l.dead) as backlog_fast,
              (select count(*) filter (where lane = 2) from delivery_ledger l where l.channel_id = $1
                 and (l.projected_version > l.delivered_version or l.resend) and not l.dead) as backlog_bulk,
              (select min(projected_at) from delivery_ledger l where l.channel_id = $1
                 and (l.projected_version > l.delivered_version or l.resend) and not l.dead) as oldest,
              (select count(*) from delivery_dead_letters d where d.channel_id = $1 and d.replayed_at is null)
                 as dead_letters,
              (select coalesce(sum(ok), 0) from delivery_stats s
                 where s.channel_id = $1 and s.minute >= $2) as ok,
              (select coalesce(sum(failed), 0) from delivery_stats s
                 where s.channel_id = $1 and s.minute >= $2) as failed
            from channel_health h where h.channel_id = $1
            """,
            channel_id,
            now - timedelta(minutes=5),
        )
        if row is None:
            return None
        return HealthRow(
            breaker_state=row["breaker_state"],
            owner=row["owner"],
            last_success_at=row["last_success_at"],
            last_failure_at=row["last_failure_at"],
            backlog_fast=int(row["backlog_fast"]),
            backlog_bulk=int(row["backlog_bulk"]),
            oldest_pending_at=row["oldest"],
            dead_letters=int(row["dead_letters"]),
            ok=int(row["ok"]),
            failed=int(row["failed"]),
        )

    async def ledger_entries(
        self, conn: Connection, channel_id: str, *, after: str, limit: int, only_pending: bool
    ) -> list[dict[str, object]]:
        rows = await conn.fetch(
            """
            select entity_key, kind, projected_version, delivered_version, acknowledged_version, updated_at
            from delivery_ledger where channel_id = $1 and entity_key > $2
              and (not $4 or projected_version > delivered_version
                   or projected_version > acknowledged_version)
            order by entity_key limit $3
            """,
            channel_id,
            after,
            limit,
            only_pending,
        )
        return [dict(r) for r in rows]


def _dead_letter(r: asyncpg.Record) -> DeadLetterRow:
    return DeadLetterRow(
        id=r["id"],
        channel_id=r["channel_id"],
        entity_key=r["entity_key"],
        kind=r["kind"],
        version=r["version"],
        attempts=r["attempts"],
        last_error=r["last_error"],
        dead_at=r["dead_at"],
        replayed_at=r["replayed_at"],
    )


class ReconcileRepository:
    """Ledger reads and repairs for ReconcileChannel."""

    async def entries_of_kind(
        self, conn: Connection, channel_id: str, kind: str
    ) -> list[tuple[str, int, bytes]]:
        rows = await conn.fetch(
            "select entity_key, projected_version, payload from delivery_ledger"
            " where channel_id = $1 and kind = $2 order by entity_key",
            channel_id,
            kind,
        )
        return [(r["entity_key"], r["projected_version"], bytes(r["payload"])) for r in rows]

    async def repair(
        self,
        conn: Connection,
        channel_id: str,
        entity_key: str,
        payload: bytes,
        *,
        change_log: bool,
        now: datetime,
    ) -> None:
        """Store the system of record's state as the entity's payload (same version: it is a correction of
        what the gateway holds, not a new change) and re-push it as a resync item."""
        version = await conn.fetchval(
            "update delivery_ledger set payload = $3, updated_at = now()"
            " where channel_id = $1 and entity_key = $2 returning projected_version",
            channel_id,
            entity_key,
            payload,
        )
        if version is None:
            return
        if change_log:
            seq = await conn.fetchval(
                "update channel_sequences set last_seq = last_seq + 1"
                " where channel_id = $1 returning last_seq",
                channel_id,
            )
            await conn.execute(
                "insert into change_log (channel_id, seq, entity_key, version, payload, resync)"
                " values ($1, $2, $3, $4, $5, true)",
                channel_id,
                seq,
                entity_key,
                version,
                payload,
            )
        else:
            await LedgerRepository().mark_resend(conn, channel_id, [entity_key], now)
