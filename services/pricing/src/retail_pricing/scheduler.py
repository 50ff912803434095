"""Activation scheduler: announces PriceChanged at the instants entries start or end, and at the
instants scheduled tax rates take effect.

It sleeps until the next due instant (read from the activations table), or until woken because a change
set was approved (here, or on another replica: their PriceChanged events wake it), and never longer than
`max_sleep`. Due rows are claimed with FOR UPDATE SKIP LOCKED and marked announced in the transaction
that writes the events, so with several replicas each instant is announced once; rows that fell due
while no replica ran are still unannounced and are caught up at start. Scheduled tax rates are due rows
of their own (tax_rate_activations): claimed and marked the same way, in the same transaction,
so an instant where an entry and a rate change together gives one PriceChanged per SKU.
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
from retail_pricing.domain.model import PriceEntry, PriceList, PriceQuery
from retail_pricing.domain.preview import Probe, probes_for, probes_for_rate
from retail_pricing.domain.pricer import Pricer, ProductInfo
from retail_pricing.repository import activations
from retail_pricing.repository import tax_rates as rates_repo
from retail_pricing.repository.entries import entries_for_skus, priced_skus_of_tax_class
from retail_pricing.repository.price_lists import load_locations, load_price_lists
from retail_pricing.repository.products import get_products
from retail_pricing.repository.tax_rates import load_tax_rates

__all__ = ["ActivationScheduler"]

logger = logging.getLogger("retail_pricing.scheduler")
_JUST_BEFORE = timedelta(microseconds=1)
_SKU_CHUNK = 1000  # SKUs of a tax class loaded and compared at a time
# Per SKU: instant -> the scopes whose price changes then.
Changes = dict[str, dict[datetime, set[Probe]]]


class ActivationScheduler:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        clock: Clock,
        writer: OutboxWriter,
        *,
        batch: int = 500,
        rate_batch: int = 10,
        max_sleep: timedelta = timedelta(seconds=30),
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._writer = writer
        self._batch = batch
        self._rate_batch = rate_batch  # a due tax rate can move every SKU of its class
        self._max_sleep = max_sleep
        self._wake = asyncio.Event()
        self.announced = 0
        self._more = False  # the last run_once left due rows behind (a full batch)

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Announce what is due now; returns the number of due rows handled."""
        async with transaction(self._pool) as conn:
            now = self._clock.now()
            due = await activations.claim_due(conn, now, self._batch)
            rates = await rates_repo.claim_due_rates(conn, now, self._rate_batch)
            if due or rates:
                await self._announce(conn, due, rates)
                await activations.mark_announced(conn, due, now)
                await rates_repo.mark_rates_announced(conn, rates, now)
        self._more = len(due) >= self._batch or len(rates) >= self._rate_batch
        return len(due) + len(rates)

    async def _announce(
        self, conn: Connection, due: Sequence[activations.Due], rates: Sequence[rates_repo.DueRate]
    ) -> None:
        lists = await load_price_lists(conn)
        locations = await load_locations(conn)
        pricer = Pricer(lists, locations, await load_tax_rates(conn))
        changes: Changes = {}
        await self._entry_changes(conn, due, pricer, changes)
        for rate in rates:
            await self._rate_changes(conn, rate, pricer, changes)
        announcements = [
            events.PriceChange(sku, frozenset(scopes), instant, events_pb2.PRICE_CHANGE_CAUSE_ACTIVATION)
            for sku, by_instant in sorted(changes.items())
            for instant, scopes in sorted(by_instant.items())
        ]
        await events.price_changed_many(self._writer, conn, announcements)
        self.announced += len(announcements)

    async def _rate_changes(
        self, conn: Connection, rate: rates_repo.DueRate, pricer: Pricer, changes: Changes
    ) -> None:
        """Every priced SKU of the rate's class whose price moves at its instant in a scope it reaches."""
        skus = await priced_skus_of_tax_class(conn, rate.tax_class)
        for first in range(0, len(skus), _SKU_CHUNK):
            chunk = skus[first : first + _SKU_CHUNK]
            entries = await entries_for_skus(conn, chunk)
            products = await get_products(conn, chunk)
            for sku in chunk:
                product = products.get(sku)
                if product is None:
                    continue
                info = ProductInfo(sku, product.active, product.tax_class)
                sku_entries = entries.get(sku, ())
                list_ids = sorted({e.price_list_id for e in sku_entries})
                for list_id in list_ids:
                    price_list = pricer.lists.get(list_id)
                    if price_list is None:
                        continue
                    for probe in probes_for_rate(price_list, rate.region_id, pricer.locations):
                        if _moved(pricer, info, sku_entries, price_list, probe, rate.effective_at):
                            changes.setdefault(sku, {}).setdefault(rate.effective_at, set()).add(probe)

    async def _entry_changes(
        self, conn: Connection, due: Sequence[activations.Due], pricer: Pricer, changes: Changes
    ) -> None:
        lists, locations = pricer.lists, pricer.locations
        skus = sorted({d.sku for d in due})
        entries = await entries_for_skus(conn, skus)
        products = await get_products(conn, skus)
        by_sku: dict[str, list[activations.Due]] = {}
        for d in due:
            by_sku.setdefault(d.sku, []).append(d)
        for sku in skus:
            product = products.get(sku)
            if product is None:
                continue
            info = ProductInfo(sku, product.active, product.tax_class)
            changed = changes.setdefault(sku, {})
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
                    if _moved(pricer, info, entries.get(sku, ()), price_list, probe, d.due_at):
                        changed.setdefault(d.due_at, set()).add(probe)
            if not changed:
                del changes[sku]

    async def _sleep(self) -> None:
        async with self._pool.acquire() as conn:
            instants = [await activations.next_due_at(conn), await rates_repo.next_rate_due_at(conn)]
        next_due = min((i for i in instants if i is not None), default=None)
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
                await self.run_once()
                if self._more:
                    continue
                await self._sleep()
            except asyncio.CancelledError:
                raise
            except Exception:  # database away for a while: keep trying
                logger.exception("activation scheduler failed; retrying")
                await asyncio.sleep(1.0)


def _moved(
    pricer: Pricer,
    product: ProductInfo,
    entries: Sequence[PriceEntry],
    price_list: PriceList,
    probe: Probe,
    instant: datetime,
) -> bool:
    """Whether the resolved price (net, tax or gross) in the probe's scope changes at `instant`."""
    query = PriceQuery(
        sku=product.sku,
        currency=price_list.currency,
        at=instant,
        channel_id=probe.channel_id,
        location_id=probe.location_id,
        region_id=probe.region_id,
        customer_segment=probe.customer_segment,
    )
    try:
        after = pricer.resolve(query, product, entries)
        before = pricer.resolve(replace(query, at=instant - _JUST_BEFORE), product, entries)
    except RuleError:
        return False
    return (before and before.amounts) != (after and after.amounts)
