"""Application layer of EvaluateCart, GetActivePromotions and RedeemPromotions: prices from pricing,
replicas and the per-replica promotion index from the database, the pure evaluator, and the atomic
redemption with re-evaluation when a limit ran out in between."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from retail_common.db import Connection, transaction
from retail_common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)
from retail_promotion.dependencies import PriceQuery, Pricing
from retail_promotion.domain.evaluate import Evaluation, Outcome, evaluate
from retail_promotion.domain.model import Cart, Line, Product, Promotion
from retail_promotion.domain.redemption import codes_to_consume
from retail_promotion.price_cache import CachingPricing
from retail_promotion.repository import CampaignRepository, RedemptionRepository
from retail_promotion.repository.catalog import (
    LiveCatalog,
    Versions,
    catalog_version,
    exhausted,
    load_live_catalog,
    load_suspensions,
    lookups,
)
from retail_promotion.repository.redemptions import AppliedItem, LimitReachedError, StoredRedemption

__all__ = ["CartInput", "Evaluator", "Redeemed"]

MAX_REDEEM_ATTEMPTS = 10


@dataclass(frozen=True)
class CartInput:
    channel_id: str
    currency: str
    lines: tuple[tuple[str, int], ...]
    at: datetime
    location_id: str = ""
    segment: str = ""
    codes: tuple[str, ...] = ()
    current: bool = True  # evaluated at "now" (cached prices allowed), not at a caller-given instant


@dataclass(frozen=True)
class Prepared:
    cart: Cart
    candidates: list[Promotion]
    catalog: LiveCatalog
    exhausted: frozenset[str]
    products: dict[str, Product]


@dataclass(frozen=True)
class Redeemed:
    """A redemption: the stored row (new or the first call's) and, for a new one, its evaluation."""

    stored: StoredRedemption
    evaluation: Evaluation | None
    first_call: bool


class Evaluator:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        pricing: Pricing,
        campaigns: CampaignRepository,
        redemptions: RedemptionRepository,
    ) -> None:
        self._pool = pool
        self._pricing = pricing
        self._campaigns = campaigns
        self._redemptions = redemptions
        self._catalog: LiveCatalog | None = None
        self._lock = asyncio.Lock()

    @property
    def catalog(self) -> LiveCatalog:
        """The index loaded by the last evaluation of this replica."""
        assert self._catalog is not None
        return self._catalog

    async def _live(self, conn: Connection, version: Versions | None = None) -> LiveCatalog:
        """The promotion index of this replica: rebuilt when the campaigns' version moved; only its
        suspensions reloaded when just theirs did."""
        if version is None:
            version = await catalog_version(conn)
        if self._catalog is not None and self._catalog.version == version:
            return self._catalog
        async with self._lock:
            current = self._catalog
            if current is None or current.version[0] != version[0]:
                self._catalog = await load_live_catalog(conn)
                # The index is tens of thousands of long-lived objects: keep them out of the cyclic
                # collector, whose full passes over them stalled every request for ~200 ms.
                gc.freeze()
            elif current.version != version:
                latest = await catalog_version(conn)
                if latest[0] != current.version[0]:
                    self._catalog = await load_live_catalog(conn)
                    gc.freeze()
                else:
                    suspensions = await load_suspensions(conn, current.campaigns)
                    self._catalog = replace(current, version=latest, suspensions=suspensions)
            assert self._catalog is not None
            return self._catalog

    async def _prices(self, inp: CartInput) -> list[Line]:
        queries = [
            PriceQuery(sku, inp.currency, inp.channel_id, inp.location_id, inp.segment, qty, inp.at)
            for sku, qty in inp.lines
        ]
        if isinstance(self._pricing, CachingPricing):
            answers = await self._pricing.resolve(queries, current=inp.current)
        else:
            answers = await self._pricing.resolve(queries)
        problems = [
            PreconditionViolation("PRICE", sku, f"lines[{i}]: {a.error_code or 'no price'} {a.error}".strip())
            for i, ((sku, _), a) in enumerate(zip(inp.lines, answers, strict=True))
            if a.unit_price is None
        ]
        if problems:
            raise FailedPrecondition(problems, "no price for some lines")
        return [
            Line(sku, qty, a.unit_price)
            for (sku, qty), a in zip(inp.lines, answers, strict=True)
            if a.unit_price is not None
        ]

    async def prepare(self, inp: CartInput) -> Prepared:
        lines = await self._prices(inp)
        async with self._pool.acquire() as conn:
            version, products, location = await lookups(
                conn, (sku for sku, _ in inp.lines), inp.location_id or None
            )
            catalog = await self._live(conn, version)
            if inp.location_id and location is None:
                raise InvalidArgument([FieldViolation("scope.location_id", "unknown location")])
            entered = tuple(sorted({c.upper() for c in inp.codes}))
            batch_codes = await self._campaigns.unused_batch_codes(conn, entered) if entered else {}
            cart = Cart(
                currency=inp.currency,
                channel=inp.channel_id,
                at=inp.at,
                lines=tuple(lines),
                location_id=inp.location_id or None,
                region_id=location.region_id if location else None,
                time_zone=location.time_zone if location else None,
                segment=inp.segment or None,
                codes=frozenset(entered),
                batch_codes=batch_codes,
            )
            candidates = catalog.index.for_cart(cart, products)
            spent: frozenset[str] = frozenset()
            if any(p.limited or p.campaign.budgeted for p in candidates):
                spent = await exhausted(
                    conn,
                    [p.promotion_id for p in candidates],
                    sorted({p.campaign.campaign_id for p in candidates}),
                )
        return Prepared(cart, candidates, catalog, spent, dict(products))

    def run(self, prepared: Prepared, extra_exhausted: frozenset[str] = frozenset()) -> Evaluation:
        return evaluate(
            prepared.cart,
            prepared.candidates,
            products=prepared.products,
            suspensions=prepared.catalog.suspensions,
            exhausted=prepared.exhausted | extra_exhausted,
        )

    async def evaluate(self, inp: CartInput) -> Evaluation:
        return self.run(await self.prepare(inp))

    async def active_promotions(self, inp: CartInput) -> list[tuple[Evaluation, list[Promotion]]]:
        """Per SKU (inp.lines, quantity 1 each, no codes): its evaluation alone and the code-free
        promotions that applied to it."""
        prepared = await self.prepare(replace(inp, codes=()))
        out = []
        index = prepared.catalog.index
        for line in prepared.cart.lines:
            single = replace(prepared.cart, lines=(replace(line, quantity=1),))
            ev = evaluate(
                single,
                index.for_skus(single.channel, [line.sku], prepared.products),  # this SKU's only
                products=prepared.products,
                suspensions=prepared.catalog.suspensions,
                exhausted=prepared.exhausted,
            )
            by_id = {p.promotion_id: p for p in prepared.candidates}
            applied = [by_id[c.promotion_id] for c in ev.candidates if c.outcome is Outcome.APPLIED]
            out.append((ev, applied))
        return out

    async def redeem(
        self,
        order_id: str,
        fingerprint: str,
        inp: CartInput,
        response: Callable[[Evaluation], bytes],
        audit: Callable[[Connection, StoredRedemption], Awaitable[None]],
    ) -> Redeemed:
        """Evaluate and consume atomically; a limit that ran out meanwhile is excluded and the cart
        re-evaluated. A retry of the order returns the first redemption."""
        prepared = await self.prepare(inp)
        forced: set[str] = set()
        for _ in range(MAX_REDEEM_ATTEMPTS):
            ev = self.run(prepared, frozenset(forced))
            applied = _applied(prepared, ev)
            try:
                async with transaction(self._pool) as conn:
                    if not await self._redemptions.claim(conn, order_id, fingerprint, inp.channel_id):
                        stored = await self._redemptions.get(conn, order_id)
                        assert stored is not None
                        if stored.fingerprint != fingerprint:
                            raise InvalidArgument(
                                [FieldViolation("order_id", "already redeemed with a different cart")]
                            )
                        return Redeemed(stored, None, first_call=False)
                    await self._redemptions.consume(conn, order_id, applied)
                    await self._redemptions.store_response(conn, order_id, response(ev))
                    stored = await self._redemptions.get(conn, order_id)
                    assert stored is not None
                    await audit(conn, stored)
                    return Redeemed(stored, ev, first_call=True)
            except LimitReachedError as limit:
                if limit.kind == "code":
                    codes = {c: b for c, b in prepared.cart.batch_codes.items() if c != limit.key}
                    prepared = replace(prepared, cart=replace(prepared.cart, batch_codes=codes))
                else:
                    forced.add(limit.key)
        raise FailedPrecondition(
            [PreconditionViolation("REDEMPTION", order_id, "limits kept changing; retry")], "contention"
        )


def _applied(prepared: Prepared, ev: Evaluation) -> list[AppliedItem]:
    by_id = {p.promotion_id: p for p in prepared.candidates}
    applied = [c for c in ev.candidates if c.outcome is Outcome.APPLIED and c.discount > 0]
    codes = codes_to_consume(
        (by_id[c.promotion_id] for c in applied), prepared.cart.codes, prepared.cart.batch_codes
    )
    return [
        AppliedItem(c.promotion_id, c.campaign_id, c.discount, tuple(codes.get(c.promotion_id, ())))
        for c in applied
    ]
