"""Promotion events (retail.promotion.v1 events.proto) written to the outbox in the transaction of the
change: CampaignChanged per campaign version, PromotionStateChanged per (campaign, scope)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from google.protobuf.message import Message

from retail.promotion.v1 import campaign_pb2, events_pb2
from retail_common.db import Connection
from retail_common.messaging import event_name, event_subject
from retail_promotion.convert import timestamp

__all__ = [
    "CAMPAIGN_CHANGED",
    "PROMOTION_STATE_CHANGED",
    "EventWriter",
    "campaign_changed",
    "promotion_state_changed",
    "scope_key",
    "subject",
]

CAMPAIGN_CHANGED = "CampaignChanged"
PROMOTION_STATE_CHANGED = "PromotionStateChanged"


class EventWriter(Protocol):
    """What the repository needs from retail_common.messaging.OutboxWriter."""

    async def append(
        self,
        conn: Connection,
        *,
        subject: str,
        event_type: str,
        aggregate_type: str,
        aggregate_key: str,
        payload: Message | bytes | Callable[[int], Message | bytes],
        schema_version: int = 1,
        occurred_at: datetime | None = None,
    ) -> tuple[uuid.UUID, int]: ...


def subject(event: str, *key: str) -> str:
    """`retail.promotion.v1.<snake_case event>.<key tokens>` (the suite's one subject convention)."""
    return event_subject("promotion", event_name(event), *key)


def scope_key(campaign_id: str, channel_id: str, location_id: str, sku: str) -> str:
    return "/".join((campaign_id, channel_id, location_id, sku))


async def campaign_changed(conn: Connection, writer: EventWriter, campaign: campaign_pb2.Campaign) -> None:
    await writer.append(
        conn,
        subject=subject(CAMPAIGN_CHANGED, campaign.campaign_id),
        event_type=f"retail.promotion.v1.{CAMPAIGN_CHANGED}",
        aggregate_type="campaign",
        aggregate_key=campaign.campaign_id,
        payload=events_pb2.CampaignChanged(campaign=campaign),
    )


async def promotion_state_changed(
    conn: Connection,
    writer: EventWriter,
    campaign: campaign_pb2.Campaign,
    *,
    change: events_pb2.PromotionStateChange.ValueType,
    channel_id: str = "",
    location_id: str = "",
    sku: str = "",
    reason: campaign_pb2.SuspensionReason.ValueType = campaign_pb2.SUSPENSION_REASON_UNSPECIFIED,
    detail: str = "",
    at: datetime | None = None,
    promotion_ids: Sequence[str] = (),
) -> int:
    """Append one PromotionStateChanged; returns its per-scope version."""

    def build(version: int) -> Message:
        return events_pb2.PromotionStateChanged(
            campaign_id=campaign.campaign_id,
            channel_id=channel_id,
            location_id=location_id,
            sku=sku,
            change=change,
            reason=reason,
            detail=detail,
            window=campaign.window,
            version=version,
            change_time=timestamp(at),
            promotion_ids=list(promotion_ids) or [p.promotion_id for p in campaign.promotions],
            campaign_channel_ids=list(campaign.channel_ids),
        )

    _, version = await writer.append(
        conn,
        subject=subject(PROMOTION_STATE_CHANGED, campaign.campaign_id, channel_id, location_id, sku),
        event_type=f"retail.promotion.v1.{PROMOTION_STATE_CHANGED}",
        aggregate_type="promotion_scope",
        aggregate_key=scope_key(campaign.campaign_id, channel_id, location_id, sku),
        payload=build,
        occurred_at=at,
    )
    return version
