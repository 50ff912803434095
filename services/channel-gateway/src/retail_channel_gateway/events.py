"""The gateway's own events (retail.channel.v1 events.proto), written to the outbox in the transaction
of the ledger change they describe.

DeliveryStateChanged is emitted for the kinds the promotion deployment ledger follows (price, promotion,
campaign) and for every dead letter; bulk stock deliveries are visible in the ledger and metrics only,
so a 200,000-row snapshot does not become 200,000 more events. Per-store entities of store groups
(domain/store_scope.py) are reported per batch: one event listing the stores with the same outcome, with
the aggregate key `<channel>/<entity>/<digest of the stores>` so the consumers' per-aggregate version gate
orders repeats of one store set without dropping another set's event of the same entity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import channel_pb2, events_pb2, health_pb2
from retail_channel_gateway.domain.breaker import BreakerState
from retail_channel_gateway.domain.changes import ChangeKind
from retail_common.db import Connection
from retail_common.messaging import OutboxWriter, event_subject

__all__ = ["TRACKED_KINDS", "EventWriter", "breaker_proto"]

TRACKED_KINDS = frozenset({ChangeKind.PRICE.value, ChangeKind.PROMOTION.value, ChangeKind.CAMPAIGN.value})


def _ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def breaker_proto(state: str) -> health_pb2.BreakerState.ValueType:
    return health_pb2.BreakerState.Value(f"BREAKER_STATE_{state}")


class EventWriter:
    def __init__(self, outbox: OutboxWriter) -> None:
        self._outbox = outbox

    async def delivery_state(
        self,
        conn: Connection,
        *,
        channel_id: str,
        entity_key: str,
        kind: str,
        version: int,
        state: events_pb2.DeliveryState.ValueType,
        detail: str,
        at: datetime,
        location_ids: Sequence[str] = (),
    ) -> None:
        stores = sorted(set(location_ids))
        aggregate_key = f"{channel_id}/{entity_key}"
        if stores:
            aggregate_key += "/" + hashlib.sha256("\n".join(stores).encode()).hexdigest()[:16]
        event = events_pb2.DeliveryStateChanged(
            channel_id=channel_id,
            entity_key=entity_key,
            kind=channel_pb2.ChangeKind.Value(f"CHANGE_KIND_{kind}"),
            entity_version=version,
            state=state,
            detail=detail,
            change_time=_ts(at),
            location_ids=stores,
        )
        await self._outbox.append(
            conn,
            subject=event_subject("channel", "delivery_state_changed", channel_id),
            event_type="retail.channel.v1.DeliveryStateChanged",
            aggregate_type="retail.channel.v1.Delivery",
            aggregate_key=aggregate_key,
            payload=event,
            occurred_at=at,
        )

    async def channel_health(
        self,
        conn: Connection,
        *,
        channel_id: str,
        state: BreakerState,
        backlog: int,
        detail: str,
        at: datetime,
    ) -> None:
        condition = (
            health_pb2.CHANNEL_CONDITION_HEALTHY
            if state is BreakerState.CLOSED
            else health_pb2.CHANNEL_CONDITION_DEGRADED
        )
        event = events_pb2.ChannelHealthChanged(
            channel_id=channel_id,
            condition=condition,
            breaker_state=breaker_proto(state.value),
            backlog=backlog,
            detail=detail,
            change_time=_ts(at),
        )
        await self._outbox.append(
            conn,
            subject=event_subject("channel", "channel_health_changed", channel_id),
            event_type="retail.channel.v1.ChannelHealthChanged",
            aggregate_type="retail.channel.v1.Channel",
            aggregate_key=channel_id,
            payload=event,
            occurred_at=at,
        )
