"""ReconcileChannel: compare what the ledger holds for a channel with the systems of record and re-push
what drifted (e.g. events lost behind the gateway's back).

Compared today: availability entities (the channel's available-to-sell at each SKU/location, from
inventory's BatchGetAvailability). A drifted entity's payload is corrected in place at its version and
re-pushed as a resync item (change stream: appended to the log; push modes: queued again), so later
genuine changes (higher versions) still apply. Prices (the payload carries no composed amounts yet) and
promotion state are not compared yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from retail.channel.v1 import changes_pb2
from retail.inventory.v1 import availability_pb2, inventory_service_pb2, inventory_service_pb2_grpc
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
    def __init__(self, inventory: grpc.aio.Channel, clock: Clock, timeout: float) -> None:
        self._inventory = inventory_service_pb2_grpc.InventoryServiceStub(inventory)
        self._clock = clock
        self._timeout = timeout
        self._repo = ReconcileRepository()

    async def reconcile(self, conn: Connection, channel: ChannelRecord) -> ReconcileCounts:
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
                await self._repo.repair(
                    conn,
                    channel.channel_id,
                    entity_key,
                    change.SerializeToString(deterministic=True),
                    change_log=channel.settings.mode == DeliveryMode.STREAM,
                    now=self._clock.now(),
                )
        return ReconcileCounts(checked=checked, drifted=drifted, repushed=drifted)
