"""Test helpers for the promotion service's own tests: campaigns, promotions and carts with short defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from retail_promotion.domain.evaluate import Evaluation, evaluate
from retail_promotion.domain.model import (
    CampaignScope,
    Cart,
    Eligibility,
    Level,
    Line,
    Mode,
    Product,
    Promotion,
    Reward,
    Suspensions,
)
from retail_promotion.domain.windows import Window

AT = datetime(2026, 6, 6, 12, 0, tzinfo=UTC)
JUNE = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))


def D(value: str | int) -> Decimal:  # noqa: N802
    return Decimal(value)


def campaign(campaign_id: str = "C1", **kw: Any) -> CampaignScope:
    defaults: dict[str, Any] = {"active": True, "window": JUNE, "channels": frozenset({"web", "app"})}
    defaults.update(kw)
    return CampaignScope(campaign_id=campaign_id, **defaults)


CAMPAIGN = campaign()


def promo(
    promotion_id: str,
    reward: Reward,
    *,
    skus: Iterable[str] = (),
    level: Level = Level.LINE,
    exclusive: bool = False,
    priority: int = 0,
    group: str = "",
    of: CampaignScope = CAMPAIGN,
    **eligibility: Any,
) -> Promotion:
    return Promotion(
        promotion_id=promotion_id,
        campaign=of,
        level=level,
        reward=reward,
        eligibility=Eligibility(skus=frozenset(skus), **eligibility),
        mode=Mode.EXCLUSIVE if exclusive else Mode.STACKABLE,
        priority=priority,
        group=group,
    )


def cart(*lines: tuple[str, int, str], **kw: Any) -> Cart:
    defaults: dict[str, Any] = {"currency": "EUR", "channel": "web", "at": AT}
    defaults.update(kw)
    return Cart(lines=tuple(Line(s, q, Decimal(p)) for s, q, p in lines), **defaults)


def run(
    c: Cart,
    *promotions: Promotion,
    products: Mapping[str, Product] | None = None,
    suspensions: Suspensions | None = None,
    exhausted: Iterable[str] = (),
) -> Evaluation:
    return evaluate(
        c, promotions, products=products or {}, suspensions=suspensions, exhausted=frozenset(exhausted)
    )


def finals(ev: Evaluation) -> list[str]:
    return [str(line.final) for line in ev.lines]


# ---- protos (repository and process-level tests) ----


def money_pb(amount: str, currency: str = "EUR") -> Any:
    from retail_promotion.convert import money_to_proto

    return money_to_proto(Decimal(amount), currency)


def campaign_pb(
    campaign_id: str = "C1",
    *,
    promotions: Iterable[Any] = (),
    channels: Iterable[str] = ("web", "app"),
    start: datetime = datetime(2026, 6, 1, tzinfo=UTC),
    end: datetime | None = datetime(2026, 7, 1, tzinfo=UTC),
    **fields: Any,
) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    from retail.common.v1 import time_window_pb2
    from retail.promotion.v1 import campaign_pb2

    window = time_window_pb2.AbsoluteWindow(start_time=Timestamp(seconds=int(start.timestamp())))
    if end is not None:
        window.end_time.FromDatetime(end)
    return campaign_pb2.Campaign(
        campaign_id=campaign_id,
        currency_code=fields.pop("currency_code", "EUR"),
        window=time_window_pb2.TimeWindow(absolute=window),
        channel_ids=list(channels),
        promotions=list(promotions),
        **fields,
    )


def percent_promotion_pb(
    promotion_id: str, percent: str, skus: Iterable[str], *, exclusive: bool = False, **fields: Any
) -> Any:
    from google.type import decimal_pb2

    from retail.promotion.v1 import promotion_pb2

    return promotion_pb2.Promotion(
        promotion_id=promotion_id,
        level=fields.pop("level", promotion_pb2.PROMOTION_LEVEL_LINE),
        eligibility=promotion_pb2.Eligibility(skus=list(skus), **fields.pop("eligibility", {})),
        reward=promotion_pb2.Reward(percent_off=decimal_pb2.Decimal(value=percent)),
        stacking=promotion_pb2.Stacking(
            mode=promotion_pb2.STACKING_MODE_EXCLUSIVE if exclusive else promotion_pb2.STACKING_MODE_STACKABLE
        ),
        **fields,
    )
