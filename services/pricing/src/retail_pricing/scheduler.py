"""Activation scheduler: announces PriceChanged at the instants entries start or end.

It sleeps until the next due instant (read from the activations table), or until woken because a change
set was approved (here, or on another replica: their PriceChanged events wake it), and never longer than
`max_sleep`. Due rows are claimed with FOR UPDATE SKIP LOCKED and marked announced in the transaction
that writes the events, so with several replicas each instant is announced once; rows that fell due
while no replica ran are still unannounced and are caught up at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg

from retail.pricing.v1 import events_pb2
from retail_common.clock import Clock
from retail_common.db import Connection, transaction
from retail_common.messaging import OutboxWriter
from retail_pricing import events
from retail_pricing.domain.errors import RuleError
from retail_pricing.domain.model import PriceQuery
from retail_pricing.domain.preview import Probe, probes_for
from retail_pricing.domain.pricer import Pricer, ProductInfo
from retail_pricing.repository import activations
from retail_pricing.repository.entries import entries_for_skus
from retail_pricing.repository.price_lists import load_locations, load_price_lists, load_tax_rates
from retail_pricing.repository.products import get_products

__all__ = ["ActivationScheduler"]

logger = logging.getLogger("retail_pricing.scheduler")
_JUST_BEFORE = timedelta(microseconds=1)


class ActivationScheduler:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        clock: Clock,
        writer: OutboxWriter,
        *,
        batch: int = 500,
        max_sleep: timedelta = timedelta(seconds=30),
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._writer = writer
        self._batch = batch
        self._max_sleep = max_sleep
        self._wake = asyncio.Event()
        self.announced = 0

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Announce what is due now; returns the number of due rows handled."""
        async with transaction(self._pool) as conn:
            now = self._clock.now()
            due = await activations.claim_due(conn, now, self._batch)
            if due:
                await self._announce(conn, due)
                await activations.mark_announced(conn, due, now)
        return len(due)

    async def _announce(self, conn: Connection, due: Sequence[activations.Due]) -> None:
        lists = await load_price_lists(conn)
        locations = await load_locations(conn)
        pricer = Pricer(lists, locations, await load_tax_rates(conn))
        skus = sorted({d.sku for d in due})
        entries = await entries_for_skus(conn, skus)
        products = await get_products(conn, skus)
        announcements: list[events.PriceChange] = []
        by_sku: dict[str, list[activations.Due]] = {}
        for d in due:
            by_sku.setdefault(d.sku, []).append(d)
        for sku in skus:
            product = products.get(sku)
            if product is None:
                continue
            info = ProductInfo(sku, product.active, product.tax_class)
            changed: dict[datetime, set[Probe]] = {}
            for d in by_sku[sku]:
                price_list = lists.get(d.price_list_id)
                if price_list is None:
                    continue
                probes = probes_for(price_list)
                if (
                    d.time_zone
                ):  # a local window: the stores of that zone (of the list's scope, if it has any)
                    in_zone = sorted(
                        loc.location_id for loc in locations.values() if loc.time_zone == d.time_zone
                    )
                    wanted = price_list.scope.location_ids
                    channels = sorted(price_list.scope.channel_ids) or [""]
                    probes = [
                        Probe(c, "", loc, price_list.scope.customer_segment)
                        for c in channels
                        for loc in in_zone
                        if not wanted or loc in wanted
                    ]
                for probe in probes:
                    query = PriceQuery(
                        sku=sku,
                        currency=price_list.currency,
                        at=d.due_at,
                        channel_id=probe.channel_id,
                        location_id=probe.location_id,
                        region_id=probe.region_id,
                        customer_segment=probe.customer_segment,
                    )
                    try:
                        after = pricer.resolve(query, info, entries.get(sku, ()))
                        before = pricer.resolve(
                            replace(query, at=d.due_at - _JUST_BEFORE), info, entries.get(sku, ())
                        )
                    except RuleError:
                        continue
                    if (before and before.amounts) != (after and after.amounts):
                        changed.setdefault(d.due_at, set()).add(probe)
            for instant in sorted(changed):
                announcements.append(
                    events.PriceChange(
                        sku, frozenset(changed[instant]), instant, events_pb2.PRICE_CHANGE_CAUSE_ACTIVATION
                    )
                )
        await events.price_changed_many(self._writer, conn, announcements)
        self.announced += len(announcements)

    async def _sleep(self) -> None:
        async with self._pool.acquire() as conn:
            next_due = await activations.next_due_at(conn)
        limit = self._clock.now() + self._max_sleep
        target = limit if next_due is None else min(next_due, limit)
        if target <= self._clock.now():
            return
        woken = asyncio.ensure_future(self._wake.wait())
        timer = asyncio.ensure_future(self._clock.sleep_until(target))
        try:
            await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (woken, timer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._wake.clear()

    async def run(self) -> None:
        while True:
            try:
                handled = await self.run_once()
                if handled >= self._batch:
                    continue
                await self._sleep()
            except asyncio.CancelledError:
                raise
            except Exception:  # database away for a while: keep trying
                logger.exception("activation scheduler failed; retrying")
                await asyncio.sleep(1.0)
