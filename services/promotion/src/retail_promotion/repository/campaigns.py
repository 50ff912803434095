"""Campaigns, their promotions' counters, suspensions and code batches."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from retail.promotion.v1 import campaign_pb2, events_pb2
from retail_common.db import Connection
from retail_common.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from retail_promotion import events
from retail_promotion.convert import money_from_proto, money_to_proto
from retail_promotion.domain.lifecycle import CampaignState

__all__ = ["CampaignRepository", "SuspensionRow"]

_OUTPUT_ONLY = (
    "state",
    "author_id",
    "approver_id",
    "version",
    "etag",
    "create_time",
    "update_time",
    "budget_used",
)
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True)
class SuspensionRow:
    campaign_id: str
    channel_id: str
    location_id: str
    sku: str
    reason: str
    detail: str
    created_at: datetime


def definition_of(campaign: campaign_pb2.Campaign) -> bytes:
    """The stored definition: the campaign without output-only fields."""
    c = campaign_pb2.Campaign()
    c.CopyFrom(campaign)
    for name in _OUTPUT_ONLY:
        c.ClearField(name)  # type: ignore[arg-type]
    for p in c.promotions:
        p.limits.ClearField("budget_used")
        p.limits.ClearField("redemptions_used")
    return c.SerializeToString(deterministic=True)


def _budget(campaign: campaign_pb2.Campaign) -> Decimal | None:
    return money_from_proto(campaign.budget) if campaign.HasField("budget") else None


class CampaignRepository:
    def __init__(self, writer: events.EventWriter) -> None:
        self.events = writer

    # ------------------------------------------------------------------------------------- reading

    async def get(
        self, conn: Connection, campaign_id: str, *, for_update: bool = False
    ) -> campaign_pb2.Campaign:
        row = await conn.fetchrow(
            "select * from campaigns where campaign_id = $1" + (" for update" if for_update else ""),
            campaign_id,
        )
        if row is None:
            raise NotFound("retail.promotion.v1.Campaign", campaign_id)
        return await self._proto(conn, row)

    async def _proto(self, conn: Connection, row: asyncpg.Record) -> campaign_pb2.Campaign:
        c = campaign_pb2.Campaign.FromString(bytes(row["definition"]))
        c.state = campaign_pb2.CampaignState.Value(f"CAMPAIGN_STATE_{row['state']}")
        c.author_id = row["author_id"]
        c.approver_id = row["approver_id"]
        c.version = row["version"]
        c.etag = row["etag"]
        c.create_time.FromDatetime(row["created_at"])
        c.update_time.FromDatetime(row["updated_at"])
        c.budget_used.CopyFrom(money_to_proto(row["budget_used"], row["currency"]))
        counters = {
            r["promotion_id"]: r
            for r in await conn.fetch(
                "select promotion_id, budget_used, redemptions_used from promotions where campaign_id = $1",
                row["campaign_id"],
            )
        }
        for p in c.promotions:
            r = counters.get(p.promotion_id)
            if r is not None:
                p.limits.budget_used.CopyFrom(money_to_proto(r["budget_used"], row["currency"]))
                p.limits.redemptions_used = r["redemptions_used"]
        return c

    async def list_campaigns(
        self, conn: Connection, *, state: str | None, after: str, limit: int
    ) -> list[campaign_pb2.Campaign]:
        rows = await conn.fetch(
            "select * from campaigns where ($1::text is null or state = $1) and campaign_id > $2"
            " order by campaign_id limit $3",
            state,
            after,
            limit,
        )
        return [await self._proto(conn, r) for r in rows]

    # ------------------------------------------------------------------------------------- writing

    async def _sync_promotions(self, conn: Connection, c: campaign_pb2.Campaign) -> None:
        ids = [p.promotion_id for p in c.promotions]
        await conn.execute(
            "delete from promotions where campaign_id = $1 and not (promotion_id = any($2::text[]))",
            c.campaign_id,
            ids,
        )
        for i, p in enumerate(c.promotions):
            budget = money_from_proto(p.limits.budget) if p.limits.HasField("budget") else None
            owned = await conn.fetchval(
                "insert into promotions (promotion_id, campaign_id, budget, max_redemptions)"
                " values ($1, $2, $3, $4) on conflict (promotion_id) do update"
                " set budget = excluded.budget, max_redemptions = excluded.max_redemptions"
                " where promotions.campaign_id = excluded.campaign_id returning true",
                p.promotion_id,
                c.campaign_id,
                budget,
                p.limits.max_redemptions,
            )
            if not owned:
                raise InvalidArgument(
                    [FieldViolation(f"campaign.promotions[{i}].promotion_id", "used by another campaign")]
                )

    async def _bump_suspensions(self, conn: Connection) -> None:
        await conn.execute("update catalog_version set suspensions = suspensions + 1")

    async def _bump_catalog(self, conn: Connection) -> None:
        await conn.execute("update catalog_version set version = version + 1")

    async def create(
        self, conn: Connection, campaign: campaign_pb2.Campaign, author: str
    ) -> campaign_pb2.Campaign:
        inserted = await conn.fetchval(
            "insert into campaigns (campaign_id, state, definition, currency, author_id, budget, etag)"
            " values ($1, 'DRAFT', $2, $3, $4, $5, $6) on conflict do nothing returning true",
            campaign.campaign_id,
            definition_of(campaign),
            campaign.currency_code,
            author,
            _budget(campaign),
            uuid.uuid4().hex,
        )
        if not inserted:
            raise AlreadyExists("retail.promotion.v1.Campaign", campaign.campaign_id)
        await self._sync_promotions(conn, campaign)
        return await self._changed(conn, campaign.campaign_id)

    async def replace(self, conn: Connection, campaign: campaign_pb2.Campaign) -> campaign_pb2.Campaign:
        """Replace the definition of a DRAFT campaign (the caller checked state and etag under lock)."""
        await conn.execute(
            "update campaigns set definition = $2, currency = $3, budget = $4, version = version + 1,"
            " etag = $5, updated_at = now() where campaign_id = $1",
            campaign.campaign_id,
            definition_of(campaign),
            campaign.currency_code,
            _budget(campaign),
            uuid.uuid4().hex,
        )
        await self._sync_promotions(conn, campaign)
        return await self._changed(conn, campaign.campaign_id)

    async def set_state(
        self, conn: Connection, campaign_id: str, state: CampaignState, *, approver: str | None = None
    ) -> campaign_pb2.Campaign:
        await conn.execute(
            "update campaigns set state = $2, approver_id = coalesce($3, approver_id), version = version + 1,"
            " etag = $4, updated_at = now() where campaign_id = $1",
            campaign_id,
            state.value,
            approver,
            uuid.uuid4().hex,
        )
        return await self._changed(conn, campaign_id)

    async def _changed(self, conn: Connection, campaign_id: str) -> campaign_pb2.Campaign:
        await self._bump_catalog(conn)
        c = await self.get(conn, campaign_id)
        await events.campaign_changed(conn, self.events, c)
        return c

    # ---------------------------------------------------------------------------------- suspensions

    async def suspend(
        self,
        conn: Connection,
        campaign: campaign_pb2.Campaign,
        *,
        channel_id: str = "",
        location_id: str = "",
        sku: str = "",
        reason: str,
        detail: str = "",
        at: datetime | None = None,
    ) -> SuspensionRow | None:
        """Insert a suspension; None when exactly that one already exists (nothing changes, no event)."""
        row = await conn.fetchrow(
            "insert into suspensions (campaign_id, channel_id, location_id, sku, reason, detail)"
            " values ($1, $2, $3, $4, $5, $6) on conflict do nothing returning *",
            campaign.campaign_id,
            channel_id,
            location_id,
            sku,
            reason,
            detail,
        )
        if row is None:
            return None
        await self._bump_suspensions(conn)
        await events.promotion_state_changed(
            conn,
            self.events,
            campaign,
            change=events_pb2.PROMOTION_STATE_CHANGE_SUSPENDED,
            channel_id=channel_id,
            location_id=location_id,
            sku=sku,
            reason=campaign_pb2.SuspensionReason.Value(f"SUSPENSION_REASON_{reason}"),
            detail=detail,
            at=at,
        )
        return SuspensionRow(**{k: row[k] for k in SuspensionRow.__dataclass_fields__})

    async def resume(
        self,
        conn: Connection,
        campaign: campaign_pb2.Campaign,
        *,
        channel_id: str = "",
        location_id: str = "",
        sku: str = "",
        reason: str,
        detail: str = "",
        at: datetime | None = None,
    ) -> bool:
        deleted = await conn.fetchval(
            "delete from suspensions where campaign_id = $1 and channel_id = $2 and location_id = $3"
            " and sku = $4 and reason = $5 returning true",
            campaign.campaign_id,
            channel_id,
            location_id,
            sku,
            reason,
        )
        if not deleted:
            return False
        await self._bump_suspensions(conn)
        await events.promotion_state_changed(
            conn,
            self.events,
            campaign,
            change=events_pb2.PROMOTION_STATE_CHANGE_RESUMED,
            channel_id=channel_id,
            location_id=location_id,
            sku=sku,
            reason=campaign_pb2.SuspensionReason.Value(f"SUSPENSION_REASON_{reason}"),
            detail=detail,
            at=at,
        )
        return True

    async def suspensions(self, conn: Connection, campaign_id: str) -> list[SuspensionRow]:
        rows = await conn.fetch(
            "select * from suspensions where campaign_id = $1 order by channel_id, location_id, sku, reason",
            campaign_id,
        )
        return [SuspensionRow(**{k: r[k] for k in SuspensionRow.__dataclass_fields__}) for r in rows]

    # --------------------------------------------------------------------------------- code batches

    async def create_code_batch(
        self, conn: Connection, campaign_id: str, batch_id: str, count: int, prefix: str
    ) -> list[str]:
        inserted = await conn.fetchval(
            "insert into code_batches (code_batch_id, campaign_id) values ($1, $2) on conflict do nothing"
            " returning true",
            batch_id,
            campaign_id,
        )
        if not inserted:
            raise AlreadyExists("retail.promotion.v1.CodeBatch", batch_id)
        codes: set[str] = set()
        while len(codes) < count:
            codes.add(prefix + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10)))
        ordered = sorted(codes)
        await conn.copy_records_to_table(
            "codes",
            records=[(c, batch_id, None) for c in ordered],
            columns=["code", "code_batch_id", "redeemed_order_id"],
        )
        return ordered

    async def unused_batch_codes(self, conn: Connection, codes: Sequence[str]) -> dict[str, str]:
        """Entered codes that are unused single-use codes: code -> batch id."""
        if not codes:
            return {}
        rows = await conn.fetch(
            "select code, code_batch_id from codes"
            " where code = any($1::text[]) and redeemed_order_id is null",
            list(codes),
        )
        return {r["code"]: r["code_batch_id"] for r in rows}
