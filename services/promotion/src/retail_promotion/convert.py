"""Conversions between retail.promotion.v1 messages and the pure domain (money, windows, promotions,
evaluation results). No validation here: see validation.py; inputs are assumed valid."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import datetime_pb2, decimal_pb2, money_pb2

from retail.common.v1 import time_window_pb2
from retail.promotion.v1 import campaign_pb2, evaluation_pb2, promotion_pb2
from retail_promotion.domain.evaluate import Evaluation, Outcome
from retail_promotion.domain.model import (
    AmountOff,
    BuyXGetY,
    CampaignScope,
    Eligibility,
    FixedPrice,
    Level,
    Mode,
    PercentOff,
    Promotion,
    Reward,
    SpendTier,
    TieredSpend,
)
from retail_promotion.domain.windows import Window

__all__ = [
    "campaign_scope",
    "decimal_from_proto",
    "evaluation_to_proto",
    "money_from_proto",
    "money_to_proto",
    "promotions_of",
    "timestamp",
    "window_from_proto",
]

_NANO = Decimal(1_000_000_000)


def money_from_proto(money: money_pb2.Money) -> Decimal:
    return Decimal(money.units) + Decimal(money.nanos) / _NANO


def money_to_proto(amount: Decimal, currency: str) -> money_pb2.Money:
    units = int(amount)  # truncates toward zero, like google.type.Money wants
    nanos = int((amount - units) * _NANO)
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def decimal_from_proto(value: decimal_pb2.Decimal) -> Decimal:
    return Decimal(value.value)


def timestamp(instant: datetime | None) -> Timestamp | None:
    if instant is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(instant.astimezone(UTC))
    return ts


def _wall(value: datetime_pb2.DateTime) -> datetime:
    return datetime(value.year, value.month, value.day, value.hours, value.minutes, value.seconds)


def window_from_proto(window: time_window_pb2.TimeWindow) -> Window:
    if window.WhichOneof("kind") == "local":
        end = _wall(window.local.end_time) if window.local.HasField("end_time") else None
        return Window(_wall(window.local.start_time), end, local=True)
    start = window.absolute.start_time.ToDatetime(tzinfo=UTC)
    end_abs = (
        window.absolute.end_time.ToDatetime(tzinfo=UTC) if window.absolute.HasField("end_time") else None
    )
    return Window(start, end_abs)


def campaign_scope(campaign: campaign_pb2.Campaign, *, active: bool) -> CampaignScope:
    return CampaignScope(
        campaign_id=campaign.campaign_id,
        active=active,
        window=window_from_proto(campaign.window),
        channels=frozenset(campaign.channel_ids),
        currency=campaign.currency_code,
        regions=frozenset(campaign.region_ids),
        locations=frozenset(campaign.location_ids),
        excluded_regions=frozenset(campaign.excluded_region_ids),
        excluded_locations=frozenset(campaign.excluded_location_ids),
        budgeted=campaign.HasField("budget"),
    )


def reward_from_proto(reward: promotion_pb2.Reward) -> Reward:
    kind = reward.WhichOneof("kind")
    if kind == "percent_off":
        return PercentOff(decimal_from_proto(reward.percent_off))
    if kind == "amount_off":
        return AmountOff(money_from_proto(reward.amount_off))
    if kind == "fixed_price":
        return FixedPrice(money_from_proto(reward.fixed_price))
    if kind == "buy_x_get_y":
        b = reward.buy_x_get_y
        percent = decimal_from_proto(b.percent_off) if b.HasField("percent_off") else Decimal(100)
        return BuyXGetY(b.buy_quantity, b.get_quantity, percent)
    tiers = []
    for tier in reward.tiered_spend.tiers:
        if tier.WhichOneof("reward") == "percent_off":
            tiers.append(
                SpendTier(money_from_proto(tier.min_spend), percent=decimal_from_proto(tier.percent_off))
            )
        else:
            tiers.append(
                SpendTier(money_from_proto(tier.min_spend), amount=money_from_proto(tier.amount_off))
            )
    return TieredSpend(tuple(sorted(tiers, key=lambda t: t.min_spend)))


def promotion_from_proto(p: promotion_pb2.Promotion, scope: CampaignScope) -> Promotion:
    e = p.eligibility
    return Promotion(
        promotion_id=p.promotion_id,
        campaign=scope,
        level=Level.CART if p.level == promotion_pb2.PROMOTION_LEVEL_CART else Level.LINE,
        reward=reward_from_proto(p.reward),
        eligibility=Eligibility(
            skus=frozenset(e.skus),
            categories=frozenset(e.category_ids),
            attributes=frozenset((a.key, a.value) for a in e.attributes),
            excluded_skus=frozenset(e.excluded_skus),
            segments=frozenset(e.customer_segments),
            codes=frozenset(c.upper() for c in e.codes),
            code_batches=frozenset(e.code_batch_ids),
            min_quantity=e.min_quantity,
            min_amount=money_from_proto(e.min_amount) if e.HasField("min_amount") else None,
        ),
        mode=Mode.EXCLUSIVE if p.stacking.mode == promotion_pb2.STACKING_MODE_EXCLUSIVE else Mode.STACKABLE,
        priority=p.stacking.priority,
        group=p.stacking.group,
        limited=p.limits.HasField("budget") or p.limits.max_redemptions > 0,
    )


def promotions_of(campaign: campaign_pb2.Campaign, *, active: bool) -> list[Promotion]:
    scope = campaign_scope(campaign, active=active)
    return [promotion_from_proto(p, scope) for p in campaign.promotions]


_OUTCOMES = {
    Outcome.APPLIED: evaluation_pb2.CANDIDATE_OUTCOME_APPLIED,
    Outcome.SUSPENDED: evaluation_pb2.CANDIDATE_OUTCOME_SUSPENDED,
    Outcome.WINDOW: evaluation_pb2.CANDIDATE_OUTCOME_WINDOW,
    Outcome.SCOPE: evaluation_pb2.CANDIDATE_OUTCOME_SCOPE,
    Outcome.BUDGET: evaluation_pb2.CANDIDATE_OUTCOME_BUDGET,
    Outcome.ELIGIBILITY: evaluation_pb2.CANDIDATE_OUTCOME_ELIGIBILITY,
    Outcome.STACKING: evaluation_pb2.CANDIDATE_OUTCOME_STACKING,
}


def evaluation_to_proto(
    ev: Evaluation,
) -> tuple[
    list[evaluation_pb2.EvaluatedLine], evaluation_pb2.CartTotals, list[evaluation_pb2.CandidateResult]
]:
    cur = ev.currency
    lines = [
        evaluation_pb2.EvaluatedLine(
            line_index=ln.index,
            sku=ln.sku,
            quantity=ln.quantity,
            unit_price=money_to_proto(ln.unit_price, cur),
            original_amount=money_to_proto(ln.original, cur),
            discount=money_to_proto(ln.discount, cur),
            final_amount=money_to_proto(ln.final, cur),
            adjustments=[
                evaluation_pb2.Adjustment(
                    promotion_id=a.promotion_id,
                    campaign_id=a.campaign_id,
                    amount=money_to_proto(a.amount, cur),
                    units=a.units,
                )
                for a in ln.adjustments
            ],
        )
        for ln in ev.lines
    ]
    totals = evaluation_pb2.CartTotals(
        subtotal=money_to_proto(ev.subtotal, cur),
        discount=money_to_proto(ev.discount, cur),
        total=money_to_proto(ev.total, cur),
    )
    candidates = [
        evaluation_pb2.CandidateResult(
            promotion_id=c.promotion_id,
            campaign_id=c.campaign_id,
            outcome=_OUTCOMES[c.outcome],
            detail=c.detail,
            discount=money_to_proto(c.discount, cur),
            line_indexes=list(c.lines),
        )
        for c in ev.candidates
    ]
    return lines, totals, candidates
