"""gRPC adapter of retail.inventory.v1.InventoryService: validate, call the repository in one
transaction (with an audit record for each mutation), convert to protos. No business rules here."""

# Method names are the RPC names grpc dispatches to.
# ruff: noqa: N802

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from opentelemetry import trace

from retail.inventory.v1 import (
    availability_pb2,
    inventory_service_pb2_grpc,
    location_pb2,
    reservation_pb2,
    stock_pb2,
)
from retail.inventory.v1 import (
    inventory_service_pb2 as pb,
)
from retail_common.context import Principal, PrincipalKind, current_call
from retail_common.db import (
    Connection,
    append_audit,
    claim_request,
    request_fingerprint,
    store_response,
    transaction,
)
from retail_common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from retail_common.grpcx import audit_page
from retail_common.service import ServiceContext
from retail_inventory import events
from retail_inventory.domain import limits
from retail_inventory.domain.allocation import AllocationStrategy, RequestLine
from retail_inventory.metrics import ReservationEvent, reservation_metrics
from retail_inventory.repository import (
    InventoryRepository,
    LocationIn,
    MovementIn,
    PolicyIn,
    ReserveAudit,
    RuleIn,
    SnapshotIn,
)
from retail_inventory.repository.inventory import OUT_OF_STOCK, fingerprint

__all__ = ["OPERATOR_ROLE", "InventoryServicer"]

OPERATOR_ROLE = "inventory.operator"
Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
M = TypeVar("M", bound=Message)
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_STRATEGIES = {
    reservation_pb2.ALLOCATION_STRATEGY_LOCATION_PRIORITY: AllocationStrategy.LOCATION_PRIORITY,
    reservation_pb2.ALLOCATION_STRATEGY_MOST_STOCK: AllocationStrategy.MOST_STOCK,
}


class _Violations:
    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def id(self, field: str, value: str, *, required: bool = True) -> None:
        if not value:
            if required:
                self.add(field, "required")
            return
        if len(value) > limits.MAX_ID_LENGTH:
            self.add(field, f"at most {limits.MAX_ID_LENGTH} characters")
        elif any(c.isspace() or not c.isprintable() for c in value):
            self.add(field, "must not contain whitespace or control characters")

    def count(self, field: str, n: int, high: int, low: int = 1) -> None:
        if not low <= n <= high:
            self.add(field, f"needs {low}..{high} entries, got {n}")

    def between(self, field: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            self.add(field, f"must be {low}..{high}")

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


def _plain_id(value: str) -> bool:
    """What _Violations.id accepts, in C (no per-character Python): the space is the only whitespace
    character str.isprintable() lets through. Failures go through _Violations.id for the message."""
    return bool(value) and len(value) <= limits.MAX_ID_LENGTH and " " not in value and value.isprintable()


async def _settle(task: asyncio.Task[None] | None) -> None:
    """Let a transaction the stream started finish (commit or roll back) before the call ends; its
    error is dropped here: the one already propagating is the call's."""
    if task is not None:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()


def _snapshot_entries(
    entries: Sequence[stock_pb2.StockSnapshotEntry],
    check: _Violations,
    stamps: dict[tuple[int, int], datetime],
) -> list[SnapshotIn]:
    """Validated entries of one ImportStockSnapshots message. A bulk load sends 10^5 of them: the usual
    entry passes with C-level checks only (the per-field messages are built for failures alone), and
    the as-of instants, usually one per load, are converted once (`stamps`, shared by the stream)."""
    out: list[SnapshotIn] = []
    seen: set[tuple[str, str]] = set()
    high = limits.MAX_STOCK_QUANTITY
    for i, e in enumerate(entries):
        sku, loc, on_hand = e.sku, e.location_id, e.on_hand
        if not (_plain_id(sku) and _plain_id(loc) and 0 <= on_hand <= high and e.HasField("as_of_time")):
            f = f"entries[{i}]"
            check.id(f"{f}.sku", sku)
            check.id(f"{f}.location_id", loc)
            check.between(f"{f}.on_hand", on_hand, 0, high)
            if not e.HasField("as_of_time"):
                check.add(f"{f}.as_of_time", "required")
        key = (sku, loc)
        if key in seen:
            check.add(f"entries[{i}]", "SKU/location given twice in one message")
        seen.add(key)
        stamp = e.as_of_time
        instant = (stamp.seconds, stamp.nanos)
        as_of = stamps.get(instant)
        if as_of is None:
            as_of = stamps[instant] = stamp.ToDatetime(tzinfo=UTC)
        out.append(SnapshotIn(sku, loc, on_hand, as_of))
    return out


def _add_breakdown(
    result: availability_pb2.Availability,
    channel: str,
    which: str | None,
    scope: availability_pb2.AvailabilityScope,
    rows: Sequence[Any],
    totals_only: bool,
) -> None:
    """A region or channel-wide query's total and per-location breakdown (by location id)."""
    if which == "region_id":
        selected = [r for r in rows if r["region_id"] == scope.region_id]
    else:
        selected = [r for r in rows if channel in r["channel_ids"]]
    selected.sort(key=lambda r: str(r["location_id"]))
    for row in selected:
        sellable = bool(row["sellable"])
        value = row["ats"] if sellable else 0
        result.available_to_sell += value
        if not totals_only:
            result.locations.append(
                availability_pb2.LocationAvailability(
                    location_id=row["location_id"],
                    available_to_sell=value,
                    on_hand=row["on_hand"],
                    reserved_total=row["reserved_total"],
                    safety_stock=row["safety_stock"],
                    fenced_for_other_channels=row["others"],
                    channel_fence=row["own_fence"],
                    channel_reserved=row["own_reserved"],
                    sellable=sellable,
                )
            )


def _principal() -> Principal:
    call = current_call()
    if call is None or call.principal is None:
        raise Unauthenticated()
    return call.principal


def _acting_channel(channel_id: str, field: str = "channel_id") -> str:
    """The channel a request acts for; a channel principal may only act for itself."""
    check = _Violations()
    check.id(field, channel_id)
    check.raise_if_any()
    principal = _principal()
    if principal.kind is PrincipalKind.CHANNEL and principal.id != channel_id:
        raise PermissionDenied(f"channel {principal.id} may not act for channel {channel_id}")
    return channel_id


def _ttl(field: str, value: Any, present: bool, check: _Violations) -> timedelta:
    if not present:
        return limits.DEFAULT_TTL
    ttl = timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
    if not limits.MIN_TTL <= ttl <= limits.MAX_TTL:
        check.add(field, f"must be between {limits.MIN_TTL} and {limits.MAX_TTL}")
    return ttl


def _page(token: str, field: str = "page_token") -> dict[str, Any]:
    if not token:
        return {}
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(value, dict):
            raise ValueError
        return value
    except ValueError:
        raise InvalidArgument.field(field, "malformed page token") from None


def _token(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _page_size(value: int, check: _Violations) -> int:
    if value < 0 or value > limits.MAX_PAGE_SIZE:
        check.add("page_size", f"must be 0..{limits.MAX_PAGE_SIZE}")
    return value or limits.DEFAULT_PAGE_SIZE


def _fences(
    field: str, fences: Sequence[stock_pb2.ChannelFence], check: _Violations
) -> dict[str, dict[str, int]]:
    """Validated fences (one per channel, fixed or share) as stored: {channel: {"fixed"|"share_bp": n}}."""
    check.count(field, len(fences), limits.MAX_FENCES_PER_POSITION, 0)
    out: dict[str, dict[str, int]] = {}
    for j, fence in enumerate(fences):
        ff = f"{field}[{j}]"
        check.id(f"{ff}.channel_id", fence.channel_id)
        if fence.channel_id in out:
            check.add(f"{ff}.channel_id", "one fence per channel")
        which = fence.WhichOneof("amount")
        if which == "fixed_quantity":
            check.between(f"{ff}.fixed_quantity", fence.fixed_quantity, 0, limits.MAX_STOCK_QUANTITY)
            out[fence.channel_id] = {"fixed": fence.fixed_quantity}
        elif which == "share_basis_points":
            check.between(f"{ff}.share_basis_points", fence.share_basis_points, 1, limits.BASIS_POINTS)
            out[fence.channel_id] = {"share_bp": fence.share_basis_points}
        else:
            check.add(f"{ff}.amount", "set fixed_quantity or share_basis_points")
    return out


def _current_trace_id() -> str | None:
    """The current span's trace id, as retail_common.db.append_audit records it."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _audit_stamp() -> ReserveAudit:
    """The audit columns append_audit would write for the current call, for statements that write
    their audit records in SQL."""
    call = current_call()
    principal = call.principal if call else None
    return ReserveAudit(
        action=call.method if call else "?",
        actor_id=principal.id if principal else None,
        actor_kind=str(principal.kind) if principal else None,
        request_id=call.request_id if call else None,
        trace_id=(call.trace_id if call else None) or _current_trace_id(),
    )


def _as_dict(message: Message | None) -> Any:
    return None if message is None else MessageToDict(message, preserving_proto_field_name=True)


def _rule_input(request: pb.CreateThresholdRuleRequest, check: _Violations, prefix: str = "") -> RuleIn:
    """A CreateThresholdRuleRequest validated into the repository's input; violations go to `check`
    with field names under `prefix` (e.g. "requests[3].")."""
    check.id(f"{prefix}request_id", request.request_id)
    rule = request.rule
    check.id(f"{prefix}rule.sku", rule.sku)
    check.id(f"{prefix}rule.location_id", rule.location_id)
    check.id(f"{prefix}rule.channel_id", rule.channel_id)
    owner = rule.owner.WhichOneof("owner")
    if owner is None:
        check.add(f"{prefix}rule.owner", "set operator_id or campaign_id")
    else:
        check.id(f"{prefix}rule.owner.{owner}", getattr(rule.owner, owner))
    principal = _principal()
    if principal.kind is PrincipalKind.SERVICE and owner != "campaign_id":
        raise PermissionDenied("services may only register campaign-owned rules")
    kind = rule.WhichOneof("threshold")
    data: dict[str, int | None] = {}
    if kind == "absolute":
        below = rule.absolute.below_quantity
        restore = rule.absolute.restore_quantity or below
        check.between(f"{prefix}rule.absolute.below_quantity", below, 1, limits.MAX_STOCK_QUANTITY)
        if restore < below:
            check.add(f"{prefix}rule.absolute.restore_quantity", "must be >= below_quantity")
        data = {"below_quantity": below, "restore_quantity": restore}
    elif kind == "days_of_cover":
        d = rule.days_of_cover
        restore_days = d.restore_days or d.below_days
        check.between(f"{prefix}rule.days_of_cover.units_sold", d.units_sold, 1, limits.MAX_STOCK_QUANTITY)
        check.between(f"{prefix}rule.days_of_cover.period_days", d.period_days, 1, 366)
        check.between(f"{prefix}rule.days_of_cover.below_days", d.below_days, 1, 366)
        if restore_days < d.below_days or restore_days > 366:
            check.add(f"{prefix}rule.days_of_cover.restore_days", "must be below_days..366")
        data = {
            "units_sold": d.units_sold,
            "period_days": d.period_days,
            "below_days": d.below_days,
            "restore_days": restore_days,
        }
    else:
        check.add(f"{prefix}rule.threshold", "set absolute or days_of_cover")
    return RuleIn(
        request_id=request.request_id,
        sku=rule.sku,
        location_id=rule.location_id,
        channel_id=rule.channel_id,
        owner_kind="operator" if owner == "operator_id" else "campaign",
        owner_id=getattr(rule.owner, owner or "operator_id"),
        kind="ABSOLUTE" if kind == "absolute" else "DAYS_OF_COVER",
        **data,
    )


class InventoryServicer(inventory_service_pb2_grpc.InventoryServiceServicer):
    def __init__(self, ctx: ServiceContext[Any], repo: InventoryRepository) -> None:
        self._ctx = ctx
        self._repo = repo
        self._metrics = reservation_metrics(ctx.meter)

    # ------------------------------------------------------------------------------------- plumbing

    async def _tx(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `work` in one transaction; retry a few times on deadlock / serialization failure."""
        for attempt in range(5):
            try:
                async with transaction(self._ctx.pool) as conn:
                    return await work(conn)
            except _RETRYABLE:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def _idempotent(
        self,
        request: Message,
        request_id: str,
        response_type: type[M],
        work: Callable[[Connection], Awaitable[M]],
    ) -> M:
        """Run a mutation once per request_id: a retry gets the first response back.

        Keys are scoped by RPC method only (not by caller), as they always were here. The fingerprint
        covers the whole request, request_id included (`ignore=()`): for one key that compares exactly
        like the default, and it is the digest the rows copied from this service's old `idempotency`
        table (migration 0006) were stored with, so their retries still match.
        """
        call = current_call()
        scope = call.method if call else "?"
        print_ = request_fingerprint(request, ignore=())

        async def run(conn: Connection) -> M:
            stored = await claim_request(conn, scope=scope, request_id=request_id, fingerprint=print_)
            if stored is not None:
                return response_type.FromString(stored)
            response = await work(conn)
            await store_response(conn, scope=scope, request_id=request_id, response=response)
            return response

        return await self._tx(run)

    async def _audit(
        self,
        conn: Connection,
        entity_type: str,
        entity_key: str,
        before: Message | None,
        after: Message | None,
    ) -> None:
        call = current_call()
        await append_audit(
            conn,
            action=call.method if call else "?",
            entity_type=entity_type,
            entity_key=entity_key,
            before=_as_dict(before),
            after=_as_dict(after),
        )

    def _channel_may_see(self, reservation: reservation_pb2.Reservation | None, reservation_id: str) -> None:
        principal = _principal()
        if reservation is None or (
            principal.kind is PrincipalKind.CHANNEL and reservation.channel_id != principal.id
        ):
            raise NotFound("retail.inventory.v1.Reservation", reservation_id)

    # ------------------------------------------------------------------------------------ locations

    async def UpsertLocation(
        self, request: pb.UpsertLocationRequest, context: Context
    ) -> pb.UpsertLocationResponse:
        check = _Violations()
        check.id("request_id", request.request_id)
        loc = request.location
        check.id("location.location_id", loc.location_id)
        if loc.kind == location_pb2.LOCATION_KIND_UNSPECIFIED:
            check.add("location.kind", "required")
        elif loc.kind not in location_pb2.LocationKind.values():
            check.add("location.kind", "unknown kind")
        if len(loc.display_name) > 200:
            check.add("location.display_name", "at most 200 characters")
        check.id("location.region_id", loc.region_id)
        if not loc.time_zone:
            check.add("location.time_zone", "required")
        else:
            try:
                ZoneInfo(loc.time_zone)
            except (KeyError, ValueError):
                check.add("location.time_zone", f"unknown IANA time zone {loc.time_zone!r}")
        check.count("location.channel_ids", len(loc.channel_ids), limits.MAX_LOCATION_CHANNELS, 0)
        if len(set(loc.channel_ids)) != len(loc.channel_ids):
            check.add("location.channel_ids", "duplicate channel id")
        for i, channel in enumerate(loc.channel_ids):
            check.id(f"location.channel_ids[{i}]", channel)
        check.between("location.allocation_priority", loc.allocation_priority, 0, 1_000_000)
        default_fences = _fences("location.default_fences", loc.default_fences, check)
        check.raise_if_any()
        data = LocationIn(
            location_id=loc.location_id,
            kind=location_pb2.LocationKind.Name(loc.kind),
            display_name=loc.display_name,
            region_id=loc.region_id,
            time_zone=loc.time_zone,
            channel_ids=tuple(loc.channel_ids),
            allocation_priority=loc.allocation_priority,
            active=loc.active,
            default_fences=default_fences,
        )

        async def work(conn: Connection) -> pb.UpsertLocationResponse:
            before = await self._repo.get_location(conn, loc.location_id)
            after = await self._repo.upsert_location(conn, data, etag=loc.etag)
            before_proto = events.location_proto(before) if before else None
            after_proto = events.location_proto(after)
            if before is None or before["version"] != after["version"]:
                await self._audit(
                    conn, "retail.inventory.v1.Location", loc.location_id, before_proto, after_proto
                )
            return pb.UpsertLocationResponse(location=after_proto)

        return await self._idempotent(request, request.request_id, pb.UpsertLocationResponse, work)

    async def GetLocation(self, request: pb.GetLocationRequest, context: Context) -> pb.GetLocationResponse:
        check = _Violations()
        check.id("location_id", request.location_id)
        check.raise_if_any()
        async with self._ctx.pool.acquire() as conn:
            row = await self._repo.get_location(conn, request.location_id)
        if row is None:
            raise NotFound("retail.inventory.v1.Location", request.location_id)
        return pb.GetLocationResponse(location=events.location_proto(row))

    async def ListLocations(
        self, request: pb.ListLocationsRequest, context: Context
    ) -> pb.ListLocationsResponse:
        check = _Violations()
        size = _page_size(request.page_size, check)
        check.raise_if_any()
        page = _page(request.page_token)
        async with self._ctx.pool.acquire() as conn:
            rows = await self._repo.list_locations(
                conn, region_id=request.region_id or None, after=str(page.get("after", "")), limit=size + 1
            )
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListLocationsResponse(
            locations=[events.location_proto(r) for r in rows],
            next_page_token=_token({"after": rows[-1]["location_id"]}) if more else "",
        )

    # ---------------------------------------------------------------------------------------- stock

    async def _check_locations(
        self, conn: Connection, fields: Sequence[tuple[str, str]], check: _Violations
    ) -> None:
        unknown = await self._repo.unknown_locations(conn, [loc for _, loc in fields])
        for field, loc in fields:
            if loc in unknown:
                check.add(field, f"unknown location {loc!r}")

    async def RecordMovements(
        self, request: pb.RecordMovementsRequest, context: Context
    ) -> pb.RecordMovementsResponse:
        check = _Violations()
        check.id("request_id", request.request_id)
        check.count("movements", len(request.movements), limits.MAX_MOVEMENTS_PER_REQUEST)
        movements = []
        for i, m in enumerate(request.movements):
            f = f"movements[{i}]"
            check.id(f"{f}.movement_id", m.movement_id)
            check.id(f"{f}.sku", m.sku)
            check.id(f"{f}.location_id", m.location_id)
            if m.delta == 0 or abs(m.delta) > limits.MAX_STOCK_QUANTITY:
                check.add(f"{f}.delta", f"must be non-zero and at most {limits.MAX_STOCK_QUANTITY} in size")
            if m.kind == stock_pb2.MOVEMENT_KIND_UNSPECIFIED or m.kind not in stock_pb2.MovementKind.values():
                check.add(f"{f}.kind", "required")
            if not m.HasField("occur_time"):
                check.add(f"{f}.occur_time", "required")
            movements.append(
                MovementIn(
                    m.movement_id,
                    m.sku,
                    m.location_id,
                    m.delta,
                    stock_pb2.MovementKind.Name(m.kind) if m.kind in stock_pb2.MovementKind.values() else "",
                    m.occur_time.ToDatetime(tzinfo=UTC),
                )
            )
        check.raise_if_any()

        async def work(conn: Connection) -> pb.RecordMovementsResponse:
            found = _Violations()
            await self._check_locations(
                conn, [(f"movements[{i}].location_id", m.location_id) for i, m in enumerate(movements)], found
            )
            found.raise_if_any()
            outcomes = await self._repo.record_movements(conn, movements)
            response = pb.RecordMovementsResponse(
                outcomes=[pb.MovementOutcome.Value(f"MOVEMENT_OUTCOME_{o}") for o in outcomes]
            )
            await self._audit(conn, "retail.inventory.v1.Movement", request.request_id, None, request)
            return response

        return await self._idempotent(request, request.request_id, pb.RecordMovementsResponse, work)

    async def ImportStockSnapshots(
        self, request_iterator: AsyncIterator[pb.ImportStockSnapshotsRequest], context: Context
    ) -> pb.ImportStockSnapshotsResponse:
        total = pb.ImportStockSnapshotsResponse()
        stamps: dict[tuple[int, int], datetime] = {}
        request_id = None
        known_locations: set[str] = set()
        # Each message is its own transaction, in stream order; the next message is received and
        # validated while the previous one's transaction runs (Python beside Postgres).
        pending: asyncio.Task[None] | None = None
        try:
            async for request in request_iterator:
                check = _Violations()
                check.id("request_id", request.request_id)
                if request_id is not None and request.request_id != request_id:
                    check.add("request_id", "must be the same on every message of the stream")
                request_id = request.request_id
                check.count("entries", len(request.entries), limits.MAX_SNAPSHOT_ENTRIES_PER_MESSAGE)
                entries = _snapshot_entries(request.entries, check, stamps)
                check.raise_if_any()

                async def work(
                    conn: Connection,
                    entries: list[SnapshotIn] = entries,
                    request_id: str = request.request_id,
                ) -> None:
                    missing = {e.location_id for e in entries} - known_locations
                    if missing:
                        unknown = await self._repo.unknown_locations(conn, missing)
                        if unknown:
                            i = next(i for i, e in enumerate(entries) if e.location_id in unknown)
                            raise InvalidArgument.field(
                                f"entries[{i}].location_id", f"unknown location {entries[i].location_id!r}"
                            )
                        known_locations.update(missing)
                    result = await self._repo.import_snapshot_batch(conn, entries)
                    total.received_count += result.received
                    total.applied_count += result.applied
                    total.ignored_count += result.ignored
                    total.changed_count += result.changed
                    await self._audit(
                        conn,
                        "retail.inventory.v1.StockSnapshot",
                        request_id,
                        None,
                        pb.ImportStockSnapshotsResponse(
                            received_count=result.received,
                            applied_count=result.applied,
                            ignored_count=result.ignored,
                            changed_count=result.changed,
                        ),
                    )

                if pending is not None:
                    await pending  # its error, if any, ends the stream here
                pending = asyncio.create_task(self._tx(work))
            if pending is not None:
                await pending
                pending = None
        finally:
            await _settle(pending)
        return total

    async def SetStockPolicies(
        self, request: pb.SetStockPoliciesRequest, context: Context
    ) -> pb.SetStockPoliciesResponse:
        check = _Violations()
        check.id("request_id", request.request_id)
        check.count("policies", len(request.policies), limits.MAX_POLICIES_PER_REQUEST)
        policies = []
        seen: set[tuple[str, str]] = set()
        for i, p in enumerate(request.policies):
            f = f"policies[{i}]"
            check.id(f"{f}.sku", p.sku)
            check.id(f"{f}.location_id", p.location_id)
            if (p.sku, p.location_id) in seen:
                check.add(f, "SKU/location given twice")
            seen.add((p.sku, p.location_id))
            check.between(f"{f}.safety_stock", p.safety_stock, 0, limits.MAX_STOCK_QUANTITY)
            fences = _fences(f"{f}.fences", p.fences, check)
            policies.append(PolicyIn(p.sku, p.location_id, p.safety_stock, fences, etag=p.etag))
        check.raise_if_any()

        async def work(conn: Connection) -> pb.SetStockPoliciesResponse:
            found = _Violations()
            await self._check_locations(
                conn, [(f"policies[{i}].location_id", p.location_id) for i, p in enumerate(policies)], found
            )
            unknown = await self._repo.unknown_skus(conn, [p.sku for p in policies])
            for i, p in enumerate(policies):
                if p.sku in unknown:
                    found.add(f"policies[{i}].sku", f"unknown SKU {p.sku!r}")
            found.raise_if_any()
            keys = [(p.sku, p.location_id) for p in policies]
            before = {(r["sku"], r["location_id"]): r for r in await self._repo.positions(conn, keys)}
            rows = await self._repo.set_policies(conn, policies)
            positions = [events.stock_position_proto(r) for r in rows]
            for row, proto in zip(rows, positions, strict=True):
                old = before.get((row["sku"], row["location_id"]))
                await self._audit(
                    conn,
                    "retail.inventory.v1.StockPolicy",
                    f"{row['sku']}/{row['location_id']}",
                    events.stock_position_proto(old) if old else None,
                    proto,
                )
            return pb.SetStockPoliciesResponse(positions=positions)

        return await self._idempotent(request, request.request_id, pb.SetStockPoliciesResponse, work)

    async def BatchGetStockPositions(
        self, request: pb.BatchGetStockPositionsRequest, context: Context
    ) -> pb.BatchGetStockPositionsResponse:
        check = _Violations()
        check.count("keys", len(request.keys), limits.MAX_AVAILABILITY_QUERIES)
        for i, k in enumerate(request.keys):
            check.id(f"keys[{i}].sku", k.sku)
            check.id(f"keys[{i}].location_id", k.location_id)
        check.raise_if_any()
        async with self._ctx.pool.acquire() as conn:
            rows = await self._repo.positions(conn, [(k.sku, k.location_id) for k in request.keys])
        return pb.BatchGetStockPositionsResponse(positions=[events.stock_position_proto(r) for r in rows])

    # --------------------------------------------------------------------------------- availability

    async def _availability(
        self,
        conn: Connection,
        channel: str,
        queries: Sequence[pb.AvailabilityQuery],
        out: RepeatedCompositeFieldContainer[availability_pb2.Availability],
        *,
        totals_only: bool,
        strict: bool,
        prefix: Callable[[int], str],
    ) -> None:
        """Appends to `out` one Availability per query, in query order. Location-scoped queries (the
        bulk of a batch) are answered by one set-based statement and a tight loop over its positional
        rows; region and channel-wide ones by availability_rows."""
        check = _Violations()
        loc_skus: list[str] = []
        loc_ids: list[str] = []
        regions: list[str] = []
        kinds: list[str | None] = []
        for i, query in enumerate(queries):
            sku = query.sku
            scope = query.scope
            which = scope.WhichOneof("scope")
            kinds.append(which)
            if not _plain_id(sku):
                check.id(f"{prefix(i)}sku", sku)
            if which == "location_id":
                location_id = scope.location_id
                if not _plain_id(location_id):
                    check.id(f"{prefix(i)}scope.location_id", location_id)
                loc_skus.append(sku)
                loc_ids.append(location_id)
            elif which == "region_id":
                if not _plain_id(scope.region_id):
                    check.id(f"{prefix(i)}scope.region_id", scope.region_id)
                regions.append(scope.region_id)
            elif which != "all_channel_locations" or not scope.all_channel_locations:
                check.add(f"{prefix(i)}scope", "set location_id, region_id or all_channel_locations")
        check.raise_if_any()
        if strict:
            found = _Violations()
            sku, scope = queries[0].sku, queries[0].scope
            if await self._repo.unknown_skus(conn, [sku]):
                found.add("sku", f"unknown SKU {sku!r}")
            if loc_ids and await self._repo.unknown_locations(conn, loc_ids):
                found.add("scope.location_id", f"unknown location {scope.location_id!r}")
            if regions and not await self._repo.known_regions(conn, regions):
                found.add("scope.region_id", f"unknown region {scope.region_id!r}")
            found.raise_if_any()
        at_location: list[Any] = []
        if loc_skus:
            at_location = await self._repo.availability_at(
                conn, channel, loc_skus, loc_ids, totals_only=totals_only
            )
        by_sku: dict[str, list[Any]] = defaultdict(list)
        if len(loc_skus) < len(queries):
            rows = await self._repo.availability_rows(
                conn,
                channel,
                region_pairs=[
                    (q.sku, q.scope.region_id)
                    for q, k in zip(queries, kinds, strict=True)
                    if k == "region_id"
                ],
                channel_skus=[
                    q.sku for q, k in zip(queries, kinds, strict=True) if k == "all_channel_locations"
                ],
                computed=True,
            )
            for row in rows:
                by_sku[row["sku"]].append(row)
        add = out.add
        # at_location rows come in key order with the key's index first: walk both in step
        next_row = at_location[0] if at_location else None
        position = 0
        k = -1
        for query, kind in zip(queries, kinds, strict=True):
            sku = query.sku
            if kind != "location_id":
                result = add(sku=sku, channel_id=channel)
                _add_breakdown(result, channel, kind, query.scope, by_sku[sku], totals_only)
                continue
            k += 1
            if next_row is None or next_row[0] != k:
                add(sku=sku, channel_id=channel)  # no such position: nothing to sell there
                continue
            row = next_row
            position += 1
            next_row = at_location[position] if position < len(at_location) else None
            if totals_only:
                add(sku=sku, channel_id=channel, available_to_sell=row[1])
                continue
            # filled in place: building a LocationAvailability and copying it in costs half as much again
            add(sku=sku, channel_id=channel, available_to_sell=row[1]).locations.add(
                location_id=loc_ids[k],
                available_to_sell=row[1],
                on_hand=row[2],
                reserved_total=row[3],
                safety_stock=row[4],
                fenced_for_other_channels=row[5],
                channel_fence=row[6],
                channel_reserved=row[7],
                sellable=row[8],
            )

    async def GetAvailability(
        self, request: pb.GetAvailabilityRequest, context: Context
    ) -> pb.GetAvailabilityResponse:
        channel = _acting_channel(request.channel_id)
        answer = pb.BatchGetAvailabilityResponse()
        async with self._ctx.pool.acquire() as conn:
            await self._availability(
                conn,
                channel,
                [pb.AvailabilityQuery(sku=request.sku, scope=request.scope)],
                answer.availabilities,
                totals_only=False,
                strict=True,
                prefix=lambda i: "",
            )
        return pb.GetAvailabilityResponse(availability=answer.availabilities[0])

    async def BatchGetAvailability(
        self, request: pb.BatchGetAvailabilityRequest, context: Context
    ) -> pb.BatchGetAvailabilityResponse:
        channel = _acting_channel(request.channel_id)
        check = _Violations()
        check.count("queries", len(request.queries), limits.MAX_AVAILABILITY_QUERIES)
        check.raise_if_any()
        response = pb.BatchGetAvailabilityResponse()
        async with self._ctx.pool.acquire() as conn:
            await self._availability(
                conn,
                channel,
                request.queries,
                response.availabilities,
                totals_only=request.totals_only,
                strict=False,
                prefix=lambda i: f"queries[{i}].",
            )
        return response

    # --------------------------------------------------------------------------------- reservations

    async def ReserveStock(
        self, request: pb.ReserveStockRequest, context: Context
    ) -> pb.ReserveStockResponse:
        channel = _acting_channel(request.channel_id)
        check = _Violations()
        check.id("reservation_id", request.reservation_id)
        check.count("lines", len(request.lines), limits.MAX_RESERVE_LINES)
        ttl = _ttl("ttl", request.ttl, request.HasField("ttl"), check)
        lines = []
        for i, line in enumerate(request.lines):
            f = f"lines[{i}]"
            check.id(f"{f}.sku", line.sku)
            check.between(f"{f}.quantity", line.quantity, 1, limits.MAX_LINE_QUANTITY)
            target = line.WhichOneof("target")
            if target == "location_id":
                check.id(f"{f}.location_id", line.location_id)
                lines.append(RequestLine(line.sku, line.quantity, location_id=line.location_id))
            elif target == "region_id":
                check.id(f"{f}.region_id", line.region_id)
                strategy = _STRATEGIES.get(line.strategy)
                if strategy is None:
                    check.add(f"{f}.strategy", "required for a region line")
                lines.append(
                    RequestLine(
                        line.sku,
                        line.quantity,
                        region_id=line.region_id,
                        strategy=strategy or AllocationStrategy.LOCATION_PRIORITY,
                        allow_split=line.allow_split,
                    )
                )
            else:
                check.add(f"{f}.target", "set location_id or region_id")
        check.raise_if_any()
        print_ = fingerprint(
            channel,
            [(x.sku, x.quantity, x.location_id, x.region_id, x.strategy, x.allow_split) for x in lines],
            ttl,
        )

        async def audit(conn: Connection, proto: reservation_pb2.Reservation) -> None:
            await self._audit(conn, "retail.inventory.v1.Reservation", request.reservation_id, None, proto)

        one = await self._reserve_in_one_statement(request.reservation_id, channel, lines, ttl, print_)
        if one is not None:
            self._metrics.record(ReservationEvent.CREATED, channel)
            return pb.ReserveStockResponse(reservation=one)
        created_now = False

        async def work(conn: Connection) -> pb.ReserveStockResponse:
            nonlocal created_now
            # The audit record is written before the stock rows are locked (rolled back with the rest
            # if the hold fails), so a hot SKU's row lock is held only for the hold and the events.
            proto, created = await self._repo.reserve(
                conn,
                reservation_id=request.reservation_id,
                channel=channel,
                lines=lines,
                ttl=ttl,
                request_print=print_,
                before_hold=audit,
            )
            created_now = created
            if not created:
                self._channel_may_see(proto, request.reservation_id)
            return pb.ReserveStockResponse(reservation=proto)

        try:
            response = await self._tx(work)
        except FailedPrecondition as exc:
            if exc.reason == OUT_OF_STOCK:
                self._metrics.refused(channel)
            raise
        if created_now:
            self._metrics.record(ReservationEvent.CREATED, channel)
        return response

    async def _reserve_in_one_statement(
        self, reservation_id: str, channel: str, lines: list[RequestLine], ttl: timedelta, print_: str
    ) -> reservation_pb2.Reservation | None:
        """The one-statement Reserve (one position; autocommit: no BEGIN/COMMIT round trips), its audit
        record as _audit writes it; None when it does not apply (see the repository), changing nothing."""
        audit = _audit_stamp()
        async with self._ctx.pool.acquire() as conn:
            return await self._repo.reserve_in_one_statement(
                conn,
                reservation_id=reservation_id,
                channel=channel,
                lines=lines,
                ttl=ttl,
                request_print=print_,
                audit=audit,
            )

    async def _existing(self, conn: Connection, reservation_id: str) -> reservation_pb2.Reservation:
        found = await self._repo.get_reservation(conn, reservation_id)
        self._channel_may_see(found, reservation_id)
        assert found is not None
        return found

    async def ExtendReservation(
        self, request: pb.ExtendReservationRequest, context: Context
    ) -> pb.ExtendReservationResponse:
        check = _Violations()
        check.id("request_id", request.request_id)
        check.id("reservation_id", request.reservation_id)
        if not request.HasField("ttl"):
            check.add("ttl", "required")
        ttl = _ttl("ttl", request.ttl, request.HasField("ttl"), check)
        check.raise_if_any()

        async def work(conn: Connection) -> pb.ExtendReservationResponse:
            before = await self._existing(conn, request.reservation_id)
            after = await self._repo.extend_reservation(conn, request.reservation_id, ttl)
            await self._audit(conn, "retail.inventory.v1.Reservation", request.reservation_id, before, after)
            return pb.ExtendReservationResponse(reservation=after)

        return await self._idempotent(request, request.request_id, pb.ExtendReservationResponse, work)

    def _line_quantities(
        self, lines: Sequence[pb.LineQuantity], check: _Violations
    ) -> list[tuple[int, int]] | None:
        if not lines:
            return None
        out = []
        for i, line in enumerate(lines):
            check.between(f"lines[{i}].quantity", line.quantity, 1, limits.MAX_LINE_QUANTITY)
            if line.line_index < 0:
                check.add(f"lines[{i}].line_index", "must be >= 0")
            out.append((line.line_index, line.quantity))
        return out

    async def _settle(self, request: Any, *, confirm: bool, response_type: type[M]) -> M:
        check = _Violations()
        check.id("request_id", request.request_id)
        check.id("reservation_id", request.reservation_id)
        requested = self._line_quantities(request.lines, check)
        check.raise_if_any()

        settled: str | None = None  # the reservation's channel once this call (not a replay) settled it

        async def work(conn: Connection) -> M:
            nonlocal settled
            before = await self._existing(conn, request.reservation_id)
            after = await self._repo.settle_reservation(
                conn, request.reservation_id, requested, confirm=confirm, request_id=request.request_id
            )
            await self._audit(conn, "retail.inventory.v1.Reservation", request.reservation_id, before, after)
            settled = after.channel_id
            return response_type(reservation=after)

        response = await self._idempotent(request, request.request_id, response_type, work)
        if settled is not None:
            event = ReservationEvent.CONFIRMED if confirm else ReservationEvent.RELEASED
            self._metrics.record(event, settled)
        return response

    async def ConfirmReservation(
        self, request: pb.ConfirmReservationRequest, context: Context
    ) -> pb.ConfirmReservationResponse:
        return await self._settle(request, confirm=True, response_type=pb.ConfirmReservationResponse)

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: Context
    ) -> pb.ReleaseReservationResponse:
        return await self._settle(request, confirm=False, response_type=pb.ReleaseReservationResponse)

    async def GetReservation(
        self, request: pb.GetReservationRequest, context: Context
    ) -> pb.GetReservationResponse:
        check = _Violations()
        check.id("reservation_id", request.reservation_id)
        check.raise_if_any()
        async with self._ctx.pool.acquire() as conn:
            found = await self._existing(conn, request.reservation_id)
        return pb.GetReservationResponse(reservation=found)

    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: Context
    ) -> pb.ListReservationsResponse:
        check = _Violations()
        size = _page_size(request.page_size, check)
        if request.state not in reservation_pb2.ReservationState.values():
            check.add("state", "unknown state")
        check.raise_if_any()
        principal = _principal()
        channel = request.channel_id or None
        if principal.kind is PrincipalKind.CHANNEL:
            if channel is not None and channel != principal.id:
                raise PermissionDenied(f"channel {principal.id} may only list its own reservations")
            channel = principal.id
        state = (
            reservation_pb2.ReservationState.Name(request.state).removeprefix("RESERVATION_STATE_")
            if request.state
            else None
        )
        page = _page(request.page_token)
        try:
            after = (datetime.fromisoformat(page["t"]), str(page["id"])) if page else None
        except (KeyError, ValueError, TypeError):
            raise InvalidArgument.field("page_token", "malformed page token") from None
        async with self._ctx.pool.acquire() as conn:
            found = await self._repo.list_reservations(
                conn, channel=channel, state=state, after=after, limit=size + 1
            )
        more = len(found) > size
        found = found[:size]
        token = ""
        if more:
            last = found[-1]
            token = _token(
                {"t": last.create_time.ToDatetime(tzinfo=UTC).isoformat(), "id": last.reservation_id}
            )
        return pb.ListReservationsResponse(reservations=found, next_page_token=token)

    # ----------------------------------------------------------------------------------- thresholds

    async def CreateThresholdRule(
        self, request: pb.CreateThresholdRuleRequest, context: Context
    ) -> pb.CreateThresholdRuleResponse:
        check = _Violations()
        rule_in = _rule_input(request, check)
        check.raise_if_any()
        rule = request.rule

        async def work(conn: Connection) -> pb.CreateThresholdRuleResponse:
            found = _Violations()
            await self._check_locations(conn, [("rule.location_id", rule.location_id)], found)
            if await self._repo.unknown_skus(conn, [rule.sku]):
                found.add("rule.sku", f"unknown SKU {rule.sku!r}")
            found.raise_if_any()
            row, created = await self._repo.create_rule(conn, rule_in)
            proto = events.threshold_rule_proto(row)
            if created:
                await self._audit(conn, "retail.inventory.v1.ThresholdRule", proto.rule_id, None, proto)
            return pb.CreateThresholdRuleResponse(rule=proto)

        return await self._tx(work)

    async def BatchCreateThresholdRules(
        self, request: pb.BatchCreateThresholdRulesRequest, context: Context
    ) -> pb.BatchCreateThresholdRulesResponse:
        check = _Violations()
        check.count("requests", len(request.requests), limits.MAX_MOVEMENTS_PER_REQUEST)
        inputs = [_rule_input(r, check, f"requests[{i}].") for i, r in enumerate(request.requests)]
        check.raise_if_any()

        async def work(conn: Connection) -> pb.BatchCreateThresholdRulesResponse:
            found = _Violations()
            fields = [(f"requests[{i}].rule.location_id", r.location_id) for i, r in enumerate(inputs)]
            await self._check_locations(conn, fields, found)
            unknown = await self._repo.unknown_skus(conn, [r.sku for r in inputs])
            for i, r in enumerate(inputs):
                if r.sku in unknown:
                    found.add(f"requests[{i}].rule.sku", f"unknown SKU {r.sku!r}")
            found.raise_if_any()
            # The audit records of the new rules are written by the repository's insert (set-based).
            created = await self._repo.create_rules(conn, inputs, _audit_stamp())
            rules = [events.threshold_rule_proto(row) for row, _ in created]
            return pb.BatchCreateThresholdRulesResponse(rules=rules)

        return await self._tx(work)

    def _rule_id(self, value: str, field: str = "rule_id") -> uuid.UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise InvalidArgument.field(field, "not a rule id") from None

    async def GetThresholdRule(
        self, request: pb.GetThresholdRuleRequest, context: Context
    ) -> pb.GetThresholdRuleResponse:
        rule_id = self._rule_id(request.rule_id)
        async with self._ctx.pool.acquire() as conn:
            row = await self._repo.get_rule(conn, rule_id)
        if row is None:
            raise NotFound("retail.inventory.v1.ThresholdRule", request.rule_id)
        return pb.GetThresholdRuleResponse(rule=events.threshold_rule_proto(row))

    async def ListThresholdRules(
        self, request: pb.ListThresholdRulesRequest, context: Context
    ) -> pb.ListThresholdRulesResponse:
        check = _Violations()
        size = _page_size(request.page_size, check)
        check.raise_if_any()
        page = _page(request.page_token)
        after = self._rule_id(str(page.get("after")), "page_token") if page else None
        async with self._ctx.pool.acquire() as conn:
            rows = await self._repo.list_rules(
                conn,
                sku=request.sku or None,
                location_id=request.location_id or None,
                campaign_id=request.campaign_id or None,
                after=after,
                limit=size + 1,
            )
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListThresholdRulesResponse(
            rules=[events.threshold_rule_proto(r) for r in rows],
            next_page_token=_token({"after": str(rows[-1]["rule_id"])}) if more else "",
        )

    async def DeleteThresholdRule(
        self, request: pb.DeleteThresholdRuleRequest, context: Context
    ) -> pb.DeleteThresholdRuleResponse:
        check = _Violations()
        check.id("request_id", request.request_id)
        check.raise_if_any()
        rule_id = self._rule_id(request.rule_id)

        async def work(conn: Connection) -> pb.DeleteThresholdRuleResponse:
            row = await self._repo.delete_rule(conn, rule_id, etag=request.etag)
            if row is None:
                raise NotFound("retail.inventory.v1.ThresholdRule", request.rule_id)
            await self._audit(
                conn,
                "retail.inventory.v1.ThresholdRule",
                request.rule_id,
                events.threshold_rule_proto(row),
                None,
            )
            return pb.DeleteThresholdRuleResponse()

        return await self._idempotent(request, request.request_id, pb.DeleteThresholdRuleResponse, work)

    # ---------------------------------------------------------------------------------------- audit

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        # The contract caps page_size at 1,000 (refused above); audit_page checks the rest (negative
        # page_size, entity_key without entity_type, page_token) and coerces to its own maximum.
        if request.page_size > limits.MAX_PAGE_SIZE:
            raise InvalidArgument.field("page_size", f"must be 0..{limits.MAX_PAGE_SIZE}")
        async with self._ctx.pool.acquire() as conn:
            records, token = await audit_page(
                conn,
                entity_type=request.entity_type,
                entity_key=request.entity_key,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return pb.ListAuditRecordsResponse(records=records, next_page_token=token)
