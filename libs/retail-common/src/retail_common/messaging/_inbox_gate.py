"""Inbox claim and version gate for a whole fetched batch in two statements.

1. `lock_and_read`: one upsert locks the `inbox_versions` row of every aggregate in the batch, in one
   global order (so replicas committing overlapping batches cannot deadlock), and returns the current
   versions; the same statement lists which event ids the inbox already holds.
2. `decide` (pure Python) replays the per-message rules over the batch in its handling order, exactly as
   if each message had been gated alone: a duplicate is skipped; NEWER applies a version greater than the
   running last-applied one; SEQUENTIAL applies only last+1, skips older, and leaves a gap untouched.
3. `record`: one statement inserts the inbox rows (applied or stale; a gap leaves no trace) and sets the
   new versions. If an inbox row turns out to exist already, a concurrent transaction committed that
   event after step 1 read the inbox: `ClaimRaceError` rolls the batch back to be gated again.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from retail_common.db import Connection

__all__ = ["Claim", "ClaimRaceError", "Outcome", "VersionPolicy", "decide", "lock_and_read", "record"]


class VersionPolicy(enum.Enum):
    NEWER = "newer"
    SEQUENTIAL = "sequential"


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    GAP = "gap"


class ClaimRaceError(Exception):
    """Another transaction recorded one of the batch's events in the meantime; gate the batch again."""


AggregateId = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Claim:
    dedupe_id: uuid.UUID
    aggregate_type: str
    aggregate_key: str
    version: int

    @property
    def aggregate(self) -> AggregateId:
        return (self.aggregate_type, self.aggregate_key)


# The no-op update locks an existing row (an insert locks a new one, at version 0 = nothing applied).
# Rows are taken in "C" collation order, which is Python's str order, so every replica (and the
# per-message path of earlier releases) locks aggregates in the same order. ON CONFLICT DO UPDATE acts
# on the latest committed row, so versions returned are current even after waiting for a lock; the
# inbox read uses the statement's snapshot and may miss a commit made while waiting (see `record`).
# Lookups go through unique indexes whatever the table statistics say: the upserts by nature, the inbox
# read by a lateral primary-key probe per id (`offset 0` keeps the planner from turning it into a scan of
# all the consumer's rows, which it does when statistics are stale).
_LOCK_AND_READ = """
with locked as (
    insert into inbox_versions as iv (consumer, aggregate_type, aggregate_key, version)
    select $1, t, k, 0 from unnest($2::text[], $3::text[]) as u(t, k)
    order by t collate "C", k collate "C"
    on conflict (consumer, aggregate_type, aggregate_key) do update set version = iv.version
    returning iv.aggregate_type, iv.aggregate_key, iv.version
)
select aggregate_type, aggregate_key, version, null::uuid as event_id from locked
union all
select null, null, null, seen.event_id from unnest($4::uuid[]) as u(e),
    lateral (select event_id from inbox where consumer = $1 and event_id = u.e offset 0) as seen
"""

_RECORD = """
with claimed as (
    insert into inbox (consumer, event_id, aggregate_type, aggregate_key, aggregate_version, applied)
    select $1, e, t, k, v, a
    from unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::boolean[]) as u(e, t, k, v, a)
    on conflict (consumer, event_id) do nothing
    returning 1
), advanced as (
    -- The rows exist and are locked (step 1); an upsert reaches them through the primary key.
    insert into inbox_versions as iv (consumer, aggregate_type, aggregate_key, version)
    select $1, t, k, v from unnest($7::text[], $8::text[], $9::bigint[]) as u(t, k, v)
    on conflict (consumer, aggregate_type, aggregate_key) do update set version = excluded.version
    returning 1
)
select (select count(*) from claimed) as claimed, (select count(*) from advanced) as advanced
"""


async def lock_and_read(
    conn: Connection, consumer: str, claims: Sequence[Claim]
) -> tuple[dict[AggregateId, int], set[uuid.UUID]]:
    """Lock every aggregate of `claims`; return their current versions and the event ids already seen."""
    aggregates = sorted({c.aggregate for c in claims})
    rows = await conn.fetch(
        _LOCK_AND_READ,
        consumer,
        [a[0] for a in aggregates],
        [a[1] for a in aggregates],
        list({c.dedupe_id for c in claims}),
    )
    current: dict[AggregateId, int] = {}
    seen: set[uuid.UUID] = set()
    for row in rows:
        if row["event_id"] is not None:
            seen.add(row["event_id"])
        else:
            current[(row["aggregate_type"], row["aggregate_key"])] = row["version"]
    return current, seen


def decide(
    claims: Sequence[Claim],
    current: Mapping[AggregateId, int],
    seen: Iterable[uuid.UUID],
    policy: VersionPolicy,
) -> tuple[list[Outcome], dict[AggregateId, int]]:
    """Outcomes in `claims` order, and the new version of every aggregate that advanced."""
    state = dict(current)
    done = set(seen)
    advanced: dict[AggregateId, int] = {}
    outcomes: list[Outcome] = []
    newer = policy is VersionPolicy.NEWER
    for claim in claims:
        if claim.dedupe_id in done:
            outcomes.append(Outcome.DUPLICATE)
            continue
        last = state.get(claim.aggregate, 0)
        if claim.version <= last:
            outcome = Outcome.STALE
        elif newer or claim.version == last + 1:
            outcome = Outcome.APPLIED
            state[claim.aggregate] = advanced[claim.aggregate] = claim.version
        else:  # SEQUENTIAL, a predecessor is missing: no trace, so a redelivery is gated afresh
            outcomes.append(Outcome.GAP)
            continue
        done.add(claim.dedupe_id)
        outcomes.append(outcome)
    return outcomes, advanced


async def record(
    conn: Connection,
    consumer: str,
    claims: Sequence[Claim],
    outcomes: Sequence[Outcome],
    advanced: Mapping[AggregateId, int],
) -> None:
    """Insert the inbox rows of applied and stale claims and store the advanced versions."""
    kept = [
        (c, o is Outcome.APPLIED)
        for c, o in zip(claims, outcomes, strict=True)
        if o in (Outcome.APPLIED, Outcome.STALE)
    ]
    if not kept:
        return
    moved = sorted(advanced.items())
    row = await conn.fetchrow(
        _RECORD,
        consumer,
        [c.dedupe_id for c, _ in kept],
        [c.aggregate_type for c, _ in kept],
        [c.aggregate_key for c, _ in kept],
        [c.version for c, _ in kept],
        [applied for _, applied in kept],
        [a[0] for a, _ in moved],
        [a[1] for a, _ in moved],
        [v for _, v in moved],
    )
    assert row is not None
    if row["claimed"] != len(kept):
        raise ClaimRaceError(f"{len(kept) - row['claimed']} event(s) recorded concurrently")
