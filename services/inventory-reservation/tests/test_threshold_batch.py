"""BatchCreateThresholdRules' set-based create_rules against the per-rule create_rule path: the same rules
and initial states (ATS per channel, absolute and days of cover, unsellable and inactive positions), the
same later behaviour, one effect per request id, and audit records as the servicer's _audit writes them."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.protobuf.json_format import MessageToDict

from retail_common.db import transaction
from retail_inventory import events
from retail_inventory.repository import MovementIn, ReserveAudit, RuleIn
from retail_inventory.testing import at, location, outbox_count, seed

AUDIT = ReserveAudit(
    action="/retail.inventory.v1.InventoryService/BatchCreateThresholdRules",
    actor_id="promo",
    actor_kind="SERVICE",
    request_id="call-1",
    trace_id="0" * 31 + "7",
)
STOCK = {("A", "s1"): 3, ("A", "s2"): 12, ("B", "s1"): 40, ("B", "s2"): 9, ("C", "s3"): 50}


def rules(prefix: str) -> list[RuleIn]:
    """A mixed batch: positions below and above their marks, absolute and days of cover, a channel the
    location does not sell in (ATS 0), an inactive location (s3), a position without stock (D/s1)."""

    def absolute(n: int, sku: str, loc: str, channel: str, below: int, restore: int) -> RuleIn:
        return RuleIn(f"{prefix}{n}", sku, loc, channel, "campaign", "camp-1", "ABSOLUTE", below, restore)

    def cover(n: int, sku: str, loc: str, channel: str, sold: int, days: int, below: int) -> RuleIn:
        return RuleIn(
            f"{prefix}{n}", sku, loc, channel, "operator", "ops-1", "DAYS_OF_COVER",
            units_sold=sold, period_days=days, below_days=below, restore_days=below + 2,
        )  # fmt: skip

    return [
        absolute(0, "A", "s1", "web", 5, 8),  # 3 < 5: BELOW
        absolute(1, "A", "s2", "web", 10, 15),  # 12: ABOVE (under restore, but a new rule is not low)
        absolute(2, "A", "s2", "mkt", 12, 12),  # 12 is not < 12: ABOVE
        absolute(3, "B", "s2", "web", 10, 10),  # 9: BELOW
        cover(4, "B", "s1", "web", 70, 7, 3),  # 40 units, 10/day: 4 days, not < 3: ABOVE
        cover(5, "B", "s1", "mkt", 70, 7, 5),  # 4 days < 5: BELOW
        cover(6, "A", "s2", "web", 7, 7, 12),  # 12 days, not < 12: ABOVE
        absolute(7, "A", "s1", "pos", 1, 1),  # s1 does not sell in pos: ATS 0: BELOW
        absolute(8, "C", "s3", "web", 1, 1),  # s3 is inactive: ATS 0: BELOW
        absolute(9, "D", "s1", "web", 1, 4),  # no stock yet: BELOW
    ]


def content(row: Any) -> tuple[Any, ...]:
    """A rule without its identity and times."""
    skip = {"rule_id", "request_id", "created_at", "updated_at"}
    return tuple(v for k, v in dict(row).items() if k not in skip)


async def prepare(pool: Any, repo: Any) -> None:
    await seed(pool, repo, {k: v for k, v in STOCK.items() if k[1] != "s3"})
    async with transaction(pool) as conn:
        await repo.upsert_location(conn, dataclasses.replace(location("s3"), active=False))
        seed_c = MovementIn("seed-C", "C", "s3", 50, "MOVEMENT_KIND_RECEIPT", at(0))
        await repo.record_movements(conn, [seed_c])


async def test_batch_creates_the_rules_and_states_of_the_per_rule_path(pool, repo):
    await prepare(pool, repo)
    flips = await outbox_count(pool, "ThresholdStateChanged")
    async with transaction(pool) as conn:
        one_by_one = [(await repo.create_rule(conn, r))[0] for r in rules("s-")]
    async with transaction(pool) as conn:
        batch = await repo.create_rules(conn, rules("b-"), AUDIT)
    assert all(created for _, created in batch)
    assert [content(row) for row, _ in batch] == [content(row) for row in one_by_one]
    assert [row["state"] for row in one_by_one] == [
        "BELOW", "ABOVE", "ABOVE", "BELOW", "ABOVE", "BELOW", "ABOVE", "BELOW", "BELOW", "BELOW",
    ]  # fmt: skip
    assert await outbox_count(pool, "ThresholdStateChanged") == flips  # creation announces nothing
    counts = await pool.fetch("select sku, location_id, rule_count from stock order by 1, 2")
    assert {(r["sku"], r["location_id"]): r["rule_count"] for r in counts} == {
        ("A", "s1"): 4, ("A", "s2"): 6, ("B", "s1"): 4, ("B", "s2"): 2, ("C", "s3"): 2, ("D", "s1"): 2,
    }  # fmt: skip
    # Both kinds of rule then follow the stock alike (hysteresis from their initial state).
    async with transaction(pool) as conn:
        await repo.record_movements(
            conn,
            [
                MovementIn("m1", "A", "s2", -3, "MOVEMENT_KIND_ADJUSTMENT", at(5)),  # 9: below 10
                MovementIn("m2", "B", "s1", 20, "MOVEMENT_KIND_ADJUSTMENT", at(5)),  # 60: 6 days
                MovementIn("m3", "D", "s1", 4, "MOVEMENT_KIND_RECEIPT", at(5)),  # 4: restored
            ],
        )
    after = await pool.fetch("select * from threshold_rules order by request_id")
    by_id = {r["request_id"]: r for r in after}
    for r in rules("s-"):
        twin = by_id["b-" + r.request_id[2:]]
        assert content(by_id[r.request_id]) == content(twin), r
    assert await outbox_count(pool, "ThresholdStateChanged") == flips + 2 * 4  # A/s2 x2, B/s1 mkt, D/s1


async def test_batch_audit_records_are_the_servicers(pool, repo):
    await prepare(pool, repo)
    async with transaction(pool) as conn:
        batch = await repo.create_rules(conn, rules("b-"), AUDIT)
    audit = await pool.fetch(
        "select * from audit_log where entity_type = 'retail.inventory.v1.ThresholdRule' order by id"
    )
    assert [a["entity_key"] for a in audit] == [str(row["rule_id"]) for row, _ in batch]  # input order
    for a, (row, _) in zip(audit, batch, strict=True):
        proto = events.threshold_rule_proto(row)
        assert a["after"] == MessageToDict(proto, preserving_proto_field_name=True)  # as _audit writes it
        assert a["before"] is None
        assert (a["action"], a["actor_id"], a["actor_kind"], a["request_id"], a["trace_id"]) == (
            AUDIT.action, AUDIT.actor_id, AUDIT.actor_kind, AUDIT.request_id, AUDIT.trace_id,
        )  # fmt: skip


async def test_batch_is_idempotent_per_request_id(pool, repo):
    await prepare(pool, repo)
    async with transaction(pool) as conn:
        first = await repo.create_rules(conn, rules("b-")[:4], AUDIT)
    state = await pool.fetch("select sku, location_id, rule_count from stock order by 1, 2")
    # the same four again, one of them twice, with six new ones
    again_in = [*rules("b-")[:4], rules("b-")[2], *rules("b-")[4:]]
    async with transaction(pool) as conn:
        again = await repo.create_rules(conn, again_in, AUDIT)
        single, created = await repo.create_rule(conn, rules("b-")[0])
    assert not created
    assert single["rule_id"] == first[0][0]["rule_id"]
    assert [row["rule_id"] for row, _ in again[:4]] == [row["rule_id"] for row, _ in first]
    assert [c for _, c in again] == [False] * 5 + [True] * 6
    assert again[4][0]["rule_id"] == again[2][0]["rule_id"]
    assert await pool.fetchval("select count(*) from threshold_rules") == 10
    assert await pool.fetchval("select count(*) from audit_log") == 10
    twice = [dataclasses.replace(rules("n-")[0]), rules("n-")[0]]  # one key twice in one batch: one rule
    async with transaction(pool) as conn:
        made = await repo.create_rules(conn, twice, AUDIT)
    assert [c for _, c in made] == [True, False]
    assert made[0][0]["rule_id"] == made[1][0]["rule_id"]
    counts = {(r["sku"], r["location_id"]): r["rule_count"] for r in state}
    now = await pool.fetch("select sku, location_id, rule_count from stock order by 1, 2")
    assert {(r["sku"], r["location_id"]): r["rule_count"] for r in now} == {
        **counts, ("A", "s1"): counts[("A", "s1")] + 2, ("B", "s1"): 2, ("C", "s3"): 1, ("D", "s1"): 1,
        ("A", "s2"): counts[("A", "s2")] + 1,
    }  # fmt: skip
