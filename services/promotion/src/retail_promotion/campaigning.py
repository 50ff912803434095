"""Application layer of campaign validation and launch: gathers the facts validation needs from pricing,
inventory and the database, and registers the stock guardrails with inventory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from retail.promotion.v1 import campaign_pb2
from retail_promotion.convert import promotions_of, window_from_proto
from retail_promotion.dependencies import Inventory, PriceQuery, Pricing, RegisteredRule, RuleTarget
from retail_promotion.domain.findings import Facts, Finding, findings
from retail_promotion.domain.model import Promotion

__all__ = ["CampaignFacts", "guardrail_targets"]

_CONTENDERS = ("SUBMITTED", "APPROVED", "SCHEDULED", "ACTIVE")


def _skus(campaign: campaign_pb2.Campaign) -> list[str]:
    return sorted({sku for p in campaign.promotions for sku in p.eligibility.skus})


@dataclass(frozen=True)
class TargetedLocations:
    """The locations a campaign targets -> region, and which channels may sell from each (None: not yet
    known to the replica, so not filtered)."""

    regions: dict[str, str]
    sellers: dict[str, frozenset[str] | None]


async def _locations(
    pool: asyncpg.Pool[asyncpg.Record], campaign: campaign_pb2.Campaign
) -> TargetedLocations:
    """Targeted locations: explicit ones plus the replica's locations of targeted regions; a campaign
    naming neither targets every active location the replica knows."""
    everywhere = not campaign.location_ids and not campaign.region_ids
    rows = await pool.fetch(
        "select location_id, region_id, channel_ids from locations where ($3 and active)"
        " or location_id = any($1::text[]) or region_id = any($2::text[])",
        list(campaign.location_ids),
        list(campaign.region_ids),
        everywhere,
    )
    found = {r["location_id"]: r["region_id"] for r in rows}
    sellers = {
        r["location_id"]: None if r["channel_ids"] is None else frozenset(r["channel_ids"]) for r in rows
    }
    return TargetedLocations(
        regions={loc: found.get(loc, "") for loc in campaign.location_ids} | found,
        sellers={loc: sellers.get(loc) for loc in campaign.location_ids} | sellers,
    )


def guardrail_targets(
    campaign: campaign_pb2.Campaign, locations: TargetedLocations
) -> list[tuple[str, str, str]]:
    """(sku, location, channel) watched by the stock guardrail (none without a minimum).

    Only channels that may sell from a location are watched there (elsewhere their ATS is zero by
    definition, which is no stock signal); a campaign for every channel watches each location's own.
    """
    if campaign.stock_guardrail.min_available_to_sell <= 0:
        return []
    excluded = set(campaign.excluded_location_ids)
    excluded_regions = set(campaign.excluded_region_ids)
    channels = sorted(campaign.channel_ids)
    targets: list[tuple[str, str, str]] = []
    for sku in _skus(campaign):
        for loc, region in sorted(locations.regions.items()):
            if loc in excluded or region in excluded_regions:
                continue
            sells = locations.sellers.get(loc)
            for channel in channels or sorted(sells or ()):
                if sells is None or channel in sells:
                    targets.append((sku, loc, channel))
    return targets


class CampaignFacts:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], pricing: Pricing, inventory: Inventory) -> None:
        self._pool = pool
        self._pricing = pricing
        self._inventory = inventory

    async def locations(self, campaign: campaign_pb2.Campaign) -> dict[str, str]:
        return (await _locations(self._pool, campaign)).regions

    async def _others(self, campaign_id: str) -> list[Promotion]:
        rows = await self._pool.fetch(
            "select definition, state from campaigns where state = any($1::text[]) and campaign_id <> $2",
            list(_CONTENDERS),
            campaign_id,
        )
        out: list[Promotion] = []
        for r in rows:
            out.extend(promotions_of(campaign_pb2.Campaign.FromString(bytes(r["definition"])), active=True))
        return out

    async def validate(self, campaign: campaign_pb2.Campaign, now: datetime) -> list[Finding]:
        skus = _skus(campaign)
        rows = await self._pool.fetch("select sku, active from products where sku = any($1::text[])", skus)
        products = {r["sku"]: (True, bool(r["active"])) for r in rows}
        for sku in skus:
            if sku not in products:  # the replica may lag: ask the owner
                answer = await self._pricing.product(sku)
                products[sku] = (answer.exists, answer.active)
        window = window_from_proto(campaign.window)
        at = max(now, window.start) if not window.local else now
        channels = sorted(campaign.channel_ids)
        pairs = [(sku, ch) for sku in skus if products[sku] == (True, True) for ch in channels]
        answers = await self._pricing.resolve(
            [PriceQuery(sku, campaign.currency_code, ch, "", "", 1, at) for sku, ch in pairs]
        )
        priced = {pair: a.unit_price is not None for pair, a in zip(pairs, answers, strict=True)}
        locations = await _locations(self._pool, campaign)
        available: dict[tuple[str, str, str], int] = {}
        for channel in channels:
            watched = [
                (sku, loc)
                for sku, loc, ch in guardrail_targets(campaign, locations)
                if ch == channel and products[sku] == (True, True)  # unknown/inactive: reported above
            ]
            if watched:
                for (sku, loc), ats in zip(
                    watched, await self._inventory.available(channel, watched), strict=True
                ):
                    available[(sku, loc, channel)] = ats
        facts = Facts(
            products, priced, locations.regions, available, await self._others(campaign.campaign_id)
        )
        return findings(
            campaign_id=campaign.campaign_id,
            channels=channels,
            regions=campaign.region_ids,
            locations=campaign.location_ids,
            excluded_regions=campaign.excluded_region_ids,
            excluded_locations=campaign.excluded_location_ids,
            promotions=promotions_of(campaign, active=False),
            min_available=campaign.stock_guardrail.min_available_to_sell,
            budget_required=campaign.budget_required,
            has_budget=campaign.HasField("budget"),
            facts=facts,
        )

    async def register_guardrails(self, campaign: campaign_pb2.Campaign) -> list[RegisteredRule]:
        """Create the campaign-owned threshold rules (idempotent per target at inventory)."""
        targets = guardrail_targets(campaign, await _locations(self._pool, campaign))
        below = campaign.stock_guardrail.min_available_to_sell
        rules = [
            RuleTarget(
                "guardrail-"
                + hashlib.sha256(f"{campaign.campaign_id}\0{sku}\0{loc}\0{ch}".encode()).hexdigest(),
                sku,
                loc,
                ch,
            )
            for sku, loc, ch in targets
        ]
        return await self._inventory.create_campaign_rules(campaign.campaign_id, below, rules)

    async def retire_guardrails(self, limit: int = 100) -> int:
        """Delete at inventory the rules of campaigns that ended or were rolled back; returns how many."""
        rows = await self._pool.fetch(
            "select g.rule_id from guardrail_rules g join campaigns c using (campaign_id)"
            " where not g.retired and c.state in ('ENDED', 'ROLLED_BACK') order by g.rule_id limit $1",
            limit,
        )
        for row in rows:
            await self._inventory.delete_rule(f"retire-{row['rule_id']}"[:128], row["rule_id"])
            await self._pool.execute(
                "update guardrail_rules set retired = true where rule_id = $1", row["rule_id"]
            )
        return len(rows)
