"""Inventory repository: every SQL statement of the service.

Concurrency rules (no oversell, no deadlock):
- Holding units is one conditional UPDATE per position: the ATS check (inv_ats, the domain formula in
  SQL) and the increment are the same statement, so Postgres re-checks it on the latest row version
  under the row lock. A CHECK constraint (reserved_total <= max(0, on_hand)) backs it up.
- A statement touching several positions first locks them with SELECT ... ORDER BY sku, location_id
  FOR UPDATE: every transaction locks positions in that one order.
- Reservation rows are locked before positions (reserve inserts its row first; confirm, release,
  extend and the sweep lock it with FOR UPDATE first).
- Every function expects to run inside the caller's transaction (retail_common.db.transaction),
  except reserve_in_one_statement, which is one statement and so its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TypeAlias

import asyncpg
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from retail.inventory.v1 import events_pb2, reservation_pb2
from retail_common.db import Connection, MigrationSource
from retail_common.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    Reason,
)
from retail_common.messaging import OutboxEvent
from retail_inventory import events
from retail_inventory.domain import reservation as rsv
from retail_inventory.domain.allocation import (
    Allocation,
    Candidate,
    OutOfStockError,
    RequestLine,
    plan_reservation,
)
from retail_inventory.domain.ats import ats
from retail_inventory.domain.stock import shortage_cuts
from retail_inventory.domain.threshold import AbsoluteRule, DaysOfCoverRule, ThresholdState, initial_state

__all__ = [
    "MIGRATIONS",
    "InventoryRepository",
    "LocationIn",
    "MovementIn",
    "PolicyIn",
    "ReserveAudit",
    "RuleIn",
    "SnapshotIn",
    "SnapshotResult",
]

MIGRATIONS = MigrationSource("retail_inventory", Path(__file__).resolve().parents[3] / "migrations")
ERROR_DOMAIN = "retail.inventory.v1"
OUT_OF_STOCK = "OUT_OF_STOCK"
RESERVATION_EXPIRED = "RESERVATION_EXPIRED"
RESERVATION_NOT_ACTIVE = "RESERVATION_NOT_ACTIVE"
Key = tuple[str, str]
Row: TypeAlias = asyncpg.Record

# Empty jsonb maps come back as NULL (readers treat None as {}): decoding them is a measurable part of
# announcing a bulk snapshot.
_STOCK = (
    "s.sku, s.location_id, s.on_hand, s.reserved_total, s.safety_stock,"
    " nullif(s.fences, '{}'::jsonb) as fences, nullif(s.channel_reserved, '{}'::jsonb) as channel_reserved,"
    " s.snapshot_as_of, s.version, s.updated_at, s.rule_count, s.policy_version"
)
# Joined with the location; `default_fences` are the location's (the effective fences of a position are
# default_fences overridden per channel by its own `fences`: SQL `l.default_fences || s.fences`).
_JOINED = (
    _STOCK + ", l.active, l.channel_ids, l.region_id, l.allocation_priority,"
    " nullif(l.default_fences, '{}'::jsonb) as default_fences"
)
_KEYS = "(select * from unnest($1::text[], $2::text[]))"
# Units fenced for other channels (inv_fence_hold), its call skipped without fences (migration 0007).
_OTHERS = (
    "case when l.default_fences || s.fences = '{{}}'::jsonb then 0::bigint"
    " else inv_fence_hold(l.default_fences || s.fences, s.channel_reserved, s.on_hand, {channel}) end"
)
# The channel's ($6) figures of a position, computed in SQL by the same formula as the domain.
_AVAILABILITY = (
    "s.sku, s.location_id, l.region_id, l.channel_ids, s.on_hand, s.reserved_total, s.safety_stock,"
    " (l.active and $6 = any(l.channel_ids)) as sellable,"
    " inv_ats(s.on_hand, s.reserved_total, s.safety_stock, l.default_fences || s.fences, s.channel_reserved,"
    " $6) as ats,"
    f" {_OTHERS.format(channel='$6')} as others,"
    " coalesce(inv_fence_units((l.default_fences || s.fences) -> $6, s.on_hand), 0) as own_fence,"
    " coalesce((s.channel_reserved ->> $6)::bigint, 0) as own_reserved"
)

# The same figures for one location (the channel is $3), positional for the per-row loop of availability_at:
# sellable ATS, then on_hand, reserved_total, safety_stock, others, own_fence, own_reserved, sellable (the
# caller has the location id).
_SELLABLE = "(l.active and $3 = any(l.channel_ids))"
_AT_LOCATION_TOTAL = (
    f"case when {_SELLABLE} then inv_ats(s.on_hand, s.reserved_total, s.safety_stock,"
    " l.default_fences || s.fences, s.channel_reserved, $3) else 0 end"
)
_AT_LOCATION = (
    f"{_AT_LOCATION_TOTAL}, s.on_hand, s.reserved_total, s.safety_stock,"
    f" {_OTHERS.format(channel='$3')},"
    " coalesce(inv_fence_units((l.default_fences || s.fences) -> $3, s.on_hand), 0),"
    f" coalesce((s.channel_reserved ->> $3)::bigint, 0), {_SELLABLE}"
)


@dataclass(frozen=True)
class LocationIn:
    location_id: str
    kind: str
    display_name: str
    region_id: str
    time_zone: str
    channel_ids: tuple[str, ...]
    allocation_priority: int
    active: bool
    default_fences: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class MovementIn:
    movement_id: str
    sku: str
    location_id: str
    delta: int
    kind: str
    occur_time: datetime


class SnapshotIn(NamedTuple):
    """One snapshot entry; a tuple in the column order of the COPY (a bulk load builds 10^5 of them)."""

    sku: str
    location_id: str
    on_hand: int
    as_of: datetime


@dataclass(frozen=True)
class ReserveAudit:
    """The audit record of a new reservation, as retail_common.db.append_audit writes it (its actor,
    action, request id and trace id; entity = the reservation, after = its JSON), for the
    one-statement Reserve, which writes it in SQL with the database's times; likewise the audit
    records of the rules BatchCreateThresholdRules creates (create_rules)."""

    action: str
    actor_id: str | None
    actor_kind: str | None
    request_id: str | None
    trace_id: str | None


@dataclass
class SnapshotResult:
    received: int = 0
    applied: int = 0
    ignored: int = 0
    changed: int = 0


@dataclass(frozen=True)
class PolicyIn:
    sku: str
    location_id: str
    safety_stock: int
    fences: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    etag: str = ""  # the policy_etag read; empty = unconditional


@dataclass(frozen=True)
class RuleIn:
    request_id: str
    sku: str
    location_id: str
    channel_id: str
    owner_kind: str  # operator | campaign
    owner_id: str
    kind: str  # ABSOLUTE | DAYS_OF_COVER
    below_quantity: int | None = None
    restore_quantity: int | None = None
    units_sold: int | None = None
    period_days: int | None = None
    below_days: int | None = None
    restore_days: int | None = None


def _split(keys: Iterable[Key]) -> tuple[list[str], list[str]]:
    ordered = sorted(set(keys))
    return [k[0] for k in ordered], [k[1] for k in ordered]


def out_of_stock(sku: str, description: str = "not enough available-to-sell") -> FailedPrecondition:
    return FailedPrecondition(
        [PreconditionViolation("OUT_OF_STOCK", sku, description)],
        f"out of stock: SKU {sku}",
        reason=OUT_OF_STOCK,
        domain=ERROR_DOMAIN,
    )


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _rule_state(rule: RuleIn, position: Row) -> ThresholdState:
    """A new rule's state from its position (joined with its location): BELOW when already low."""
    sellable = position["active"] and rule.channel_id in position["channel_ids"]
    value = ats(events.position_of(position), rule.channel_id).available_to_sell if sellable else 0
    domain_rule: AbsoluteRule | DaysOfCoverRule
    if rule.kind == "ABSOLUTE":
        domain_rule = AbsoluteRule(rule.below_quantity or 0, rule.restore_quantity or 0)
    else:
        domain_rule = DaysOfCoverRule(
            rule.units_sold or 0, rule.period_days or 0, rule.below_days or 0, rule.restore_days or 0
        )
    return initial_state(domain_rule, value)


class InventoryRepository:
    def __init__(self, writer: events.EventWriter) -> None:
        self._events = writer

    # ------------------------------------------------------------------------------------- locations

    async def upsert_location(self, conn: Connection, loc: LocationIn, etag: str = "") -> Row:
        """Create or replace; with `etag`, only if the location exists with that etag (else ABORTED)."""
        # NO KEY UPDATE: does not conflict with the KEY SHARE locks that foreign-key checks of stock and
        # threshold-rule inserts take on the location, so it adds no lock-order conflict with them.
        before = await conn.fetchrow(
            "select channel_ids, active, default_fences, version from locations where location_id = $1"
            " for no key update",
            loc.location_id,
        )
        if etag and (before is None or etag != str(before["version"])):
            raise Aborted(
                f"location {loc.location_id} "
                + ("does not exist" if before is None else f"changed (etag {etag!r} is stale)")
                + "; re-read it and retry",
                domain=ERROR_DOMAIN,
            )
        row = await conn.fetchrow(
            """
            insert into locations as l (location_id, kind, display_name, region_id, time_zone, channel_ids,
                                        allocation_priority, active, default_fences)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)
            on conflict (location_id) do update set
                kind = excluded.kind, display_name = excluded.display_name, region_id = excluded.region_id,
                time_zone = excluded.time_zone, channel_ids = excluded.channel_ids,
                allocation_priority = excluded.allocation_priority, active = excluded.active,
                default_fences = excluded.default_fences, version = l.version + 1, updated_at = now()
            where (l.kind, l.display_name, l.region_id, l.time_zone, l.channel_ids, l.allocation_priority,
                   l.active, l.default_fences)
               is distinct from (excluded.kind, excluded.display_name, excluded.region_id,
                                 excluded.time_zone, excluded.channel_ids, excluded.allocation_priority,
                                 excluded.active, excluded.default_fences)
            returning *
            """,
            loc.location_id,
            loc.kind,
            loc.display_name,
            loc.region_id,
            loc.time_zone,
            list(loc.channel_ids),
            loc.allocation_priority,
            loc.active,
            _json(loc.default_fences),
        )
        if row is None:  # nothing changed
            current = await self.get_location(conn, loc.location_id)
            assert current is not None
            return current
        await self._events.append_many(conn, [events.location_upserted(row)])
        if before is not None and (
            sorted(before["channel_ids"]) != sorted(loc.channel_ids)
            or before["active"] != loc.active
            or before["default_fences"] != row["default_fences"]
        ):
            # Selling channels, activity or default fences changed: every position there has a new ATS
            # per channel. The positions are locked (global order) so that no hold commits between the
            # read and the events, which would make them carry a stale figure under a newer version.
            keys = await conn.fetch(
                "select sku, location_id from stock where location_id = $1"
                " order by sku, location_id for update",
                loc.location_id,
            )
            await self._after_stock_change(conn, [(k["sku"], k["location_id"]) for k in keys])
        return row

    async def get_location(self, conn: Connection, location_id: str) -> Row | None:
        return await conn.fetchrow("select * from locations where location_id = $1", location_id)

    async def list_locations(
        self, conn: Connection, *, region_id: str | None, after: str, limit: int
    ) -> list[Row]:
        return list(
            await conn.fetch(
                "select * from locations where ($1::text is null or region_id = $1) and location_id > $2"
                " order by location_id limit $3",
                region_id,
                after,
                limit,
            )
        )

    async def unknown_locations(self, conn: Connection, location_ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(location_ids))
        rows = await conn.fetch(
            "select x from unnest($1::text[]) x where not exists "
            "(select 1 from locations l where l.location_id = x)",
            wanted,
        )
        return {r["x"] for r in rows}

    async def unknown_skus(self, conn: Connection, skus: Iterable[str]) -> set[str]:
        rows = await conn.fetch(
            "select x from unnest($1::text[]) x where not exists (select 1 from skus s where s.sku = x)",
            sorted(set(skus)),
        )
        return {r["x"] for r in rows}

    async def known_regions(self, conn: Connection, regions: Iterable[str]) -> set[str]:
        rows = await conn.fetch(
            "select distinct region_id from locations where region_id = any($1::text[])", sorted(set(regions))
        )
        return {r["region_id"] for r in rows}

    # ----------------------------------------------------------------------------- stock positions

    async def _ensure_positions(self, conn: Connection, keys: Iterable[Key]) -> None:
        skus, locs = _split(keys)
        await conn.execute(
            "insert into skus (sku) select distinct x from unnest($1::text[]) x on conflict do nothing", skus
        )
        await conn.execute(
            f"insert into stock (sku, location_id) select * from {_KEYS} k on conflict do nothing",
            skus,
            locs,
        )

    async def _lock(self, conn: Connection, keys: Iterable[Key]) -> list[Row]:
        """Lock positions in the one global order; returns them (sku, location_id, on_hand, ...)."""
        skus, locs = _split(keys)
        return list(
            await conn.fetch(
                f"select {_STOCK} from stock s where (s.sku, s.location_id) in {_KEYS}"
                " order by s.sku, s.location_id for update",
                skus,
                locs,
            )
        )

    async def positions(self, conn: Connection, keys: Iterable[Key]) -> list[Row]:
        skus, locs = _split(keys)
        return list(
            await conn.fetch(
                f"select {_JOINED} from stock s join locations l on l.location_id = s.location_id"
                f" where (s.sku, s.location_id) in {_KEYS} order by s.sku, s.location_id",
                skus,
                locs,
            )
        )

    async def _after_stock_change(
        self, conn: Connection, keys: Iterable[Key], leading: Sequence[OutboxEvent] = ()
    ) -> None:
        """`leading` events, then AvailabilityChanged for each position, then flip threshold rules."""
        wanted = sorted(set(keys))
        await self._announce(conn, await self.positions(conn, wanted) if wanted else [], leading)

    async def _announce(
        self, conn: Connection, rows: Sequence[Row], leading: Sequence[OutboxEvent] = ()
    ) -> None:
        """`leading` events and AvailabilityChanged for each (position joined with location) row, all in
        one append_many (two statements whatever the count); then thresholds where watched."""
        batch = [*leading, *(events.availability_event(row) for row in rows)]
        if batch:
            await self._events.append_many(conn, batch)
        watched = [(r["sku"], r["location_id"]) for r in rows if r["rule_count"]]
        if watched:
            await self._evaluate_thresholds(conn, watched)

    async def _apply_shortage(self, conn: Connection, key: Key, new_on_hand: int, reserved: int) -> None:
        """Cut held units, newest reservation first, so that reserved <= max(0, new_on_hand)."""
        if reserved <= max(0, new_on_hand):
            return
        lines = await conn.fetch(
            """
            select rl.reservation_id, rl.line_index, rl.quantity - rl.confirmed - rl.released as held,
                   r.channel_id
            from reservation_lines rl join reservations r using (reservation_id)
            where rl.sku = $1 and rl.location_id = $2 and r.state = 'ACTIVE'
              and rl.confirmed + rl.released < rl.quantity
            order by r.created_at desc, r.reservation_id desc, rl.line_index desc
            for update of rl, r
            """,
            key[0],
            key[1],
        )
        channel_of = {(r["reservation_id"], r["line_index"]): r["channel_id"] for r in lines}
        cuts = shortage_cuts(
            [((r["reservation_id"], r["line_index"]), int(r["held"])) for r in lines], new_on_hand, reserved
        )
        touched: set[str] = set()
        for (reservation_id, line_index), units in cuts:
            await conn.execute(
                "update reservation_lines set released = released + $3"
                " where reservation_id = $1 and line_index = $2",
                reservation_id,
                line_index,
                units,
            )
            await conn.execute(
                "update stock set reserved_total = reserved_total - $3,"
                " channel_reserved = inv_add_reserved(channel_reserved, $4, -$3::bigint),"
                " version = version + 1, updated_at = now() where sku = $1 and location_id = $2",
                key[0],
                key[1],
                units,
                channel_of[(reservation_id, line_index)],
            )
            touched.add(reservation_id)
        changed = []
        for reservation_id in sorted(touched):
            _header, rows = await self._load_reservation(conn, reservation_id)
            state = rsv.settled_state([_line(r) for r in rows])
            await self._save_reservation_state(conn, reservation_id, state)
            changed.append(
                await self._reservation_changed(
                    conn, reservation_id, reservation_pb2.RESERVATION_CHANGE_RELEASED
                )
            )
        await self._events.append_many(conn, changed)

    async def record_movements(self, conn: Connection, movements: Sequence[MovementIn]) -> list[str]:
        """Record and apply movements; returns per movement APPLIED, CONTAINED_IN_SNAPSHOT or DUPLICATE."""
        keys = {(m.sku, m.location_id) for m in movements}
        await self._ensure_positions(conn, keys)
        inserted = {
            r["movement_id"]
            for r in await conn.fetch(
                """
                insert into movements (movement_id, sku, location_id, delta, kind, occur_time)
                select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                                     $6::timestamptz[])
                on conflict (movement_id) do nothing
                returning movement_id
                """,
                [m.movement_id for m in movements],
                [m.sku for m in movements],
                [m.location_id for m in movements],
                [m.delta for m in movements],
                [m.kind for m in movements],
                [m.occur_time for m in movements],
            )
        }
        locked = {(r["sku"], r["location_id"]): r for r in await self._lock(conn, keys)}
        outcomes: list[str] = []
        deltas: dict[Key, int] = defaultdict(int)
        seen: set[str] = set()
        for m in movements:
            if m.movement_id not in inserted or m.movement_id in seen:
                outcomes.append("DUPLICATE")
                continue
            seen.add(m.movement_id)
            as_of = locked[(m.sku, m.location_id)]["snapshot_as_of"]
            if as_of is not None and m.occur_time <= as_of:
                outcomes.append("CONTAINED_IN_SNAPSHOT")
                continue
            outcomes.append("APPLIED")
            deltas[(m.sku, m.location_id)] += m.delta
        changed = [k for k, d in sorted(deltas.items()) if d != 0]
        for key in changed:
            row = locked[key]
            await self._apply_shortage(conn, key, row["on_hand"] + deltas[key], row["reserved_total"])
        if changed:
            skus, locs = _split(changed)
            await conn.execute(
                """
                update stock s set on_hand = s.on_hand + d.delta, version = s.version + 1, updated_at = now()
                from unnest($1::text[], $2::text[], $3::bigint[]) as d(sku, location_id, delta)
                where s.sku = d.sku and s.location_id = d.location_id
                """,
                skus,
                locs,
                [deltas[k] for k in sorted(changed)],
            )
            await self._after_stock_change(conn, changed)
        return outcomes

    async def import_snapshot_batch(self, conn: Connection, entries: Sequence[SnapshotIn]) -> SnapshotResult:
        """COPY the batch into a temp table, then merge set-based: an older as-of never overwrites a
        newer one, movements after the as-of are re-applied on top, and the AvailabilityChanged events
        of exactly the positions whose on-hand changed are written by one INSERT ... SELECT
        (OutboxWriter.append_select, payloads encoded in SQL). A fixed number of statements per batch
        whatever its size; per-position work only for shortage cuts (held units above the new on-hand)."""
        result = SnapshotResult(received=len(entries))
        if not entries:
            return result
        await conn.execute(_SNAPSHOT_TEMP_TABLES)
        await conn.copy_records_to_table(
            "inv_snap_in", records=entries, columns=["sku", "location_id", "on_hand", "as_of"]
        )
        await conn.execute(_SNAPSHOT_MERGE)
        counts = await conn.fetchrow(
            "select count(*) as applied, count(*) filter (where new_on_hand <> old_on_hand) as changed,"
            " count(*) filter (where reserved_total > greatest(new_on_hand, 0)) as short"
            " from inv_snap_merge"
        )
        assert counts is not None
        result.applied = int(counts["applied"])
        result.ignored = result.received - result.applied
        result.changed = int(counts["changed"])
        if counts["short"]:
            for r in await conn.fetch(
                "select sku, location_id, new_on_hand, reserved_total from inv_snap_merge"
                " where reserved_total > greatest(new_on_hand, 0) order by sku, location_id"
            ):
                await self._apply_shortage(
                    conn, (r["sku"], r["location_id"]), r["new_on_hand"], r["reserved_total"]
                )
        await conn.execute(_SNAPSHOT_UPDATE)
        if not result.changed:
            return result
        ids, tokens = events.subject_tokens({e.sku for e in entries} | {e.location_id for e in entries})
        await self._events.append_select(
            conn,
            source=events.availability_source_sql(
                "inv_snap_merge m join stock s on s.sku = m.sku and s.location_id = m.location_id"
                " join locations l on l.location_id = s.location_id where m.new_on_hand <> m.old_on_hand",
                (1, 2, 3),
            ),
            payload=events.AVAILABILITY_PAYLOAD_SQL,
            event_type=events.AVAILABILITY_EVENT_TYPE,
            aggregate_type=events.STOCK_POSITION_AGGREGATE,
            args=[events.availability_subject_prefix(), ids, tokens],
        )
        watched = await conn.fetch(
            "select m.sku, m.location_id from inv_snap_merge m"
            " join stock s on s.sku = m.sku and s.location_id = m.location_id"
            " where m.new_on_hand <> m.old_on_hand and s.rule_count > 0"
        )
        if watched:
            await self._evaluate_thresholds(conn, [(r["sku"], r["location_id"]) for r in watched])
        return result

    async def set_policies(self, conn: Connection, policies: Sequence[PolicyIn]) -> list[Row]:
        """Replace safety stock and fences; all-or-nothing ABORTED if any given etag is stale."""
        keys = [(p.sku, p.location_id) for p in policies]
        await self._ensure_positions(conn, keys)
        current = {(r["sku"], r["location_id"]): r["policy_version"] for r in await self._lock(conn, keys)}
        for p in policies:
            if p.etag and p.etag != str(current[(p.sku, p.location_id)]):
                raise Aborted(
                    f"the policy of {p.sku} at {p.location_id} changed (etag {p.etag!r} is stale);"
                    " re-read the position and retry",
                    metadata={"sku": p.sku, "location_id": p.location_id},
                    domain=ERROR_DOMAIN,
                )
        ordered = sorted(policies, key=lambda p: (p.sku, p.location_id))
        await conn.execute(
            """
            update stock s set safety_stock = p.safety_stock, fences = p.fences::jsonb,
                   policy_version = s.policy_version + 1, version = s.version + 1, updated_at = now()
            from unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) as p(sku, location_id, safety_stock,
                                                                                 fences)
            where s.sku = p.sku and s.location_id = p.location_id
            """,
            [p.sku for p in ordered],
            [p.location_id for p in ordered],
            [p.safety_stock for p in ordered],
            [_json(p.fences) for p in ordered],
        )
        await self._after_stock_change(conn, keys)
        return await self.positions(conn, keys)

    # ---------------------------------------------------------------------------------- availability

    async def availability_rows(
        self,
        conn: Connection,
        channel: str,
        *,
        pairs: Iterable[Key] = (),
        region_pairs: Iterable[Key] = (),
        channel_skus: Iterable[str] = (),
        computed: bool = False,
    ) -> list[Row]:
        """Positions (joined with their location) for (sku, location) pairs, (sku, region) pairs and
        SKUs at every location serving `channel`.

        computed=True returns, instead of the raw policy columns, the channel's figures computed in SQL
        (inv_ats & co., the domain formula): sellable, ats, others (fenced for other channels),
        own_fence, own_reserved.
        """
        skus, locs = _split(pairs)
        region_skus, regions = _split(region_pairs)
        wide = sorted(set(channel_skus))
        parts = []
        if skus:
            parts.append(f"(s.sku, s.location_id) in {_KEYS}")
        if region_skus:
            parts.append("(s.sku, l.region_id) in (select * from unnest($3::text[], $4::text[]))")
        if wide:
            parts.append("(s.sku = any($5::text[]) and $6 = any(l.channel_ids))")
        if not parts:
            return []
        columns = _AVAILABILITY if computed else _JOINED
        return list(
            await conn.fetch(
                f"select {columns} from stock s join locations l on l.location_id = s.location_id"
                f" where ($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text) is not null"
                f" and ({' or '.join(parts)})",
                skus,
                locs,
                region_skus,
                regions,
                wide,
                channel,
            )
        )

    async def availability_at(
        self,
        conn: Connection,
        channel: str,
        skus: Sequence[str],
        locations: Sequence[str],
        *,
        totals_only: bool,
    ) -> list[Row]:
        """The channel's figures of (skus[i], locations[i]) for every i whose position exists, one set-based
        statement: column 0 is i (0-based), then the sellable ATS (0 where the location is inactive or does
        not serve the channel) and, unless totals_only, the breakdown of _AT_LOCATION. Rows come in key
        order; a key given twice gets a row for each."""
        columns = _AT_LOCATION_TOTAL if totals_only else _AT_LOCATION
        return list(
            await conn.fetch(
                f"select k.i - 1, {columns}"
                " from unnest($1::text[], $2::text[]) with ordinality k(sku, loc, i)"
                " join stock s on s.sku = k.sku and s.location_id = k.loc"
                " join locations l on l.location_id = s.location_id order by k.i",
                skus,
                locations,
                channel,
            )
        )

    # ---------------------------------------------------------------------------------- reservations

    async def _hold(self, conn: Connection, channel: str, deltas: Mapping[Key, int]) -> list[Row]:
        """Conditionally add held units (one statement; several positions are locked in the global order
        first). Returns the held positions joined with their location: all of `deltas` or fewer, in
        which case the caller rolls back."""
        keys = sorted(deltas)
        if len(keys) > 1:
            await self._lock(conn, keys)
        return list(
            await conn.fetch(
                _HOLD, [k[0] for k in keys], [k[1] for k in keys], [deltas[k] for k in keys], channel
            )
        )

    async def _unhold(self, conn: Connection, channel: str, deltas: Mapping[Key, int], *, ship: bool) -> None:
        """Free held units (release/expiry), or turn them into a shipment (ship=True: on_hand drops)."""
        keys = sorted(k for k, v in deltas.items() if v > 0)
        if not keys:
            return
        if len(keys) > 1:
            await self._lock(conn, keys)
        await conn.execute(
            """
            update stock s set reserved_total = s.reserved_total - r.qty,
                   on_hand = s.on_hand - case when $5 then r.qty else 0 end,
                   channel_reserved = inv_add_reserved(s.channel_reserved, $4, -r.qty),
                   version = s.version + 1, updated_at = now()
            from unnest($1::text[], $2::text[], $3::bigint[]) as r(sku, location_id, qty)
            where s.sku = r.sku and s.location_id = r.location_id
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [deltas[k] for k in keys],
            channel,
            ship,
        )

    async def _line_errors(self, conn: Connection, lines: Sequence[RequestLine]) -> None:
        """Raise INVALID_ARGUMENT for unknown SKUs, locations or regions (called when a hold fails)."""
        bad_skus = await self.unknown_skus(conn, [line.sku for line in lines])
        bad_locs = await self.unknown_locations(
            conn, [line.location_id for line in lines if line.location_id]
        )
        regions = [line.region_id for line in lines if line.region_id]
        known_regions = await self.known_regions(conn, regions) if regions else set()
        violations = []
        for i, line in enumerate(lines):
            if line.sku in bad_skus:
                violations.append(FieldViolation(f"lines[{i}].sku", f"unknown SKU {line.sku!r}"))
            if line.location_id and line.location_id in bad_locs:
                violations.append(
                    FieldViolation(f"lines[{i}].location_id", f"unknown location {line.location_id!r}")
                )
            if line.region_id and line.region_id not in known_regions:
                violations.append(
                    FieldViolation(f"lines[{i}].region_id", f"unknown region {line.region_id!r}")
                )
        if violations:
            raise InvalidArgument(violations)

    async def _plan(self, conn: Connection, channel: str, lines: Sequence[RequestLine]) -> list[Allocation]:
        rows = await self.availability_rows(
            conn,
            channel,
            pairs=[(line.sku, line.location_id) for line in lines if line.location_id],
            region_pairs=[(line.sku, line.region_id) for line in lines if line.region_id],
        )
        available: dict[Key, int] = {}
        region: dict[Key, list[Candidate]] = defaultdict(list)
        for row in rows:
            sellable = row["active"] and channel in row["channel_ids"]
            value = ats(events.position_of(row), channel).available_to_sell if sellable else 0
            available[(row["sku"], row["location_id"])] = value
            if sellable:
                region[(row["sku"], row["region_id"])].append(
                    Candidate(row["location_id"], row["allocation_priority"], value)
                )
        try:
            return plan_reservation(lines, available, region)
        except OutOfStockError as exc:
            await self._line_errors(conn, lines)
            raise out_of_stock(exc.sku) from None

    async def _allocate_and_hold(
        self, conn: Connection, channel: str, lines: Sequence[RequestLine]
    ) -> list[Allocation]:
        if all(line.location_id for line in lines):
            plan = _located_plan(lines)
            await self._hold_or_raise(conn, channel, plan, lines)
            return plan
        for _attempt in range(5):
            plan = await self._plan(conn, channel, lines)
            try:
                async with conn.transaction():  # savepoint: a failed hold leaves nothing behind
                    deltas = _sum(plan)
                    if len(await self._hold(conn, channel, deltas)) != len(deltas):
                        raise _RetryError
                return plan
            except _RetryError:
                continue  # someone took the stock between plan and hold: plan again
        raise out_of_stock(lines[0].sku, "stock kept changing while allocating; retry")

    async def reserve(
        self,
        conn: Connection,
        *,
        reservation_id: str,
        channel: str,
        lines: Sequence[RequestLine],
        ttl: timedelta,
        request_print: str,
        before_hold: Callable[[Connection, reservation_pb2.Reservation], Awaitable[None]] | None = None,
    ) -> tuple[reservation_pb2.Reservation, bool]:
        """All-or-nothing; returns (reservation, created). A retry with the same id returns it as is.

        Lines that all name a location take the fast path, built so that the contended position rows
        are locked for as short a time as possible: one statement inserts the header (its unique key
        serialises concurrent duplicates) and the lines; `before_hold` (the caller's audit) runs next;
        then one conditional UPDATE holds every position and one append_many writes ReservationChanged
        and the AvailabilityChanged events; then the caller commits. A failed hold raises and the caller
        rolls everything back. Region lines are planned against current ATS first (`before_hold` then
        runs after the hold).
        """
        if not all(line.location_id for line in lines):
            proto, created = await self._reserve_planned(
                conn,
                reservation_id=reservation_id,
                channel=channel,
                lines=lines,
                ttl=ttl,
                request_print=request_print,
            )
            if created and before_hold is not None:
                await before_hold(conn, proto)
            return proto, created
        plan = _located_plan(lines)
        times = await conn.fetchrow(
            _RESERVE_HEADER,
            reservation_id,
            channel,
            request_print,
            ttl,
            [a.request_line_index for a in plan],
            [a.sku for a in plan],
            [a.location_id for a in plan],
            [a.quantity for a in plan],
        )
        if times is None:
            return await self._existing_reservation(conn, reservation_id, request_print), False
        proto = _new_reservation(reservation_id, channel, plan, times["created_at"], times["expires_at"])
        if before_hold is not None:
            await before_hold(conn, proto)
        # From here on the positions are locked until commit.
        event = events.reservation_changed(proto, reservation_pb2.RESERVATION_CHANGE_CREATED)
        deltas = _sum(plan)
        if len(deltas) == 1 and await self._hold_one_and_announce(conn, channel, deltas, event):
            return proto, True
        # Several positions (locked in the global order first), a position watched by threshold rules,
        # or a hold refused above (which changed nothing): the general path, which raises on refusal.
        rows = await self._hold_or_raise(conn, channel, plan, lines)
        await self._announce(conn, rows, leading=[event])
        return proto, True

    async def reserve_in_one_statement(
        self,
        conn: Connection,
        *,
        reservation_id: str,
        channel: str,
        lines: Sequence[RequestLine],
        ttl: timedelta,
        request_print: str,
        audit: ReserveAudit,
    ) -> reservation_pb2.Reservation | None:
        """Reserve one position (every line names it) in one statement outside any transaction:
        header, lines, audit record, hold, ReservationChanged and AvailabilityChanged, atomic as one
        statement, the reply read back from the event's payload. None, having changed nothing, when
        that does not fit: several positions or region lines, a reservation id seen before, a refused
        hold, a position watched by threshold rules, a deadlock; the caller then runs `reserve`."""
        if not all(line.location_id for line in lines):
            return None
        plan = _located_plan(lines)
        deltas = _sum(plan)
        if len(deltas) != 1:
            return None
        (((sku, location_id), quantity),) = deltas.items()
        # The reservation as Python would build it, minus the database's times: the statement splices
        # them in (fields 5-7 between lines and version, so the bytes are the deterministic encoding).
        untimed = _new_reservation(reservation_id, channel, plan, None, None)
        head = reservation_pb2.Reservation()
        head.CopyFrom(untimed)
        head.ClearField("version")
        ids, tokens = events.subject_tokens([sku, location_id])
        try:
            rows = await self._events.append_select_returning(
                conn,
                ctes=_RESERVE_ONE,
                source=_RESERVE_ONE_EVENTS,
                payload=f"coalesce(s.fixed, {events.AVAILABILITY_PAYLOAD_SQL})",
                args=[
                    reservation_id,
                    channel,
                    request_print,
                    ttl,
                    [a.request_line_index for a in plan],
                    [a.sku for a in plan],
                    [a.location_id for a in plan],
                    [a.quantity for a in plan],
                    sku,
                    location_id,
                    quantity,
                    events.availability_subject_prefix(),
                    ids,
                    tokens,
                    head.SerializeToString(deterministic=True),
                    reservation_pb2.Reservation(version=1).SerializeToString(deterministic=True),
                    reservation_pb2.RESERVATION_CHANGE_CREATED,
                    events.subject("ReservationChanged", reservation_id),
                    audit.actor_id,
                    audit.actor_kind,
                    audit.action,
                    audit.request_id,
                    json.dumps(
                        MessageToDict(untimed, preserving_proto_field_name=True), default=str, sort_keys=True
                    ),
                    audit.trace_id,
                ],
            )
        except asyncpg.RaiseError as exc:
            if exc.message != _NOT_HELD:
                raise
            return None
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            return None
        if not rows:
            return None  # the id exists: `reserve` returns it (or refuses a different request)
        changed = events_pb2.ReservationChanged.FromString(bytes(rows[0]["payload"]))
        return changed.reservation

    async def _hold_one_and_announce(
        self, conn: Connection, channel: str, deltas: Mapping[Key, int], event: OutboxEvent
    ) -> bool:
        """Hold one position and write ReservationChanged and its AvailabilityChanged, all in one
        statement (OutboxWriter.append_select with the hold as a leading CTE; the position's event
        encoded in SQL). False, having changed nothing, if the hold is refused or the position is
        watched by threshold rules (whose evaluation is the general path's)."""
        (((sku, location_id), quantity),) = deltas.items()
        payload = event.payload
        assert isinstance(payload, Message)
        ids, tokens = events.subject_tokens([sku, location_id])
        written = await self._events.append_select(
            conn,
            ctes=_HOLD_ONE,
            source=_HOLD_ONE_EVENTS,
            payload=f"coalesce(s.fixed, {events.AVAILABILITY_PAYLOAD_SQL})",
            args=[
                sku,
                location_id,
                quantity,
                channel,
                events.availability_subject_prefix(),
                ids,
                tokens,
                event.aggregate_type,
                event.event_type,
                event.aggregate_key,
                event.subject,
                payload.SerializeToString(deterministic=True),
            ],
        )
        return written > 0

    async def _hold_or_raise(
        self, conn: Connection, channel: str, plan: Sequence[Allocation], lines: Sequence[RequestLine]
    ) -> list[Row]:
        """Hold every planned position or raise (INVALID_ARGUMENT for unknown input, else OUT_OF_STOCK)."""
        deltas = _sum(plan)
        rows = await self._hold(conn, channel, deltas)
        if len(rows) != len(deltas):
            held = {(r["sku"], r["location_id"]) for r in rows}
            await self._line_errors(conn, lines)
            raise out_of_stock(next(a.sku for a in plan if (a.sku, a.location_id) not in held))
        return rows

    async def _existing_reservation(
        self, conn: Connection, reservation_id: str, request_print: str
    ) -> reservation_pb2.Reservation:
        existing = await conn.fetchrow(
            "select fingerprint from reservations where reservation_id = $1", reservation_id
        )
        assert existing is not None
        if existing["fingerprint"] != request_print:
            raise InvalidArgument(
                [FieldViolation("reservation_id", "already used for a different request")],
                reason=Reason.IDEMPOTENCY_KEY_REUSED,
            )
        found = await self.get_reservation(conn, reservation_id)
        assert found is not None
        return found

    async def _reserve_planned(
        self,
        conn: Connection,
        *,
        reservation_id: str,
        channel: str,
        lines: Sequence[RequestLine],
        ttl: timedelta,
        request_print: str,
    ) -> tuple[reservation_pb2.Reservation, bool]:
        header = await conn.fetchrow(
            "insert into reservations (reservation_id, channel_id, state, fingerprint, expires_at)"
            " values ($1, $2, 'ACTIVE', $3, now() + $4::interval) on conflict (reservation_id) do nothing"
            " returning *",
            reservation_id,
            channel,
            request_print,
            ttl,
        )
        if header is None:
            return await self._existing_reservation(conn, reservation_id, request_print), False
        plan = await self._allocate_and_hold(conn, channel, lines)
        await conn.execute(
            """
            insert into reservation_lines (reservation_id, line_index, request_line_index, sku, location_id,
                                           quantity)
            select $1, i - 1, r, s, l, q
            from unnest($2::int[], $3::text[], $4::text[], $5::bigint[]) with ordinality as x(r, s, l, q, i)
            """,
            reservation_id,
            [a.request_line_index for a in plan],
            [a.sku for a in plan],
            [a.location_id for a in plan],
            [a.quantity for a in plan],
        )
        proto = await self._reservation_proto(conn, reservation_id)
        created = events.reservation_changed(proto, reservation_pb2.RESERVATION_CHANGE_CREATED)
        await self._after_stock_change(conn, _sum(plan), leading=[created])
        return proto, True

    async def _load_reservation(
        self, conn: Connection, reservation_id: str, *, lock: bool = False
    ) -> tuple[Row, list[Row]]:
        header = await conn.fetchrow(
            "select *, expires_at <= now() as past from reservations where reservation_id = $1"
            + (" for update" if lock else ""),
            reservation_id,
        )
        if header is None:
            raise NotFound("retail.inventory.v1.Reservation", reservation_id)
        lines = await conn.fetch(
            "select * from reservation_lines where reservation_id = $1 order by line_index", reservation_id
        )
        return header, list(lines)

    async def get_reservation(
        self, conn: Connection, reservation_id: str
    ) -> reservation_pb2.Reservation | None:
        try:
            header, lines = await self._load_reservation(conn, reservation_id)
        except NotFound:
            return None
        return events.reservation_proto(header, lines)

    async def list_reservations(
        self,
        conn: Connection,
        *,
        channel: str | None,
        state: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[reservation_pb2.Reservation]:
        headers = await conn.fetch(
            """
            select * from reservations
            where ($1::text is null or channel_id = $1) and ($2::text is null or state = $2)
              and ($3::timestamptz is null or (created_at, reservation_id) < ($3, $4))
            order by created_at desc, reservation_id desc limit $5
            """,
            channel,
            state,
            after[0] if after else None,
            after[1] if after else "",
            limit,
        )
        ids = [h["reservation_id"] for h in headers]
        lines: dict[str, list[Row]] = defaultdict(list)
        for line in await conn.fetch(
            "select * from reservation_lines where reservation_id = any($1::text[])", ids
        ):
            lines[line["reservation_id"]].append(line)
        return [events.reservation_proto(h, lines[h["reservation_id"]]) for h in headers]

    async def _save_reservation_state(
        self, conn: Connection, reservation_id: str, state: rsv.ReservationState
    ) -> None:
        await conn.execute(
            "update reservations set state = $2, version = version + 1, updated_at = now()"
            " where reservation_id = $1",
            reservation_id,
            state.value,
        )

    async def _reservation_proto(self, conn: Connection, reservation_id: str) -> reservation_pb2.Reservation:
        header, lines = await self._load_reservation(conn, reservation_id)
        return events.reservation_proto(header, lines)

    async def _reservation_changed(
        self, conn: Connection, reservation_id: str, change: reservation_pb2.ReservationChange.ValueType
    ) -> OutboxEvent:
        return events.reservation_changed(await self._reservation_proto(conn, reservation_id), change)

    async def extend_reservation(
        self, conn: Connection, reservation_id: str, ttl: timedelta
    ) -> reservation_pb2.Reservation:
        header, _ = await self._load_reservation(conn, reservation_id, lock=True)
        _check_active(header)
        await conn.execute(
            "update reservations set expires_at = now() + $2::interval, version = version + 1,"
            " updated_at = now() where reservation_id = $1",
            reservation_id,
            ttl,
        )
        proto = await self._reservation_proto(conn, reservation_id)
        await self._events.append_many(
            conn, [events.reservation_changed(proto, reservation_pb2.RESERVATION_CHANGE_EXTENDED)]
        )
        return proto

    async def settle_reservation(
        self,
        conn: Connection,
        reservation_id: str,
        requested: Sequence[tuple[int, int]] | None,
        *,
        confirm: bool,
        request_id: str,
    ) -> reservation_pb2.Reservation:
        """Confirm (units become a shipment movement) or release, whole or per line."""
        header, rows = await self._load_reservation(conn, reservation_id, lock=True)
        lines = [_line(r) for r in rows]
        transition = rsv.confirm if confirm else rsv.release
        try:
            new_lines, state, amounts = transition(
                rsv.ReservationState(header["state"]), lines, requested, expired=bool(header["past"])
            )
        except rsv.NotActiveError as exc:
            raise _not_active(reservation_id, exc) from None
        except rsv.LineQuantityError as exc:
            raise InvalidArgument([FieldViolation(f"lines[{exc.position}].quantity", str(exc))]) from None
        deltas: dict[Key, int] = defaultdict(int)
        for index, units in amounts.items():
            deltas[(lines[index].sku, lines[index].location_id)] += units
        column = "confirmed" if confirm else "released"
        await conn.execute(
            f"update reservation_lines rl set {column} = rl.{column} + x.units"
            " from unnest($2::int[], $3::bigint[]) as x(line_index, units)"
            " where rl.reservation_id = $1 and rl.line_index = x.line_index",
            reservation_id,
            list(amounts),
            list(amounts.values()),
        )
        await self._unhold(conn, header["channel_id"], deltas, ship=confirm)
        if confirm:
            await conn.execute(
                """
                insert into movements (movement_id, sku, location_id, delta, kind, occur_time)
                select 'reservation:' || $1 || ':' || $2 || ':' || x.i, x.sku, x.loc, -x.units,
                       'SHIPMENT', now()
                from unnest($3::text[], $4::text[], $5::bigint[]) with ordinality as x(sku, loc, units, i)
                """,
                reservation_id,
                request_id,
                [k[0] for k in sorted(deltas)],
                [k[1] for k in sorted(deltas)],
                [deltas[k] for k in sorted(deltas)],
            )
        await self._save_reservation_state(conn, reservation_id, state)
        del new_lines
        change = (
            reservation_pb2.RESERVATION_CHANGE_CONFIRMED
            if confirm
            else reservation_pb2.RESERVATION_CHANGE_RELEASED
        )
        proto = await self._reservation_proto(conn, reservation_id)
        await self._after_stock_change(conn, deltas, leading=[events.reservation_changed(proto, change)])
        return proto

    async def expire_due(self, conn: Connection, *, limit: int = 100) -> list[str]:
        """The expiry sweep (database clock): the only way a reservation expires. Returns expired ids."""
        headers = await conn.fetch(
            "select reservation_id, channel_id from reservations"
            " where state = 'ACTIVE' and expires_at <= now()"
            " order by expires_at, reservation_id limit $1 for update skip locked",
            limit,
        )
        if not headers:
            return []
        ids = [h["reservation_id"] for h in headers]
        channel_of = {h["reservation_id"]: h["channel_id"] for h in headers}
        held = await conn.fetch(
            "select reservation_id, sku, location_id, quantity - confirmed - released as held"
            " from reservation_lines where reservation_id = any($1::text[])"
            " and confirmed + released < quantity",
            ids,
        )
        by_channel: dict[str, dict[Key, int]] = defaultdict(lambda: defaultdict(int))
        for r in held:
            by_channel[channel_of[r["reservation_id"]]][(r["sku"], r["location_id"])] += int(r["held"])
        all_keys = {k for d in by_channel.values() for k in d}
        await self._lock(conn, all_keys)
        for channel in sorted(by_channel):
            await self._unhold(conn, channel, by_channel[channel], ship=False)
        lines_of: dict[str, list[Row]] = defaultdict(list)
        for line in await conn.fetch(
            "update reservation_lines set released = quantity - confirmed"
            " where reservation_id = any($1::text[]) returning *",
            ids,
        ):
            lines_of[line["reservation_id"]].append(line)
        updated = {
            h["reservation_id"]: h
            for h in await conn.fetch(
                "update reservations set state = 'EXPIRED', version = version + 1, updated_at = now()"
                " where reservation_id = any($1::text[]) returning *",
                ids,
            )
        }
        expired = [
            events.reservation_changed(
                events.reservation_proto(updated[i], lines_of[i]), reservation_pb2.RESERVATION_CHANGE_EXPIRED
            )
            for i in ids
        ]
        await self._after_stock_change(conn, all_keys, leading=expired)
        return ids

    # ------------------------------------------------------------------------------------ thresholds

    async def _evaluate_thresholds(self, conn: Connection, keys: Sequence[Key]) -> None:
        skus, locs = _split(keys)
        flipped = await conn.fetch(
            f"""
            with cur as (
                select t.rule_id,
                       case when l.active and t.channel_id = any(l.channel_ids)
                            then inv_ats(s.on_hand, s.reserved_total, s.safety_stock,
                                         l.default_fences || s.fences,
                                         s.channel_reserved, t.channel_id)
                            else 0 end as ats
                from threshold_rules t
                join stock s on s.sku = t.sku and s.location_id = t.location_id
                join locations l on l.location_id = s.location_id
                where (t.sku, t.location_id) in {_KEYS}
            )
            update threshold_rules t
            set state = case t.state when 'ABOVE' then 'BELOW' else 'ABOVE' end,
                version = t.version + 1, updated_at = now()
            from cur c
            where c.rule_id = t.rule_id and (
                (t.state = 'ABOVE' and case t.kind when 'ABSOLUTE' then c.ats < t.below_quantity
                    else c.ats * t.period_days < t.below_days::bigint * t.units_sold end)
                or (t.state = 'BELOW' and case t.kind when 'ABSOLUTE' then c.ats >= t.restore_quantity
                    else c.ats * t.period_days >= t.restore_days::bigint * t.units_sold end))
            returning t.*, c.ats
            """,
            skus,
            locs,
        )
        await self._events.append_many(
            conn, [events.threshold_state_changed(row, int(row["ats"])) for row in flipped]
        )

    async def create_rule(self, conn: Connection, rule: RuleIn) -> tuple[Row, bool]:
        existing = await conn.fetchrow("select * from threshold_rules where request_id = $1", rule.request_id)
        if existing is not None:
            return existing, False
        await self._ensure_positions(conn, [(rule.sku, rule.location_id)])
        await self._lock(conn, [(rule.sku, rule.location_id)])
        (position,) = await self.positions(conn, [(rule.sku, rule.location_id)])  # with its location
        state = _rule_state(rule, position)
        row = await conn.fetchrow(
            """
            insert into threshold_rules (rule_id, request_id, sku, location_id, channel_id, owner_kind,
                owner_id, kind, below_quantity, restore_quantity, units_sold, period_days, below_days,
                restore_days, state)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
            returning *
            """,
            uuid.uuid4(),
            rule.request_id,
            rule.sku,
            rule.location_id,
            rule.channel_id,
            rule.owner_kind,
            rule.owner_id,
            rule.kind,
            rule.below_quantity,
            rule.restore_quantity,
            rule.units_sold,
            rule.period_days,
            rule.below_days,
            rule.restore_days,
            state.value,
        )
        assert row is not None
        await conn.execute(
            "update stock set rule_count = rule_count + 1 where sku = $1 and location_id = $2",
            rule.sku,
            rule.location_id,
        )
        return row, True

    async def create_rules(
        self, conn: Connection, rules: Sequence[RuleIn], audit: ReserveAudit
    ) -> list[tuple[Row, bool]]:
        """create_rule for many rules, set-based (BatchCreateThresholdRules): (row, created) per input,
        in input order; a request_id seen before (or twice in `rules`) returns its first rule.

        A fixed number of statements whatever the count: the known request ids, the positions made and
        locked (global order), then one statement (_CREATE_RULES) that computes each new rule's initial
        state from its position's ATS in SQL (as _rule_state does in Python), inserts the rules, counts
        them on their positions and writes one audit record per rule, as the servicer's _audit writes
        it for CreateThresholdRule (`audit`: its actor, action, request and trace ids)."""
        ids = [r.request_id for r in rules]
        rows = await conn.fetch("select * from threshold_rules where request_id = any($1::text[])", ids)
        known: dict[str, Row] = {r["request_id"]: r for r in rows}
        fresh: list[RuleIn] = []
        seen = set(known)
        for r in rules:
            if r.request_id not in seen:
                seen.add(r.request_id)
                fresh.append(r)
        created: set[str] = set()
        if fresh:
            keys = sorted({(r.sku, r.location_id) for r in fresh})
            await self._ensure_positions(conn, keys)
            await self._lock(conn, keys)
            inserted = await conn.fetch(
                _CREATE_RULES,
                *([getattr(r, name) for r in fresh] for name in _RULE_COLUMNS),
                audit.actor_id,
                audit.actor_kind,
                audit.action,
                audit.request_id,
                audit.trace_id,
            )
            known.update({r["request_id"]: r for r in inserted})
            created = {r["request_id"] for r in inserted}
            raced = [r.request_id for r in fresh if r.request_id not in created]
            if raced:  # registered by a concurrent call that committed first: theirs is the rule
                more = await conn.fetch(
                    "select * from threshold_rules where request_id = any($1::text[])", raced
                )
                known.update({r["request_id"]: r for r in more})
        out = []
        for r in rules:
            out.append((known[r.request_id], r.request_id in created))
            created.discard(r.request_id)  # a repeated request_id in one batch created one rule
        return out

    async def get_rule(self, conn: Connection, rule_id: uuid.UUID) -> Row | None:
        return await conn.fetchrow("select * from threshold_rules where rule_id = $1", rule_id)

    async def list_rules(
        self,
        conn: Connection,
        *,
        sku: str | None,
        location_id: str | None,
        campaign_id: str | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[Row]:
        return list(
            await conn.fetch(
                """
                select * from threshold_rules
                where ($1::text is null or sku = $1) and ($2::text is null or location_id = $2)
                  and ($3::text is null or (owner_kind = 'campaign' and owner_id = $3))
                  and ($4::uuid is null or rule_id > $4)
                order by rule_id limit $5
                """,
                sku,
                location_id,
                campaign_id,
                after,
                limit,
            )
        )

    async def delete_rule(self, conn: Connection, rule_id: uuid.UUID, etag: str = "") -> Row | None:
        """Delete a rule (None if unknown); ABORTED if `etag` is given and the rule changed since."""
        row = await conn.fetchrow("select sku, location_id from threshold_rules where rule_id = $1", rule_id)
        if row is None:
            return None
        # State flips happen under the position's lock: holding it, the version cannot move.
        await self._lock(conn, [(row["sku"], row["location_id"])])
        version = await conn.fetchval("select version from threshold_rules where rule_id = $1", rule_id)
        if version is None:
            return None
        if etag and etag != str(version):
            raise Aborted(
                f"threshold rule {rule_id} changed (etag {etag!r} is stale); re-read it and retry",
                domain=ERROR_DOMAIN,
            )
        deleted = await conn.fetchrow("delete from threshold_rules where rule_id = $1 returning *", rule_id)
        if deleted is not None:
            await conn.execute(
                "update stock set rule_count = rule_count - 1 where sku = $1 and location_id = $2",
                deleted["sku"],
                deleted["location_id"],
            )
        return deleted


# Staging of a snapshot batch (emptied at commit): the COPY target and the merge plan.
_SNAPSHOT_TEMP_TABLES = """
create temp table if not exists inv_snap_in (sku text, location_id text, on_hand bigint, as_of timestamptz)
    on commit delete rows;
create temp table if not exists inv_snap_merge (sku text, location_id text, old_on_hand bigint,
    new_on_hand bigint, reserved_total bigint, as_of timestamptz, inserted boolean) on commit delete rows
"""

# The merge plan of the staged batch (temp tables have no statistics until analysed; the joins need
# them). A batch touches a few thousand of possibly millions of positions: every join with stock goes
# through its primary key (nested loops; at 10^5 cached positions the planner would rather hash the
# whole table, ~5 us per batch row, growing with the estate). Existing positions are filtered out
# first, then known SKUs among the rest (cheaper than letting ON CONFLICT find each; it stays for
# concurrent imports). New positions are created with the snapshot's figures directly: no movement can
# exist for a position that does not exist yet, since recording a movement creates its position.
# Existing positions the snapshot is newer for are locked in the global order, their new on-hand =
# snapshot + the movements that occurred after its as-of (one grouped join, not a probe per position).
_SNAPSHOT_MERGE = """
analyze inv_snap_in;
set local enable_hashjoin = off; set local enable_mergejoin = off;
with fresh as materialized (
    select i.sku, i.location_id, i.on_hand, i.as_of from inv_snap_in i
    where not exists (select 1 from stock s where s.sku = i.sku and s.location_id = i.location_id)),
new_skus as (
    insert into skus (sku)
    select distinct f.sku from fresh f where not exists (select 1 from skus k where k.sku = f.sku)
    on conflict do nothing),
created as (
    insert into stock (sku, location_id, on_hand, snapshot_as_of, version)
    select sku, location_id, on_hand, as_of, (on_hand <> 0)::int from fresh
    order by sku, location_id on conflict do nothing returning sku, location_id, on_hand)
insert into inv_snap_merge select sku, location_id, 0, on_hand, 0, null, true from created;
with later as (
    select i.sku, i.location_id, sum(m.delta) as delta
    from inv_snap_in i join movements m
      on m.sku = i.sku and m.location_id = i.location_id and m.occur_time > i.as_of
    group by i.sku, i.location_id)
insert into inv_snap_merge
select s.sku, s.location_id, s.on_hand, i.on_hand + coalesce(later.delta, 0), s.reserved_total, i.as_of,
       false
from inv_snap_in i join stock s on s.sku = i.sku and s.location_id = i.location_id
left join later on later.sku = i.sku and later.location_id = i.location_id
where s.snapshot_as_of is null or i.as_of > s.snapshot_as_of
order by s.sku, s.location_id
for update of s;
set local enable_hashjoin to default; set local enable_mergejoin to default;
analyze inv_snap_merge
"""

# The merge plan applied to the existing positions (by key: nested loops, as in _SNAPSHOT_MERGE).
_SNAPSHOT_UPDATE = """
set local enable_hashjoin = off; set local enable_mergejoin = off;
update stock s set on_hand = m.new_on_hand, snapshot_as_of = m.as_of,
       version = s.version + (m.new_on_hand <> m.old_on_hand)::int, updated_at = now()
from inv_snap_merge m
where not m.inserted and s.sku = m.sku and s.location_id = m.location_id;
set local enable_hashjoin to default; set local enable_mergejoin to default
"""

# Header and lines of a new reservation in one statement; no row when the id exists (its unique key
# serialises concurrent duplicates: the second waits for the first to commit, then finds it).
_RESERVE_HEADER = """
with hdr as (
    insert into reservations (reservation_id, channel_id, state, fingerprint, expires_at)
    values ($1, $2, 'ACTIVE', $3, now() + $4::interval)
    on conflict (reservation_id) do nothing
    returning created_at, expires_at
), lines as (
    insert into reservation_lines (reservation_id, line_index, request_line_index, sku, location_id, quantity)
    select $1, x.i - 1, x.r, x.s, x.l, x.q
    from hdr, unnest($5::int[], $6::text[], $7::text[], $8::bigint[]) with ordinality as x(r, s, l, q, i)
)
select created_at, expires_at from hdr
"""

# The hold: ATS check and increment in one conditional UPDATE per position (re-checked by Postgres on
# the latest row version under the row lock). Returns the held positions joined with their location.
_HOLD = f"""
update stock s set reserved_total = s.reserved_total + r.qty,
       channel_reserved = inv_add_reserved(s.channel_reserved, $4, r.qty),
       version = s.version + 1, updated_at = now()
from unnest($1::text[], $2::text[], $3::bigint[]) as r(sku, location_id, qty), locations l
where s.sku = r.sku and s.location_id = r.location_id and l.location_id = s.location_id
  and l.active and $4 = any(l.channel_ids)
  and inv_ats(s.on_hand, s.reserved_total, s.safety_stock, l.default_fences || s.fences,
              s.channel_reserved, $4) >= r.qty
returning {_JOINED}
"""


# The hold of one position as a leading CTE of append_select (sku $1, location $2, units $3, channel
# $4): the same conditional UPDATE as _HOLD, and only where no threshold rule watches the position
# (rule_count is maintained under the row lock, so this is re-checked with the ATS).
_HOLD_ONE = """
held as (
    update stock s set reserved_total = s.reserved_total + $3,
           channel_reserved = inv_add_reserved(s.channel_reserved, $4, $3),
           version = s.version + 1, updated_at = now()
    from locations l
    where s.sku = $1 and s.location_id = $2 and l.location_id = s.location_id
      and l.active and $4 = any(l.channel_ids) and s.rule_count = 0
      and inv_ats(s.on_hand, s.reserved_total, s.safety_stock, l.default_fences || s.fences,
                  s.channel_reserved, $4) >= $3
    returning s.*
)
"""

_HELD_POSITIONS = "held s join locations l on l.location_id = s.location_id"

# reserve_in_one_statement: reservation $1, channel $2, fingerprint $3, ttl $4, lines $5-$8, the position
# $9-$11 (sku, location, units), subject prefix and tokens $12-$14, the reservation's encoding around its
# times $15-$16, its change $17 and subject $18, the audit record's actor, action, request and trace ids
# and JSON $19-$24. Nothing is held for a reservation id seen before (no header inserted); a new one
# that is not held (refused, or watched by threshold rules) fails the whole statement.
_NOT_HELD = "inventory: not held in one statement"
_RESERVE_ONE = f"""
hdr as (
    insert into reservations (reservation_id, channel_id, state, fingerprint, expires_at)
    values ($1, $2, 'ACTIVE', $3, now() + $4::interval)
    on conflict (reservation_id) do nothing
    returning created_at, expires_at, updated_at
),
lines as (
    insert into reservation_lines (reservation_id, line_index, request_line_index, sku, location_id, quantity)
    select $1, x.i - 1, x.r, x.s, x.l, x.q
    from hdr, unnest($5::int[], $6::text[], $7::text[], $8::bigint[]) with ordinality as x(r, s, l, q, i)
),
held as (
    update stock s set reserved_total = s.reserved_total + $11,
           channel_reserved = inv_add_reserved(s.channel_reserved, $2, $11),
           version = s.version + 1, updated_at = now()
    from locations l, hdr
    where s.sku = $9 and s.location_id = $10 and l.location_id = s.location_id
      and l.active and $2 = any(l.channel_ids) and s.rule_count = 0
      and inv_ats(s.on_hand, s.reserved_total, s.safety_stock, l.default_fences || s.fences,
                  s.channel_reserved, $2) >= $11
    returning s.*
),
verdict as (
    select inv_require(exists (select 1 from held), '{_NOT_HELD}') as ok
),
audited as (
    insert into audit_log (actor_id, actor_kind, action, entity_type, entity_key, request_id, before, after,
                           trace_id)
    select $19, $20, $21, 'retail.inventory.v1.Reservation', $1, $22, null,
           $23::text::jsonb || jsonb_build_object('create_time', inv_json_time(h.created_at),
                                                  'expire_time', inv_json_time(h.expires_at),
                                                  'update_time', inv_json_time(h.updated_at)),
           $24
    from hdr h
)
"""

_RESERVE_ONE_EVENTS = f"""
select 'retail.inventory.v1.Reservation'::text as aggregate_type,
       'retail.inventory.v1.ReservationChanged'::text as event_type, $1::text as aggregate_key,
       $18::text as subject,
       inv_pb_int(8, $17::bigint)
       || inv_pb_len(18, $15::bytea || inv_pb_timestamp(42, h.created_at)
                         || inv_pb_timestamp(50, h.expires_at) || inv_pb_timestamp(58, h.updated_at)
                         || $16::bytea) as fixed,
       null::text as sku, null::text as location_id, null::bigint as on_hand, null::bigint as reserved_total,
       null::bigint as safety_stock, null::bytea as change_time, null::bytea as channels
from hdr h cross join verdict v
where v.ok
union all
select '{events.STOCK_POSITION_AGGREGATE}', '{events.AVAILABILITY_EVENT_TYPE}', a.aggregate_key, a.subject,
       null, a.sku, a.location_id, a.on_hand, a.reserved_total, a.safety_stock, a.change_time, a.channels
from ({events.availability_source_sql(_HELD_POSITIONS, (12, 13, 14))}) a
"""
# Its events: the reservation's (type $8, event $9, key $10, subject $11, payload $12, built in Python)
# and the held position's AvailabilityChanged (subject prefix and tokens $5-$7), none if nothing held.
_HOLD_ONE_EVENTS = f"""
select $8::text as aggregate_type, $9::text as event_type, $10::text as aggregate_key,
       $11::text as subject, $12::bytea as fixed, null::text as sku, null::text as location_id,
       null::bigint as on_hand, null::bigint as reserved_total, null::bigint as safety_stock,
       null::bytea as change_time, null::bytea as channels
where exists (select 1 from held)
union all
select '{events.STOCK_POSITION_AGGREGATE}', '{events.AVAILABILITY_EVENT_TYPE}', a.aggregate_key, a.subject,
       null, a.sku, a.location_id, a.on_hand, a.reserved_total, a.safety_stock, a.change_time, a.channels
from ({events.availability_source_sql(_HELD_POSITIONS, (5, 6, 7))}) a
"""


# The fields of RuleIn that _CREATE_RULES takes as parallel arrays $1..$13, in this order.
_RULE_COLUMNS = (
    "request_id",
    "sku",
    "location_id",
    "channel_id",
    "owner_kind",
    "owner_id",
    "kind",
    "below_quantity",
    "restore_quantity",
    "units_sold",
    "period_days",
    "below_days",
    "restore_days",
)
# New threshold rules (request ids not yet known, each once; their positions exist and are locked), in
# one statement: the initial state from the position's ATS for the rule's channel (0 where the location
# is inactive or does not sell in it), BELOW when already low, the low test of _evaluate_thresholds and
# domain.threshold; each position's rule_count raised by its new rules; one audit record per rule in
# input order, `after` being the rule as MessageToDict(threshold_rule_proto(row)) writes it (int64 as
# strings, int32 as numbers; no field is zero or empty: validation requires them) with the audit
# columns of append_audit ($14..$18). A request id a concurrent call inserted first is skipped (on
# conflict): the caller reads that rule.
_CREATE_RULES = """
with input as (
    select *
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::bigint[], $9::bigint[], $10::bigint[], $11::int[], $12::int[], $13::int[])
         with ordinality
         as i(request_id, sku, location_id, channel_id, owner_kind, owner_id, kind, below_quantity,
              restore_quantity, units_sold, period_days, below_days, restore_days, ord)
),
valued as (
    select i.*,
           case when l.active and i.channel_id = any(l.channel_ids)
                then inv_ats(s.on_hand, s.reserved_total, s.safety_stock, l.default_fences || s.fences,
                             s.channel_reserved, i.channel_id)
                else 0 end as ats
    from input i
    join stock s on s.sku = i.sku and s.location_id = i.location_id
    join locations l on l.location_id = i.location_id
),
stamp as (  -- every rule's created_at and updated_at, and its JSON form, computed once
    select now() as at, inv_json_time(now()) as json
),
ins as (
    insert into threshold_rules (rule_id, request_id, sku, location_id, channel_id, owner_kind, owner_id,
        kind, below_quantity, restore_quantity, units_sold, period_days, below_days, restore_days,
        created_at, updated_at, state)
    select gen_random_uuid(), v.request_id, v.sku, v.location_id, v.channel_id, v.owner_kind, v.owner_id,
           v.kind, v.below_quantity, v.restore_quantity, v.units_sold, v.period_days, v.below_days,
           v.restore_days, (select at from stamp), (select at from stamp),
           case when case v.kind when 'ABSOLUTE' then v.ats < v.below_quantity
                                 else v.ats * v.period_days < v.below_days::bigint * v.units_sold end
                then 'BELOW' else 'ABOVE' end
    from valued v
    order by v.ord
    on conflict (request_id) do nothing
    returning *
),
counted as (
    update stock s set rule_count = s.rule_count + n.added
    from (select sku, location_id, count(*) as added from ins group by sku, location_id) n
    where s.sku = n.sku and s.location_id = n.location_id
),
audited as (
    insert into audit_log (actor_id, actor_kind, action, entity_type, entity_key, request_id, before, after,
                           trace_id)
    select $14::text, $15::text, $16::text, 'retail.inventory.v1.ThresholdRule', t.rule_id::text, $17::text,
           null,
           jsonb_build_object(
               'rule_id', t.rule_id::text, 'sku', t.sku, 'location_id', t.location_id,
               'channel_id', t.channel_id,
               'owner', jsonb_build_object(
                   case t.owner_kind when 'operator' then 'operator_id' else 'campaign_id' end, t.owner_id),
               'state', 'THRESHOLD_STATE_' || t.state, 'version', t.version::text,
               'create_time', m.json, 'update_time', m.json,
               'etag', t.version::text)
           || case t.kind
                  when 'ABSOLUTE' then jsonb_build_object('absolute', jsonb_build_object(
                      'below_quantity', t.below_quantity::text, 'restore_quantity', t.restore_quantity::text))
                  else jsonb_build_object('days_of_cover', jsonb_build_object(
                      'units_sold', t.units_sold::text, 'period_days', t.period_days,
                      'below_days', t.below_days, 'restore_days', t.restore_days)) end,
           $18::text
    from ins t join input i on i.request_id = t.request_id cross join stamp m
    order by i.ord
)
select * from ins
"""


class _RetryError(Exception):
    pass


def _located_plan(lines: Sequence[RequestLine]) -> list[Allocation]:
    """The allocation of lines that each name their location: line i at that location, as asked."""
    return [Allocation(i, line.sku, line.location_id or "", line.quantity) for i, line in enumerate(lines)]


def _new_reservation(
    reservation_id: str,
    channel: str,
    plan: Sequence[Allocation],
    created_at: datetime | None,
    expires_at: datetime | None,
) -> reservation_pb2.Reservation:
    """A just-created ACTIVE reservation (version 1) of `plan`, as its ReservationChanged carries it;
    without times when the database splices them in (the one-statement Reserve)."""
    header = {
        "reservation_id": reservation_id,
        "channel_id": channel,
        "state": "ACTIVE",
        "created_at": created_at,
        "expires_at": expires_at,
        "updated_at": created_at,
        "version": 1,
    }
    line_rows = [
        {
            "line_index": i,
            "request_line_index": a.request_line_index,
            "sku": a.sku,
            "location_id": a.location_id,
            "quantity": a.quantity,
            "confirmed": 0,
            "released": 0,
        }
        for i, a in enumerate(plan)
    ]
    return events.reservation_proto(header, line_rows)  # type: ignore[arg-type]


def _sum(plan: Iterable[Allocation]) -> dict[Key, int]:
    out: dict[Key, int] = defaultdict(int)
    for a in plan:
        out[(a.sku, a.location_id)] += a.quantity
    return dict(out)


def _line(row: Row) -> rsv.Line:
    return rsv.Line(
        sku=row["sku"],
        location_id=row["location_id"],
        quantity=row["quantity"],
        confirmed=row["confirmed"],
        released=row["released"],
        request_line_index=row["request_line_index"],
    )


def _check_active(header: Row) -> None:
    try:
        state = rsv.ReservationState(header["state"])
        if state is not rsv.ReservationState.ACTIVE or header["past"]:
            raise rsv.NotActiveError(
                state, expired=bool(header["past"]) or state is rsv.ReservationState.EXPIRED
            )
    except rsv.NotActiveError as exc:
        raise _not_active(header["reservation_id"], exc) from None


def _not_active(reservation_id: str, exc: rsv.NotActiveError) -> FailedPrecondition:
    expired = exc.expired or exc.state is rsv.ReservationState.EXPIRED
    return FailedPrecondition(
        [PreconditionViolation("RESERVATION_STATE", reservation_id, str(exc))],
        f"reservation {reservation_id} is not active: {exc}",
        reason=RESERVATION_EXPIRED if expired else RESERVATION_NOT_ACTIVE,
        domain=ERROR_DOMAIN,
    )


def _json(value: Mapping[str, Mapping[str, int]]) -> str:
    return json.dumps({k: dict(v) for k, v in value.items()}, sort_keys=True)
