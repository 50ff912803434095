"""ReconcileChannel: compare what the ledger holds for a channel with the systems of record and re-push
what drifted (e.g. events lost behind the gateway's back).

Compared:
- availability entities: the channel's available-to-sell at each SKU/location (inventory's
  BatchGetAvailability);
- price entities of channels that get composed amounts (`currency_code`): the list, sale and reference
  price the channel was last sent (the ledger keeps the delivered payload) against a fresh composition
  (pricing + active promotions, delivery/composer.py), so a promotion started or stopped behind the
  gateway's back shows as a sale-price drift. Price entities not yet delivered, or sent without amounts
  (no price in scope, or channels without a currency), are not compared (nothing to compare).
A drifted entity's payload is corrected in place at its version and re-pushed as a resync item (change
stream: appended to the log; push modes: queued again), so later genuine changes (higher versions) still
apply. Promotion and campaign state entities are not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from retail.channel.v1 import changes_pb2
from retail.inventory.v1 import availability_pb2, inventory_service_pb2, inventory_service_pb2_grpc
from retail_channel_gateway.delivery.composer import PriceComposer
from retail_channel_gateway.domain.changes import ChangeKind
from retail_channel_gateway.domain.policy import DeliveryMode
from retail_channel_gateway.downstream import call
from retail_channel_gateway.repository import ChannelRecord
from retail_channel_gateway.repository.ledger import ReconcileRepository
from retail_common.clock import Clock
from retail_common.db import Connection

__all__ = ["ReconcileCounts", "Reconciler"]

_BATCH = 1000


@dataclass(frozen=True)
class ReconcileCounts:
    checked: int
    drifted: int
    repushed: int


class Reconciler:
    def __init__(
        self,
        inventory: grpc.aio.Channel,
        clock: Clock,
        timeout: float,
        composer: PriceComposer | None = None,
    ) -> None:
        self._inventory = inventory_service_pb2_grpc.InventoryServiceStub(inventory)
        self._clock = clock
        self._timeout = timeout
        self._composer = composer
        self._repo = ReconcileRepository()

    async def reconcile(self, conn: Connection, channel: ChannelRecord) -> ReconcileCounts:
        stock = await self._availability(conn, channel)
        prices = await self._prices(conn, channel)
        return ReconcileCounts(
            checked=stock.checked + prices.checked,
            drifted=stock.drifted + prices.drifted,
            repushed=stock.repushed + prices.repushed,
        )

    async def _repair(
        self, conn: Connection, channel: ChannelRecord, entity_key: str, change: changes_pb2.ChannelChange
    ) -> None:
        await self._repo.repair(
            conn,
            channel.channel_id,
            entity_key,
            change.SerializeToString(deterministic=True),
            change_log=channel.settings.mode == DeliveryMode.STREAM,
            now=self._clock.now(),
        )

    async def _prices(self, conn: Connection, channel: ChannelRecord) -> ReconcileCounts:
        currency = channel.settings.currency
        if self._composer is None or not currency:
            return ReconcileCounts(0, 0, 0)
        entries = await self._repo.entries_of_kind(conn, channel.channel_id, ChangeKind.PRICE.value)
        sent = []
        for entity_key, _, payload in entries:
            change = changes_pb2.ChannelChange.FromString(payload)
            if change.WhichOneof("body") == "price" and change.price.HasField("list_price"):
                sent.append((entity_key, change))
        drifted = 0
        for start in range(0, len(sent), _BATCH):
            chunk = sent[start : start + _BATCH]
            fresh = []
            for _, change in chunk:
                copy = changes_pb2.ChannelChange()
                copy.CopyFrom(change)
                for field in ("list_price", "sale_price", "reference_price"):
                    copy.price.ClearField(field)
                fresh.append(copy)
            await self._composer.compose(channel.channel_id, currency, fresh, channel.location_ids)
            for (entity_key, change), truth in zip(chunk, fresh, strict=True):
                if truth.price == change.price:
                    continue
                drifted += 1
                await self._repair(conn, channel, entity_key, truth)
        return ReconcileCounts(checked=len(sent), drifted=drifted, repushed=drifted)

    async def _availability(self, conn: Connection, channel: ChannelRecord) -> ReconcileCounts:
        entries = await self._repo.entries_of_kind(conn, channel.channel_id, ChangeKind.AVAILABILITY.value)
        checked = drifted = 0
        for start in range(0, len(entries), _BATCH):
            chunk = entries[start : start + _BATCH]
            held = [changes_pb2.ChannelChange.FromString(payload) for _, _, payload in chunk]
            request = inventory_service_pb2.BatchGetAvailabilityRequest(
                channel_id=channel.channel_id,
                queries=[
                    inventory_service_pb2.AvailabilityQuery(
                        sku=c.availability.sku,
                        scope=availability_pb2.AvailabilityScope(location_id=c.availability.location_id),
                    )
                    for c in held
                ],
                totals_only=True,
            )
            response = await call(
                self._inventory.BatchGetAvailability(request, timeout=self._timeout), "inventory"
            )
            for (entity_key, _, _), change, truth in zip(chunk, held, response.availabilities, strict=True):
                checked += 1
                if change.availability.available_to_sell == truth.available_to_sell:
                    continue
                drifted += 1
                change.availability.available_to_sell = truth.available_to_sell
                await self._repair(conn, channel, entity_key, change)
        return ReconcileCounts(checked=checked, drifted=drifted, repushed=drifted)
