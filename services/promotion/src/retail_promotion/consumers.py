"""What the promotion service consumes through the shared inbox (one DB transaction per message, version
gated by the inbox): product and location replicas, campaign-owned threshold crossings (guardrails), and
the gateway's delivery and channel-health events (deployment ledger, channel failure policy)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from nats.js import JetStreamContext

from retail.channel.v1 import events_pb2 as channel_events
from retail.channel.v1 import health_pb2
from retail.inventory.v1 import events_pb2 as inventory_events
from retail.inventory.v1 import threshold_pb2
from retail.pricing.v1 import events_pb2 as pricing_events
from retail.pricing.v1 import products_pb2
from retail.promotion.v1 import campaign_pb2
from retail_common.clock import Clock, SystemClock
from retail_common.db import Connection
from retail_common.errors import NotFound
from retail_common.messaging import Envelope, Handler, InboxConsumer, event_filter
from retail_promotion.domain.deployment import Delivery
from retail_promotion.repository.campaigns import CampaignRepository
from retail_promotion.repository.guardrails import any_below, record_rule_state
from retail_promotion.repository.ledger import (
    live_campaigns_on,
    record_delivery,
    set_channel_health,
    set_store_targets,
)
from retail_promotion.repository.replicas import upsert_location, upsert_product

__all__ = ["SUBJECTS", "Handlers", "inbox_consumers"]

logger = logging.getLogger("retail_promotion.consumers")

SUBJECTS = {
    "product": event_filter("pricing", "product_upserted"),
    "location": event_filter("inventory", "location_upserted"),
    "threshold": event_filter("inventory", "threshold_state_changed"),
    "delivery": event_filter("channel", "delivery_state_changed"),
    "health": event_filter("channel", "channel_health_changed"),
}
_DELIVERIES = {
    channel_events.DELIVERY_STATE_DELIVERED: Delivery.DELIVERED,
    channel_events.DELIVERY_STATE_ACKNOWLEDGED: Delivery.ACKNOWLEDGED,
    channel_events.DELIVERY_STATE_DEAD_LETTERED: Delivery.DEAD_LETTERED,
}
CAMPAIGN_KEY_PREFIX = "campaign/"


class Handlers:
    """Inbox handlers: `handler(conn, envelope)` inside the inbox transaction."""

    def __init__(self, campaigns: CampaignRepository, clock: Clock | None = None) -> None:
        self._campaigns = campaigns
        self._clock = clock or SystemClock()

    async def product(self, conn: Connection, envelope: Envelope) -> None:
        p = pricing_events.ProductUpserted.FromString(envelope.payload).product
        await upsert_product(
            conn,
            sku=p.sku,
            active=p.status == products_pb2.PRODUCT_STATUS_ACTIVE,
            categories=list(p.category_ids),
            attributes=dict(p.attributes),
            version=envelope.aggregate_version,
        )

    async def location(self, conn: Connection, envelope: Envelope) -> None:
        loc = inventory_events.LocationUpserted.FromString(envelope.payload).location
        await upsert_location(
            conn,
            location_id=loc.location_id,
            region_id=loc.region_id,
            time_zone=loc.time_zone,
            active=loc.active,
            version=envelope.aggregate_version,
            channel_ids=loc.channel_ids,
        )

    async def _campaign(self, conn: Connection, campaign_id: str) -> campaign_pb2.Campaign | None:
        try:
            return await self._campaigns.get(conn, campaign_id, for_update=True)
        except NotFound:
            logger.warning("event for unknown campaign %s ignored", campaign_id)
            return None

    async def threshold(self, conn: Connection, envelope: Envelope) -> None:
        """A campaign-owned rule crossed: suspend its scope (BELOW) or resume it per policy (ABOVE)."""
        event = inventory_events.ThresholdStateChanged.FromString(envelope.payload)
        rule = event.rule
        if rule.owner.WhichOneof("owner") != "campaign_id":
            return
        campaign = await self._campaign(conn, rule.owner.campaign_id)
        if campaign is None:
            return
        await apply_rule_state(
            conn,
            self._campaigns,
            campaign,
            RuleState(
                rule.rule_id,
                rule.sku,
                rule.location_id,
                rule.channel_id,
                rule.state == threshold_pb2.THRESHOLD_STATE_BELOW,
                rule.version,
                f"available-to-sell {event.available_to_sell}",
            ),
            self._clock.now(),
        )

    async def delivery(self, conn: Connection, envelope: Envelope) -> None:
        """A delivery state of a campaign at a channel, or at the stores it lists (store channels): per
        target, the newer state wins; a target that failed or recovered applies the failure policy
        there (the channel, or that store of the channel)."""
        event = channel_events.DeliveryStateChanged.FromString(envelope.payload)
        if not event.entity_key.startswith(CAMPAIGN_KEY_PREFIX):
            return
        pending = event.state == channel_events.DELIVERY_STATE_PENDING
        if not pending and event.state not in _DELIVERIES:
            return
        campaign = await self._campaign(conn, event.entity_key.removeprefix(CAMPAIGN_KEY_PREFIX))
        if campaign is None:
            return
        if pending:
            await set_store_targets(conn, campaign.campaign_id, event.channel_id, event.location_ids)
            return
        delivery = _DELIVERIES[event.state]
        for location in event.location_ids or [""]:
            before, after = await record_delivery(
                conn, campaign.campaign_id, event.channel_id, delivery, event.entity_version, event.detail,
                location,
            )  # fmt: skip
            if before != after:
                await self._channel_failure(
                    conn, campaign, event.channel_id, failed=delivery is Delivery.DEAD_LETTERED,
                    location_id=location,
                )  # fmt: skip

    async def health(self, conn: Connection, envelope: Envelope) -> None:
        event = channel_events.ChannelHealthChanged.FromString(envelope.payload)
        degraded = event.condition == health_pb2.CHANNEL_CONDITION_DEGRADED
        if not await set_channel_health(conn, event.channel_id, degraded):
            return
        for campaign_id in await live_campaigns_on(conn, event.channel_id):
            campaign = await self._campaign(conn, campaign_id)
            if campaign is not None:
                await self._channel_failure(conn, campaign, event.channel_id, failed=degraded)

    async def _channel_failure(
        self,
        conn: Connection,
        campaign: campaign_pb2.Campaign,
        channel_id: str,
        *,
        failed: bool,
        location_id: str = "",
    ) -> None:
        """Channel failure policy: suspend the offer in that channel, or at that store of a store
        channel (default), or hold everywhere."""
        hold = campaign.channel_failure_policy == campaign_pb2.CHANNEL_FAILURE_POLICY_HOLD_LAUNCH
        scope = "" if hold else channel_id
        location = "" if hold else location_id
        detail = f"channel {channel_id}" + (f" store {location_id}" if location_id else "")
        at = self._clock.now()
        if failed:
            await self._campaigns.suspend(
                conn, campaign, channel_id=scope, location_id=location, reason="CHANNEL_FAILURE",
                detail=detail, at=at,
            )  # fmt: skip
        else:
            await self._campaigns.resume(
                conn, campaign, channel_id=scope, location_id=location, reason="CHANNEL_FAILURE",
                detail=detail, at=at,
            )  # fmt: skip


@dataclass(frozen=True)
class RuleState:
    rule_id: str
    sku: str
    location_id: str
    channel_id: str
    below: bool
    version: int
    detail: str = ""


async def apply_rule_state(
    conn: Connection,
    campaigns: CampaignRepository,
    campaign: campaign_pb2.Campaign,
    rule: RuleState,
    at: datetime,
) -> None:
    """Record a guardrail rule's state if newer; BELOW suspends the configured scope, ABOVE resumes it
    when the campaign says so and no other of its rules still holds that scope below."""
    changed = await record_rule_state(
        conn,
        rule_id=rule.rule_id,
        campaign_id=campaign.campaign_id,
        sku=rule.sku,
        location_id=rule.location_id,
        channel_id=rule.channel_id,
        state="BELOW" if rule.below else "ABOVE",
        version=rule.version,
    )
    if not changed:
        return
    guardrail = campaign.stock_guardrail
    sku, location = rule.sku, rule.location_id
    if guardrail.scope == campaign_pb2.GUARDRAIL_SCOPE_SKU:
        location = ""
    elif guardrail.scope == campaign_pb2.GUARDRAIL_SCOPE_LOCATION:
        sku = ""
    if rule.below:
        detail = f"rule {rule.rule_id}: {rule.detail} on {rule.channel_id}".strip()
        await campaigns.suspend(
            conn, campaign, location_id=location, sku=sku, reason="LOW_STOCK", detail=detail, at=at
        )
    elif guardrail.resume_on_restore and not await any_below(conn, campaign.campaign_id, sku, location):
        await campaigns.resume(
            conn,
            campaign,
            location_id=location,
            sku=sku,
            reason="LOW_STOCK",
            detail=f"rule {rule.rule_id}",
            at=at,
        )


def inbox_consumers(
    pool: asyncpg.Pool[asyncpg.Record], js: JetStreamContext, handlers: Handlers
) -> Sequence[InboxConsumer]:
    def make(stream: str, durable: str, subject: str, handler: Handler) -> InboxConsumer:
        return InboxConsumer(
            pool,
            js,
            stream=stream,
            durable=durable,
            filter_subject=subject,
            handler=handler,
        )

    return [
        make("PRICING", "promotion-products", SUBJECTS["product"], handlers.product),
        make("INVENTORY", "promotion-locations", SUBJECTS["location"], handlers.location),
        make("INVENTORY", "promotion-thresholds", SUBJECTS["threshold"], handlers.threshold),
        make("CHANNEL", "promotion-deliveries", SUBJECTS["delivery"], handlers.delivery),
        make("CHANNEL", "promotion-channel-health", SUBJECTS["health"], handlers.health),
    ]
