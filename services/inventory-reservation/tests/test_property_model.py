"""Random sequences of snapshots (out of order), movements (with duplicates), reservations, partial
confirms, releases and expiries against the real database, compared after every step with a simple
reference model that recomputes everything from the history."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retail_common.db import AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, create_pool, migrate, transaction
from retail_common.errors import FailedPrecondition
from retail_common.messaging import MESSAGING_MIGRATIONS, OutboxWriter
from retail_inventory.domain.allocation import RequestLine
from retail_inventory.repository import MIGRATIONS, InventoryRepository, MovementIn, SnapshotIn
from retail_inventory.testing import at, check_invariants, location

SKUS = ["a", "b"]
LOC = "s1"
CHANNELS = ["web", "mkt"]


@dataclass
class Res:
    channel: str
    lines: list[list[int]]  # [sku index, quantity, confirmed, released]
    state: str = "ACTIVE"

    def held(self, i: int) -> int:
        q, c, r = self.lines[i][1:]
        return q - c - r


@dataclass
class Model:
    """The reference: on-hand from the newest snapshot plus later movements; reservations as lists."""

    snapshots: dict[str, dict[int, int]] = field(default_factory=lambda: {s: {} for s in SKUS})
    movements: dict[str, tuple[str, float, int]] = field(default_factory=dict)
    reservations: dict[str, Res] = field(default_factory=dict)

    def on_hand(self, sku: str) -> int:
        snaps = self.snapshots[sku]
        newest = max(snaps) if snaps else None
        base = snaps[newest] if newest is not None else 0
        return base + sum(
            d for s, t, d in self.movements.values() if s == sku and (newest is None or t > newest)
        )

    def reserved(self, sku: str, channel: str | None = None) -> int:
        return sum(
            r.held(i)
            for r in self.reservations.values()
            if r.state == "ACTIVE" and (channel is None or r.channel == channel)
            for i, line in enumerate(r.lines)
            if SKUS[line[0]] == sku
        )

    def settle(self, r: Res) -> None:
        if all(r.held(i) == 0 for i in range(len(r.lines))):
            r.state = "CONFIRMED" if any(line[2] for line in r.lines) else "RELEASED"

    def shortage(self, sku: str) -> None:
        excess = self.reserved(sku) - max(0, self.on_hand(sku))
        for rid in sorted(self.reservations, reverse=True):  # ids sort in creation order
            r = self.reservations[rid]
            if excess <= 0:
                break
            if r.state != "ACTIVE":
                continue
            for i in reversed(range(len(r.lines))):
                if SKUS[r.lines[i][0]] == sku and r.held(i) > 0 and excess > 0:
                    cut = min(r.held(i), excess)
                    r.lines[i][3] += cut
                    excess -= cut
            self.settle(r)


KINDS = ["reserve"] * 4 + ["snapshot", "move", "move", "confirm", "release", "release_all", "expire"]


@st.composite
def op(draw: st.DrawFn) -> tuple:
    kind = draw(st.sampled_from(KINDS))
    if kind == "snapshot":
        return (kind, draw(st.sampled_from(SKUS)), draw(st.integers(0, 30)), draw(st.integers(0, 12)))
    if kind == "move":
        return (
            kind,
            draw(st.sampled_from(SKUS)),
            draw(st.integers(0, 30)),
            draw(st.integers(-8, 6)),
            draw(st.integers(0, 9)),
        )
    if kind == "reserve":
        lines = st.lists(
            st.tuples(st.integers(0, 1), st.integers(1, 4)), min_size=1, max_size=2, unique_by=lambda x: x[0]
        )
        return (kind, draw(st.sampled_from(CHANNELS)), draw(lines))
    if kind in ("confirm", "release"):
        return (kind, draw(st.integers(0, 20)), draw(st.integers(0, 1)), draw(st.integers(1, 4)))
    return (kind, draw(st.integers(0, 20)))


ops = st.lists(op(), min_size=3, max_size=25)


async def run_sequence(dsn: str, sequence: list[tuple]) -> None:
    tag = uuid.uuid4().hex[:8]
    sku_of = {s: f"{tag}-{s}" for s in SKUS}
    repo = InventoryRepository(OutboxWriter())
    model = Model()
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with transaction(pool) as conn:
            await repo.upsert_location(conn, location(LOC, channels=tuple(CHANNELS)))
        n_res = 0
        for step, op in enumerate(sequence):
            kind = op[0]
            if kind == "snapshot":
                _, sku, minute, qty = op
                async with transaction(pool) as conn:
                    await repo.import_snapshot_batch(conn, [SnapshotIn(sku_of[sku], LOC, qty, at(minute))])
                if minute not in model.snapshots[sku] and (
                    not model.snapshots[sku] or minute > max(model.snapshots[sku])
                ):
                    model.snapshots[sku][minute] = qty
                    model.shortage(sku)
            elif kind == "move":
                _, sku, minute, delta, mid = op
                if delta == 0:
                    continue
                movement_id = f"{tag}-m{mid}"
                async with transaction(pool) as conn:
                    await repo.record_movements(
                        conn,
                        [
                            MovementIn(
                                movement_id, sku_of[sku], LOC, delta, "MOVEMENT_KIND_ADJUSTMENT", at(minute)
                            )
                        ],
                    )
                if movement_id not in model.movements:
                    model.movements[movement_id] = (sku, minute, delta)
                    model.shortage(sku)
            elif kind == "reserve":
                _, channel, lines = op
                rid = f"{tag}-r{n_res:03d}"
                n_res += 1
                fits = all(q <= max(0, model.on_hand(SKUS[s]) - model.reserved(SKUS[s])) for s, q in lines)
                try:
                    async with transaction(pool) as conn:
                        await repo.reserve(
                            conn,
                            reservation_id=rid,
                            channel=channel,
                            lines=[RequestLine(sku_of[SKUS[s]], q, LOC) for s, q in lines],
                            ttl=timedelta(minutes=5),
                            request_print=rid,
                        )
                    accepted = True
                except FailedPrecondition:
                    accepted = False
                assert accepted == fits, (step, op)
                if accepted:
                    model.reservations[rid] = Res(channel, [[s, q, 0, 0] for s, q in lines])
            elif kind in ("confirm", "release", "release_all", "expire"):
                ids = sorted(model.reservations)
                if not ids:
                    continue
                rid = ids[op[1] % len(ids)]
                r = model.reservations[rid]
                if kind == "expire":
                    await pool.execute(
                        "update reservations set expires_at = now() - interval '1 second'"
                        " where reservation_id = $1",
                        rid,
                    )
                    async with transaction(pool) as conn:
                        expired = await repo.expire_due(conn)
                    assert expired == ([rid] if r.state == "ACTIVE" else []), (step, op)
                    if r.state == "ACTIVE":
                        for line in r.lines:
                            line[3] = line[1] - line[2]
                        r.state = "EXPIRED"
                    continue
                line_index = op[2] % len(r.lines) if kind != "release_all" else 0
                qty = op[3] if kind != "release_all" else 0
                ok = r.state == "ACTIVE" and (kind == "release_all" or qty <= r.held(line_index))
                try:
                    async with transaction(pool) as conn:
                        await repo.settle_reservation(
                            conn,
                            rid,
                            None if kind == "release_all" else [(line_index, qty)],
                            confirm=kind == "confirm",
                            request_id=f"{tag}-{step}",
                        )
                    done = True
                except Exception:
                    done = False
                assert done == ok, (step, op)
                if ok:
                    if kind == "release_all":
                        for i, line in enumerate(r.lines):
                            line[3] += r.held(i)
                    elif kind == "confirm":
                        r.lines[line_index][2] += qty
                        sku = SKUS[r.lines[line_index][0]]
                        model.movements[f"ship-{step}"] = (sku, float("inf"), -qty)
                    else:
                        r.lines[line_index][3] += qty
                    model.settle(r)
            # compare after every step
            for s in SKUS:
                row = await pool.fetchrow(
                    "select on_hand, reserved_total, channel_reserved from stock where sku = $1", sku_of[s]
                )
                expected_on_hand = model.on_hand(s)
                if row is None:
                    assert expected_on_hand == 0
                    assert model.reserved(s) == 0
                    continue
                assert row["on_hand"] == expected_on_hand, (step, op, s)
                assert row["reserved_total"] == model.reserved(s), (step, op, s)
                for c in CHANNELS:
                    assert int(row["channel_reserved"].get(c, 0)) == model.reserved(s, c)
            for rid, r in model.reservations.items():
                db = await pool.fetchrow("select state from reservations where reservation_id = $1", rid)
                assert db["state"] == r.state, (step, op, rid)
                lines = await pool.fetch(
                    "select quantity, confirmed, released from reservation_lines where reservation_id = $1"
                    " order by line_index",
                    rid,
                )
                assert [(x["quantity"], x["confirmed"], x["released"]) for x in lines] == [
                    tuple(line[1:]) for line in r.lines
                ], (step, op, rid)
        await check_invariants(pool)
    finally:
        await pool.close()


def test_random_sequences_match_the_reference_model(database_url):
    asyncio.run(
        migrate(database_url, [AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, MESSAGING_MIGRATIONS, MIGRATIONS])
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(ops)
    def check(sequence):
        prelude = [("snapshot", "a", 15, 10), ("snapshot", "b", 15, 10)]
        asyncio.run(run_sequence(database_url, prelude + sequence))

    check()
