"""ChannelGatewayService: the channel façade and change stream (thin: validate, scope, delegate)."""

# gRPC method names are the contract's.
# ruff: noqa: N802

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc

from retail.channel.v1 import changes_pb2, events_pb2
from retail.channel.v1 import channel_gateway_service_pb2 as pb
from retail.channel.v1 import channel_gateway_service_pb2_grpc as pb_grpc
from retail.inventory.v1 import inventory_service_pb2, reservation_pb2
from retail_channel_gateway.access import (
    Registry,
    caller,
    require_assortment,
    require_location,
    resolve_channel,
)
from retail_channel_gateway.domain.policy import DeliveryMode
from retail_channel_gateway.domain.store_scope import by_store, for_store, key_suffix
from retail_channel_gateway.errors import OutOfRange
from retail_channel_gateway.events import TRACKED_KINDS, EventWriter
from retail_channel_gateway.facade import Facade
from retail_channel_gateway.paging import decode_cursor, encode_cursor
from retail_channel_gateway.repository import ChannelRecord, LedgerRepository
from retail_common.clock import Clock
from retail_common.db import append_audit, claim_request, request_fingerprint, store_response, transaction
from retail_common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)
from retail_common.service import ServiceContext

__all__ = ["GatewayServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _require(bad: list[FieldViolation]) -> None:
    if bad:
        raise InvalidArgument(bad)


def _skus(skus: list[str], field: str, limit: int) -> list[FieldViolation]:
    bad = []
    if not 1 <= len(skus) <= limit:
        bad.append(FieldViolation(field, f"1..{limit} SKUs required"))
    bad += [
        FieldViolation(f"{field}[{i}]", "must be 1..128 characters")
        for i, s in enumerate(skus)
        if not 1 <= len(s) <= 128
    ]
    return bad


def _basics(location_id: str, currency: str) -> list[FieldViolation]:
    bad = []
    if not 1 <= len(location_id) <= 128:
        bad.append(FieldViolation("location_id", "required"))
    if not _CURRENCY.match(currency):
        bad.append(FieldViolation("currency_code", "required: an ISO 4217 code such as EUR"))
    return bad


def _served_store(channel: ChannelRecord, location_id: str) -> None:
    """A store reading or acknowledging for itself must be one of the channel's (empty: the channel)."""
    if location_id and location_id not in channel.location_ids:
        raise InvalidArgument.field("location_id", "not a location this channel serves")


def _stream_channel(channel: ChannelRecord) -> None:
    if channel.settings.mode != DeliveryMode.STREAM:
        raise FailedPrecondition(
            [
                PreconditionViolation(
                    "DELIVERY_MODE", channel.channel_id, "the channel is not a change-stream channel"
                )
            ]
        )


class GatewayServicer(pb_grpc.ChannelGatewayServiceServicer):
    def __init__(
        self,
        ctx: ServiceContext[Any],
        facade: Facade,
        events: EventWriter,
        registry: Registry,
        *,
        stream_poll: float = 0.1,
    ) -> None:
        self._ctx = ctx
        self._registry = registry
        self._clock: Clock = ctx.clock
        self._facade = facade
        self._events = events
        self._ledger = LedgerRepository()
        self._poll = stream_poll

    async def _audit_reservation(
        self, method: str, request_id: str, reservation: reservation_pb2.Reservation
    ) -> None:
        """The channel's own audit trail of what it did through the façade (inventory, which owns the
        reservation, records the gateway's service identity as the actor; this records the channel)."""
        state = reservation_pb2.ReservationState.Name(reservation.state).removeprefix("RESERVATION_STATE_")
        async with transaction(self._ctx.pool) as conn:
            await append_audit(
                conn,
                action=f"/retail.channel.v1.ChannelGatewayService/{method}",
                entity_type="retail.inventory.v1.Reservation",
                entity_key=reservation.reservation_id,
                before=None,
                after={"state": state, "version": reservation.version, "lines": len(reservation.lines)},
                request_id=request_id,
            )

    async def _channel(self, requested: str) -> ChannelRecord:
        return await resolve_channel(self._registry, requested)

    async def GetOffers(self, request: pb.GetOffersRequest, context: Context) -> pb.GetOffersResponse:
        skus = list(request.skus)
        _require(_basics(request.location_id, request.currency_code) + _skus(skus, "skus", 200))
        channel = await self._channel(request.channel_id)
        require_location(channel, request.location_id)
        await require_assortment(self._registry, channel, skus, "skus")
        response = pb.GetOffersResponse()  # offers are built in place: no copy into the response
        await self._facade.offers(
            channel.channel_id, request.location_id, request.currency_code, skus, response.offers
        )
        return response

    async def QuoteCart(self, request: pb.QuoteCartRequest, context: Context) -> pb.QuoteCartResponse:
        bad = _basics(request.location_id, request.currency_code)
        if not 1 <= len(request.lines) <= 100:
            bad.append(FieldViolation("lines", "1..100 lines required"))
        if len(request.promotion_codes) > 20:
            bad.append(FieldViolation("promotion_codes", "at most 20"))
        for i, line in enumerate(request.lines):
            if not 1 <= len(line.sku) <= 128:
                bad.append(FieldViolation(f"lines[{i}].sku", "required"))
            if not 1 <= line.quantity <= 10_000:
                bad.append(FieldViolation(f"lines[{i}].quantity", "must be 1..10000"))
        _require(bad)
        channel = await self._channel(request.channel_id)
        require_location(channel, request.location_id)
        await require_assortment(self._registry, channel, [line.sku for line in request.lines], "lines")
        quote = await self._facade.quote(
            channel.channel_id,
            request.location_id,
            request.currency_code,
            list(request.lines),
            list(request.promotion_codes),
            request.customer_segment,
        )
        return pb.QuoteCartResponse(quote=quote)

    # ---------------------------------------------------------------------------------- reservations

    async def ReserveStock(
        self, request: pb.ReserveStockRequest, context: Context
    ) -> pb.ReserveStockResponse:
        bad = []
        if not 1 <= len(request.reservation_id) <= 128:
            bad.append(FieldViolation("reservation_id", "required, 1..128 characters"))
        if not 1 <= len(request.lines) <= 100:
            bad.append(FieldViolation("lines", "1..100 lines required"))
        for i, line in enumerate(request.lines):
            if not 1 <= len(line.sku) <= 128:
                bad.append(FieldViolation(f"lines[{i}].sku", "required"))
            if not 1 <= len(line.location_id) <= 128:
                bad.append(FieldViolation(f"lines[{i}].location_id", "required"))
            if not 1 <= line.quantity <= 100_000:
                bad.append(FieldViolation(f"lines[{i}].quantity", "must be 1..100000"))
        _require(bad)
        channel = await self._channel(request.channel_id)
        for line in request.lines:
            require_location(channel, line.location_id)
        await require_assortment(self._registry, channel, [line.sku for line in request.lines], "lines")
        downstream = inventory_service_pb2.ReserveStockRequest(
            reservation_id=request.reservation_id,
            channel_id=channel.channel_id,
            lines=[
                inventory_service_pb2.ReserveLine(
                    sku=line.sku, location_id=line.location_id, quantity=line.quantity
                )
                for line in request.lines
            ],
        )
        if request.HasField("ttl"):
            downstream.ttl.CopyFrom(request.ttl)
        reservation = await self._facade.reserve(downstream)
        await self._audit_reservation("ReserveStock", request.reservation_id, reservation)
        return pb.ReserveStockResponse(reservation=reservation)

    def _reservation_ref(self, request_id: str, reservation_id: str) -> None:
        bad = []
        if not 1 <= len(request_id) <= 128:
            bad.append(FieldViolation("request_id", "required, 1..128 characters"))
        if not 1 <= len(reservation_id) <= 128:
            bad.append(FieldViolation("reservation_id", "required, 1..128 characters"))
        _require(bad)

    async def ConfirmReservation(
        self, request: pb.ConfirmReservationRequest, context: Context
    ) -> pb.ConfirmReservationResponse:
        self._reservation_ref(request.request_id, request.reservation_id)
        channel = await self._channel(request.channel_id)
        reservation = await self._facade.confirm(
            channel.channel_id, request.request_id, request.reservation_id
        )
        await self._audit_reservation("ConfirmReservation", request.request_id, reservation)
        return pb.ConfirmReservationResponse(reservation=reservation)

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: Context
    ) -> pb.ReleaseReservationResponse:
        self._reservation_ref(request.request_id, request.reservation_id)
        channel = await self._channel(request.channel_id)
        reservation = await self._facade.release(
            channel.channel_id, request.request_id, request.reservation_id
        )
        await self._audit_reservation("ReleaseReservation", request.request_id, reservation)
        return pb.ReleaseReservationResponse(reservation=reservation)

    # --------------------------------------------------------------------------------------- stream

    async def StreamChanges(
        self, request: pb.StreamChangesRequest, context: Context
    ) -> AsyncIterator[pb.StreamChangesResponse]:
        if not 0 <= request.batch_size <= 1000:
            raise InvalidArgument.field("batch_size", "must be 0..1000")
        channel = await self._channel(request.channel_id)
        _stream_channel(channel)
        _served_store(channel, request.location_id)
        after = decode_cursor(request.cursor, channel.channel_id)
        batch = request.batch_size or 100
        async with self._ctx.pool.acquire() as conn:
            state = await self._ledger.cursor_state(conn, channel.channel_id)
        assert state is not None
        if not request.cursor:
            after = state.pruned_through  # from the oldest retained change
        if after > state.last_seq:
            raise InvalidArgument.field("cursor", "is ahead of the channel's change log")
        if after < state.pruned_through:
            raise OutOfRange("the cursor is older than the channel's retention; call RequestResync")
        while True:
            async with self._ctx.pool.acquire() as conn:
                rows = await self._ledger.changes_after(conn, channel.channel_id, after, batch)
            if not rows:
                await asyncio.sleep(self._poll)
                continue
            if rows[0].seq > after + 1:  # seqs have gaps (stale projections); make sure none was pruned
                async with self._ctx.pool.acquire() as conn:
                    state = await self._ledger.cursor_state(conn, channel.channel_id)
                if state is not None and state.pruned_through > after:
                    raise OutOfRange("the stream fell behind the channel's retention; call RequestResync")
            out = pb.StreamChangesResponse()
            for row in rows:
                change = changes_pb2.ChannelChange.FromString(row.payload)
                if not for_store(change, request.location_id):
                    continue  # another store's copy
                change.cursor = encode_cursor(channel.channel_id, row.seq)
                change.resync = row.resync
                out.changes.append(change)
            after = rows[-1].seq
            if not out.changes:
                continue  # only other stores' changes: read on (the store resumes from its own cursor)
            out.cursor = encode_cursor(channel.channel_id, after)
            yield out

    async def AckChanges(self, request: pb.AckChangesRequest, context: Context) -> pb.AckChangesResponse:
        if not request.cursor:
            raise InvalidArgument.field("cursor", "required")
        channel = await self._channel(request.channel_id)
        _stream_channel(channel)
        _served_store(channel, request.location_id)
        through = decode_cursor(request.cursor, channel.channel_id)
        async with transaction(self._ctx.pool) as conn:
            state = await self._ledger.cursor_state(conn, channel.channel_id)
            assert state is not None
            if through > state.last_seq:
                raise InvalidArgument.field("cursor", "is ahead of the channel's change log")
            if request.location_id:
                advanced = await self._ledger.acknowledge_store(
                    conn, channel.channel_id, key_suffix(request.location_id), through
                )
            else:
                advanced = await self._ledger.acknowledge(conn, channel.channel_id, through)
            now = self._clock.now()
            tracked = [item for item in advanced if item[1] in TRACKED_KINDS]
            for entity_key, kind, version, stores in by_store(tracked):
                await self._events.delivery_state(
                    conn,
                    channel_id=channel.channel_id,
                    entity_key=entity_key,
                    kind=kind,
                    version=version,
                    state=events_pb2.DELIVERY_STATE_ACKNOWLEDGED,
                    detail="",
                    at=now,
                    location_ids=stores,
                )
        return pb.AckChangesResponse(acknowledged_entities=len(advanced))

    async def RequestResync(
        self, request: pb.RequestResyncRequest, context: Context
    ) -> pb.RequestResyncResponse:
        if not 1 <= len(request.request_id) <= 128:
            raise InvalidArgument.field("request_id", "required, 1..128 characters")
        channel = await self._channel(request.channel_id)
        principal = caller()
        scope = f"{principal.id}:ChannelGatewayService.RequestResync"
        fingerprint = request_fingerprint(request)
        async with transaction(self._ctx.pool) as conn:
            stored = await claim_request(
                conn, scope=scope, request_id=request.request_id, fingerprint=fingerprint
            )
            if stored is not None:
                return pb.RequestResyncResponse.FromString(stored)
            if channel.settings.mode == DeliveryMode.STREAM:
                entities, base = await self._ledger.resync_change_log(conn, channel.channel_id)
                response = pb.RequestResyncResponse(
                    entities=entities, cursor=encode_cursor(channel.channel_id, base)
                )
            else:
                entities = await self._ledger.mark_resend(conn, channel.channel_id, None, self._clock.now())
                response = pb.RequestResyncResponse(entities=entities)
            await append_audit(
                conn,
                action="/retail.channel.v1.ChannelGatewayService/RequestResync",
                entity_type="retail.channel.v1.Channel",
                entity_key=channel.channel_id,
                before=None,
                after={"entities": response.entities},
                request_id=request.request_id,
            )
            await store_response(conn, scope=scope, request_id=request.request_id, response=response)
        return response
