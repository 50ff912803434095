"""The application layer against a real Postgres with a stand-in pricing: the replica's index is
rebuilt on campaign changes only, a suspension reloads just the suspensions and applies at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from retail_common.db import transaction
from retail_promotion.dependencies import PriceAnswer, PriceQuery, ProductAnswer
from retail_promotion.domain.evaluate import Outcome
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.evaluating import CartInput, Evaluator
from retail_promotion.repository import CampaignRepository, RedemptionRepository
from retail_promotion.testing import campaign_pb, percent_promotion_pb

AT = datetime(2026, 6, 6, 12, tzinfo=UTC)


class Prices:
    async def resolve(self, queries: Sequence[PriceQuery]) -> list[PriceAnswer]:
        return [PriceAnswer(Decimal("10.00")) for _ in queries]

    async def product(self, sku: str) -> ProductAnswer:
        return ProductAnswer(sku, True, True)


async def test_suspensions_reload_without_rebuilding_the_index(
    pool: asyncpg.Pool, campaigns: CampaignRepository, redemptions: RedemptionRepository
) -> None:
    async with transaction(pool) as conn:
        await campaigns.create(
            conn, campaign_pb("C1", promotions=[percent_promotion_pb("P1", "10", ["A"])]), "ann"
        )
        live = await campaigns.set_state(conn, "C1", CampaignState.ACTIVE)
    evaluator = Evaluator(pool, Prices(), campaigns, redemptions)
    cart = CartInput(channel_id="web", currency="EUR", lines=(("A", 2),), at=AT, location_id="")
    first = await evaluator.evaluate(cart)
    assert first.candidate("P1").outcome is Outcome.APPLIED
    assert first.total == Decimal("18.00")
    index = evaluator.catalog.index
    async with transaction(pool) as conn:
        await campaigns.suspend(conn, live, sku="A", reason="OPERATOR")
    suspended = await evaluator.evaluate(cart)
    assert suspended.candidate("P1").outcome is Outcome.SUSPENDED
    assert evaluator.catalog.index is index  # only the suspensions were reloaded
    async with transaction(pool) as conn:
        await campaigns.resume(conn, live, sku="A", reason="OPERATOR")
        await campaigns.create(
            conn, campaign_pb("C2", promotions=[percent_promotion_pb("P2", "5", ["A"])]), "ann"
        )
        await campaigns.set_state(conn, "C2", CampaignState.ACTIVE)
    both = await evaluator.evaluate(cart)
    assert evaluator.catalog.index is not index  # a campaign change rebuilds it
    assert both.applied() == {"P1": Decimal("2.00"), "P2": Decimal("0.90")}
