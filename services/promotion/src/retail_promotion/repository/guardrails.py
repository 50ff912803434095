"""Guardrail rules: threshold rules the inventory service keeps for a campaign, with their last state."""

from __future__ import annotations

from retail_common.db import Connection

__all__ = ["any_below", "record_registered_rule", "record_rule_state"]


async def record_registered_rule(
    conn: Connection, *, rule_id: str, campaign_id: str, sku: str, location_id: str, channel_id: str
) -> None:
    """Remember a rule created at launch (its state arrives with ThresholdStateChanged)."""
    await conn.execute(
        "insert into guardrail_rules (rule_id, campaign_id, sku, location_id, channel_id)"
        " values ($1, $2, $3, $4, $5) on conflict (rule_id) do nothing",
        rule_id,
        campaign_id,
        sku,
        location_id,
        channel_id,
    )


async def record_rule_state(
    conn: Connection,
    *,
    rule_id: str,
    campaign_id: str,
    sku: str,
    location_id: str,
    channel_id: str,
    state: str,
    version: int,
) -> bool:
    """Store the rule's state if this version is newer; True when it changed."""
    return bool(
        await conn.fetchval(
            "insert into guardrail_rules (rule_id, campaign_id, sku, location_id, channel_id, state, version)"
            " values ($1, $2, $3, $4, $5, $6, $7) on conflict (rule_id) do update"
            " set state = excluded.state, version = excluded.version"
            " where guardrail_rules.version < excluded.version and guardrail_rules.state <> excluded.state"
            " returning true",
            rule_id,
            campaign_id,
            sku,
            location_id,
            channel_id,
            state,
            version,
        )
    )


async def any_below(conn: Connection, campaign_id: str, sku: str, location_id: str) -> bool:
    """Whether another rule of the campaign still holds the scope below ('' = any)."""
    return bool(
        await conn.fetchval(
            "select exists (select 1 from guardrail_rules where campaign_id = $1 and state = 'BELOW'"
            " and ($2 = '' or sku = $2) and ($3 = '' or location_id = $3))",
            campaign_id,
            sku,
            location_id,
        )
    )
