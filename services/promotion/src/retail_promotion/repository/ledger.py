"""Deployment ledger rows: per campaign and target (a channel, or one store of a store channel), the
last delivery state the gateway reported, and per channel its health."""

from __future__ import annotations

from collections.abc import Sequence

from retail_common.db import Connection
from retail_promotion.domain.deployment import Delivery, Target, apply_delivery

__all__ = [
    "ensure_targets",
    "live_campaigns_on",
    "record_delivery",
    "set_channel_health",
    "set_store_targets",
    "targets",
]


async def ensure_targets(conn: Connection, campaign_id: str, channel_ids: Sequence[str]) -> None:
    """PENDING rows for every target channel (at launch)."""
    await conn.executemany(
        "insert into deployment_targets (campaign_id, channel_id) values ($1, $2) on conflict do nothing",
        [(campaign_id, ch) for ch in sorted(set(channel_ids))],
    )


async def set_store_targets(
    conn: Connection, campaign_id: str, channel_id: str, location_ids: Sequence[str]
) -> None:
    """The channel is tracked per store: one row per store the gateway queued the campaign for (the full
    set of that projection), replacing the channel-wide row and stores no longer targeted."""
    stores = sorted(set(location_ids))
    if not stores:
        return
    await conn.execute(
        "delete from deployment_targets where campaign_id = $1 and channel_id = $2"
        " and location_id <> all($3::text[])",
        campaign_id,
        channel_id,
        stores,
    )
    await conn.execute(
        "insert into deployment_targets (campaign_id, channel_id, location_id)"
        " select $1, $2, unnest($3::text[]) on conflict do nothing",
        campaign_id,
        channel_id,
        stores,
    )


async def record_delivery(
    conn: Connection,
    campaign_id: str,
    channel_id: str,
    delivery: Delivery,
    version: int,
    detail: str,
    location_id: str = "",
) -> tuple[Target, Target]:
    """Apply a delivery event to the (campaign, channel[, store]) target; returns (before, after). A
    store's event also drops the channel-wide row (the channel is tracked per store)."""
    if location_id:
        await conn.execute(
            "delete from deployment_targets where campaign_id = $1 and channel_id = $2 and location_id = ''",
            campaign_id,
            channel_id,
        )
    await conn.execute(
        "insert into deployment_targets (campaign_id, channel_id, location_id) values ($1, $2, $3)"
        " on conflict do nothing",
        campaign_id,
        channel_id,
        location_id,
    )
    row = await conn.fetchrow(
        "select * from deployment_targets where campaign_id = $1 and channel_id = $2 and location_id = $3"
        " for update",
        campaign_id,
        channel_id,
        location_id,
    )
    assert row is not None
    before = Target(
        channel_id,
        location_id,
        row["version"],
        Delivery(row["delivery"]) if row["delivery"] else None,
        error=row["error"],
    )
    after = apply_delivery(before, delivery, version, detail)
    if after != before:
        await conn.execute(
            "update deployment_targets set version = $3, delivery = $4, error = $5, updated_at = now()"
            " where campaign_id = $1 and channel_id = $2 and location_id = $6",
            campaign_id,
            channel_id,
            after.version,
            after.delivery.value if after.delivery else None,
            after.error,
            location_id,
        )
    return before, after


async def set_channel_health(conn: Connection, channel_id: str, degraded: bool) -> bool:
    """Record the channel's health; True when it changed."""
    return bool(
        await conn.fetchval(
            "insert into channel_health (channel_id, degraded) values ($1, $2) on conflict (channel_id)"
            " do update set degraded = excluded.degraded, updated_at = now()"
            " where channel_health.degraded <> excluded.degraded returning true",
            channel_id,
            degraded,
        )
    )


async def targets(conn: Connection, campaign_id: str) -> list[Target]:
    rows = await conn.fetch(
        "select t.*, coalesce(h.degraded, false) as degraded from deployment_targets t"
        " left join channel_health h using (channel_id) where t.campaign_id = $1"
        " order by t.channel_id, t.location_id",
        campaign_id,
    )
    return [
        Target(
            r["channel_id"],
            r["location_id"],
            r["version"],
            Delivery(r["delivery"]) if r["delivery"] else None,
            r["degraded"],
            r["error"],
            r["updated_at"],
        )
        for r in rows
    ]


async def live_campaigns_on(conn: Connection, channel_id: str) -> list[str]:
    """Ids of SCHEDULED / ACTIVE campaigns with a deployment target on the channel."""
    rows = await conn.fetch(
        "select distinct c.campaign_id from campaigns c join deployment_targets t using (campaign_id)"
        " where t.channel_id = $1 and c.state in ('SCHEDULED', 'ACTIVE') order by c.campaign_id",
        channel_id,
    )
    return [r["campaign_id"] for r in rows]
