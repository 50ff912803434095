"""Redemptions: budgets, usage limits and single-use codes consumed atomically, given back on cancel.

Every counter moves with one conditional UPDATE whose WHERE holds the limit, so concurrent redemptions
(any number of replicas) can never overspend: Postgres re-checks the condition on the latest row
version under the row lock. Rows are locked in one order (redemption, campaigns by id, promotions by
id, codes), so redemptions never deadlock. CHECK constraints back the limits up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from retail_common.db import Connection

__all__ = ["AppliedItem", "LimitReachedError", "RedemptionRepository", "StoredRedemption"]


@dataclass(frozen=True)
class AppliedItem:
    promotion_id: str
    campaign_id: str
    discount: Decimal
    codes: tuple[str, ...] = ()


class LimitReachedError(Exception):
    """A budget, usage limit or single-use code ran out between evaluation and redemption."""

    def __init__(self, key: str, kind: str) -> None:
        super().__init__(f"{kind} {key} exhausted")
        self.key = key
        self.kind = kind  # "promotion" | "campaign" | "code"


@dataclass(frozen=True)
class StoredRedemption:
    order_id: str
    state: str
    fingerprint: str
    response: bytes
    created_at: datetime
    cancelled_at: datetime | None
    items: tuple[AppliedItem, ...]
    channel_id: str = ""


class RedemptionRepository:
    async def get(self, conn: Connection, order_id: str) -> StoredRedemption | None:
        row = await conn.fetchrow("select * from redemptions where order_id = $1", order_id)
        return None if row is None else await self._stored(conn, row)

    async def _stored(self, conn: Connection, row: asyncpg.Record) -> StoredRedemption:
        items = await conn.fetch(
            "select * from redemption_items where order_id = $1 order by promotion_id", row["order_id"]
        )
        return StoredRedemption(
            row["order_id"],
            row["state"],
            row["fingerprint"],
            bytes(row["response"]),
            row["created_at"],
            row["cancelled_at"],
            tuple(
                AppliedItem(i["promotion_id"], i["campaign_id"], i["discount"], tuple(i["codes"]))
                for i in items
            ),
            row["channel_id"],
        )

    async def claim(self, conn: Connection, order_id: str, fingerprint: str, channel_id: str = "") -> bool:
        """Insert the redemption row (locks the order id); False when the order already has one (a
        concurrent duplicate waits here until the first commits)."""
        return bool(
            await conn.fetchval(
                "insert into redemptions (order_id, state, fingerprint, response, channel_id)"
                " values ($1, 'REDEEMED', $2, '', $3)"
                " on conflict do nothing returning true",
                order_id,
                fingerprint,
                channel_id,
            )
        )

    async def consume(self, conn: Connection, order_id: str, items: Sequence[AppliedItem]) -> None:
        """Take every item's budget, usage and codes, or raise LimitReachedError (caller rolls back)."""
        per_campaign: dict[str, Decimal] = defaultdict(Decimal)
        for item in items:
            per_campaign[item.campaign_id] += item.discount
        for campaign_id in sorted(per_campaign):
            ok = await conn.fetchval(
                "update campaigns set budget_used = budget_used + $2 where campaign_id = $1"
                " and (budget is null or budget_used + $2 <= budget) returning true",
                campaign_id,
                per_campaign[campaign_id],
            )
            if not ok:
                raise LimitReachedError(campaign_id, "campaign")
        for item in sorted(items, key=lambda i: i.promotion_id):
            ok = await conn.fetchval(
                "update promotions set budget_used = budget_used + $2,"
                " redemptions_used = redemptions_used + 1"
                " where promotion_id = $1 and (budget is null or budget_used + $2 <= budget)"
                " and (max_redemptions = 0 or redemptions_used < max_redemptions) returning true",
                item.promotion_id,
                item.discount,
            )
            if not ok:
                raise LimitReachedError(item.promotion_id, "promotion")
        codes = sorted(c for item in items for c in item.codes)
        if codes:
            taken = await conn.fetch(
                "update codes set redeemed_order_id = $1 where code = any($2::text[])"
                " and redeemed_order_id is null returning code",
                order_id,
                codes,
            )
            missing = set(codes) - {r["code"] for r in taken}
            if missing:
                raise LimitReachedError(min(missing), "code")
        await conn.executemany(
            "insert into redemption_items (order_id, promotion_id, campaign_id, discount, codes)"
            " values ($1, $2, $3, $4, $5)",
            [(order_id, i.promotion_id, i.campaign_id, i.discount, list(i.codes)) for i in items],
        )

    async def store_response(self, conn: Connection, order_id: str, response: bytes) -> None:
        await conn.execute("update redemptions set response = $2 where order_id = $1", order_id, response)

    async def cancel(self, conn: Connection, order_id: str) -> StoredRedemption | None:
        """Give back exactly what the redemption took; a second cancel changes nothing."""
        row = await conn.fetchrow(
            "update redemptions set state = 'CANCELLED', cancelled_at = now()"
            " where order_id = $1 and state = 'REDEEMED' returning *",
            order_id,
        )
        if row is None:
            return await self.get(conn, order_id)
        stored = await self._stored(conn, row)
        per_campaign: Mapping[str, Decimal] = _sum_by_campaign(stored.items)
        for campaign_id in sorted(per_campaign):
            await conn.execute(
                "update campaigns set budget_used = budget_used - $2 where campaign_id = $1",
                campaign_id,
                per_campaign[campaign_id],
            )
        for item in stored.items:
            await conn.execute(
                "update promotions set budget_used = budget_used - $2,"
                " redemptions_used = redemptions_used - 1"
                " where promotion_id = $1",
                item.promotion_id,
                item.discount,
            )
        await conn.execute("update codes set redeemed_order_id = null where redeemed_order_id = $1", order_id)
        return stored


def _sum_by_campaign(items: Sequence[AppliedItem]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for item in items:
        out[item.campaign_id] += item.discount
    return out
