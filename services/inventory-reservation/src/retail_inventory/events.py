"""Inventory events (retail.inventory.v1 events.proto) and the row -> proto conversions they share with
the servicer. Events go to the outbox through an `EventWriter` (retail_common.messaging.OutboxWriter)
in the transaction of the change; each carries the full state and the outbox's aggregate version.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TypeAlias

import asyncpg
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from retail.inventory.v1 import events_pb2, location_pb2, reservation_pb2, stock_pb2, threshold_pb2
from retail_common.messaging import OutboxEvent, OutboxWriter, event_name, event_subject, subject_token
from retail_inventory.domain.ats import Fence, Position, ats

__all__ = [
    "EventWriter",
    "availability_changed",
    "availability_event",
    "fence_from_json",
    "location_proto",
    "location_upserted",
    "position_of",
    "reservation_changed",
    "reservation_proto",
    "stock_position_proto",
    "threshold_rule_proto",
    "threshold_state_changed",
]

Row: TypeAlias = asyncpg.Record
DOMAIN = "inventory"


# The repository writes through the shared outbox: append_many for the events of one change,
# append_select for one event per row of a SELECT with the payload built in SQL (bulk snapshots, the
# one-statement Reserve). An alias, not a Protocol that would repeat its signatures.
EventWriter: TypeAlias = OutboxWriter


# Ids made only of token-safe characters are their own subject token (subject_token's identity case).
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


@functools.lru_cache(maxsize=64)
def _subject_prefix(event: str) -> str:
    return event_subject(DOMAIN, event_name(event))


def subject(event: str, *key: str) -> str:
    """`retail.inventory.v1.<snake_case event>.<key tokens>` (the suite's one subject convention, as
    event_subject builds it); usual ids skip the per-character encoder, a snapshot load names 10^5."""
    tokens = [k if _PLAIN_TOKEN.fullmatch(k) else subject_token(k) for k in key]
    return ".".join([_subject_prefix(event), *tokens])


def subject_tokens(ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """(ids, tokens) of the ids that are not their own subject token, for SQL-built subjects
    (AVAILABILITY_SUBJECT_SQL): usual ids are plain and need no entry."""
    odd = sorted({i for i in ids if not _PLAIN_TOKEN.fullmatch(i)})
    return odd, [subject_token(i) for i in odd]


def _token_sql(column: str, ids: str, tokens: str) -> str:
    return (
        f"case when {column} ~ '^[A-Za-z0-9_-]+$' then {column}"
        f" else (select t from unnest({ids}::text[], {tokens}::text[]) u(i, t) where u.i = {column}) end"
    )


def _channels_sql(channels: str, ats: str) -> str:
    """The encoded `repeated ChannelAvailableToSell channels = 6` of one position: an entry per distinct
    channel of the array expression `channels` (as `x.channel` in `ats`), in channel (code point)
    order. The OFFSET 0 layers keep each level's columns plain, so the pb functions inline."""
    return f"""(select coalesce(string_agg(inv_pb_len(50, e.body), ''::bytea
                                          order by e.channel collate "C"), ''::bytea)
               from (select c.channel, inv_pb_str(10, c.channel) || inv_pb_int(16, c.ats) as body
                     from (select x.channel, {ats} as ats
                           from (select distinct y as channel from unnest({channels}) y) x
                           offset 0) c
                     offset 0) e)"""


def availability_source_sql(positions: str, subject_args: tuple[int, int, int]) -> str:
    """The SELECT of OutboxWriter.append_select for AvailabilityChanged: one row per position of
    `positions` (a FROM item, alias s: stock rows joined with their locations as l), with its aggregate
    key, its subject (parameters: the subject prefix and subject_tokens' two arrays) and its channels
    already encoded (ChannelAvailableToSell per channel served by the location or fenced there, in
    channel order, ATS by inv_ats where the location is active and serves the channel, else 0), as
    availability_changed does in Python.

    Positions without fences (effective fences empty: the usual bulk load) show one figure on every
    channel of their location, so their channels are encoded once per distinct (channels, activity,
    figure) and joined back; the others get the general per-position encoding."""
    prefix, ids, tokens = (f"${n}" for n in subject_args)
    general = _channels_sql(
        "p.channel_ids || array(select jsonb_object_keys(p.effective))",
        "case when p.active and x.channel = any(p.channel_ids)"
        " then inv_ats(p.on_hand, p.reserved_total, p.safety_stock, p.effective, p.channel_reserved,"
        " x.channel) else 0 end",
    )
    plain = _channels_sql("k.channel_ids", "case when k.active then k.figure else 0 end")
    return f"""
    with p as materialized (
        select s.sku, s.location_id, s.on_hand, s.reserved_total, s.safety_stock, s.channel_reserved,
               s.updated_at, l.active, l.channel_ids, l.default_fences || s.fences as effective,
               greatest(0, s.on_hand - s.reserved_total - s.safety_stock) as figure
        from {positions}
    ), plain as (
        select k.channel_ids, k.active, k.figure, {plain} as channels
        from (select distinct channel_ids, active, figure from p where effective = '{{}}'::jsonb) k
    )
    select p.sku || '/' || p.location_id as aggregate_key,
           {prefix} || '.' || {_token_sql("p.sku", ids, tokens)} || '.'
               || {_token_sql("p.location_id", ids, tokens)} as subject,
           p.sku, p.location_id, p.on_hand, p.reserved_total, p.safety_stock,
           -- rows of a bulk change share their transaction's now(): encoded once (an InitPlan)
           case when p.updated_at = now() then (select inv_pb_timestamp(66, now()))
                else inv_pb_timestamp(66, p.updated_at) end as change_time,
           coalesce(plain.channels, {general}) as channels
    from p left join plain
      on p.effective = '{{}}'::jsonb and plain.channel_ids = p.channel_ids and plain.active = p.active
         and plain.figure = p.figure
    """


# AvailabilityChanged (events.proto field numbers) over availability_source_sql's columns, byte for
# byte what availability_changed(...).SerializeToString(deterministic=True) writes.
AVAILABILITY_PAYLOAD_SQL = (
    "inv_pb_str(10, s.sku) || inv_pb_str(18, s.location_id) || inv_pb_int(24, s.on_hand)"
    " || inv_pb_int(32, s.reserved_total) || inv_pb_int(40, s.safety_stock) || s.channels"
    " || inv_pb_int(56, b.aggregate_version) || s.change_time"
)
AVAILABILITY_EVENT_TYPE = "retail.inventory.v1.AvailabilityChanged"
STOCK_POSITION_AGGREGATE = "retail.inventory.v1.StockPosition"


def availability_subject_prefix() -> str:
    return _subject_prefix("AvailabilityChanged")


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def fence_from_json(value: Mapping[str, int]) -> Fence:
    if "fixed" in value:
        return Fence(fixed=int(value["fixed"]))
    return Fence(share_bp=int(value["share_bp"]))


def effective_fences(row: Row) -> Mapping[str, Mapping[str, int]]:
    """The location's default fences (when the row carries them) overridden per channel by the
    position's own."""
    defaults = row.get("default_fences")
    own = row["fences"] or {}
    return {**defaults, **own} if defaults else own


def position_of(row: Row) -> Position:
    fences = {channel: fence_from_json(spec) for channel, spec in effective_fences(row).items()}
    reserved = {channel: int(n) for channel, n in (row["channel_reserved"] or {}).items()}
    return Position(
        on_hand=row["on_hand"],
        reserved_total=row["reserved_total"],
        safety_stock=row["safety_stock"],
        fences=fences,
        channel_reserved=reserved,
    )


def location_proto(row: Row) -> location_pb2.Location:
    return location_pb2.Location(
        location_id=row["location_id"],
        kind=location_pb2.LocationKind.Value(row["kind"]),
        display_name=row["display_name"],
        region_id=row["region_id"],
        time_zone=row["time_zone"],
        channel_ids=list(row["channel_ids"]),
        allocation_priority=row["allocation_priority"],
        active=row["active"],
        version=row["version"],
        update_time=ts(row["updated_at"]),
        etag=str(row["version"]),
        default_fences=[_fence_proto(c, s) for c, s in sorted((row["default_fences"] or {}).items())],
    )


def _fence_proto(channel: str, spec: Mapping[str, int]) -> stock_pb2.ChannelFence:
    if "fixed" in spec:
        return stock_pb2.ChannelFence(channel_id=channel, fixed_quantity=int(spec["fixed"]))
    return stock_pb2.ChannelFence(channel_id=channel, share_basis_points=int(spec["share_bp"]))


def stock_position_proto(row: Row) -> stock_pb2.StockPosition:
    return stock_pb2.StockPosition(
        sku=row["sku"],
        location_id=row["location_id"],
        on_hand=row["on_hand"],
        reserved_total=row["reserved_total"],
        safety_stock=row["safety_stock"],
        fences=[_fence_proto(c, s) for c, s in sorted((row["fences"] or {}).items())],
        snapshot_as_of_time=ts(row["snapshot_as_of"]),
        version=row["version"],
        policy_etag=str(row["policy_version"]),
    )


def channel_ats(row: Row, channels: Iterable[str]) -> list[events_pb2.ChannelAvailableToSell]:
    """ATS per channel of a stock row joined with its location (active, channel_ids)."""
    served = set(row["channel_ids"])
    if not row["fences"] and not row.get("default_fences"):
        # No fences (the common case, e.g. bulk snapshot loads): every served channel sees the same
        # figure, the formula without its fence term.
        common = max(0, row["on_hand"] - row["reserved_total"] - row["safety_stock"]) if row["active"] else 0
        return [
            events_pb2.ChannelAvailableToSell(channel_id=c, available_to_sell=common if c in served else 0)
            for c in sorted(set(channels))
        ]
    position = position_of(row)
    out = []
    for channel in sorted(set(channels)):
        sellable = row["active"] and channel in served
        value = ats(position, channel).available_to_sell if sellable else 0
        out.append(events_pb2.ChannelAvailableToSell(channel_id=channel, available_to_sell=value))
    return out


@functools.lru_cache(maxsize=256)
def _change_time(value: datetime) -> Timestamp:
    # Rows changed by one statement share updated_at (now()); never mutated (messages copy it).
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def availability_changed(row: Row, version: int) -> events_pb2.AvailabilityChanged:
    channels = set(row["channel_ids"]) | set(effective_fences(row))
    return events_pb2.AvailabilityChanged(
        sku=row["sku"],
        location_id=row["location_id"],
        on_hand=row["on_hand"],
        reserved_total=row["reserved_total"],
        safety_stock=row["safety_stock"],
        channels=channel_ats(row, channels),
        version=version,
        change_time=_change_time(row["updated_at"]),
    )


def reservation_proto(header: Row, lines: Sequence[Row]) -> reservation_pb2.Reservation:
    state = header["state"]
    return reservation_pb2.Reservation(
        reservation_id=header["reservation_id"],
        channel_id=header["channel_id"],
        state=reservation_pb2.ReservationState.Value(f"RESERVATION_STATE_{state}"),
        lines=[
            reservation_pb2.ReservationLine(
                line_index=line["line_index"],
                request_line_index=line["request_line_index"],
                sku=line["sku"],
                location_id=line["location_id"],
                quantity=line["quantity"],
                confirmed_quantity=line["confirmed"],
                released_quantity=line["released"],
                held_quantity=(
                    line["quantity"] - line["confirmed"] - line["released"] if state == "ACTIVE" else 0
                ),
            )
            for line in sorted(lines, key=lambda r: int(r["line_index"]))
        ],
        create_time=ts(header["created_at"]),
        expire_time=ts(header["expires_at"]),
        update_time=ts(header["updated_at"]),
        version=header["version"],
    )


def threshold_rule_proto(row: Row) -> threshold_pb2.ThresholdRule:
    owner = (
        threshold_pb2.ThresholdOwner(operator_id=row["owner_id"])
        if row["owner_kind"] == "operator"
        else threshold_pb2.ThresholdOwner(campaign_id=row["owner_id"])
    )
    rule = threshold_pb2.ThresholdRule(
        rule_id=str(row["rule_id"]),
        sku=row["sku"],
        location_id=row["location_id"],
        channel_id=row["channel_id"],
        owner=owner,
        state=threshold_pb2.ThresholdState.Value(f"THRESHOLD_STATE_{row['state']}"),
        version=row["version"],
        create_time=ts(row["created_at"]),
        update_time=ts(row["updated_at"]),
        etag=str(row["version"]),
    )
    if row["kind"] == "ABSOLUTE":
        rule.absolute.CopyFrom(
            threshold_pb2.AbsoluteThreshold(
                below_quantity=row["below_quantity"], restore_quantity=row["restore_quantity"]
            )
        )
    else:
        rule.days_of_cover.CopyFrom(
            threshold_pb2.DaysOfCoverThreshold(
                units_sold=row["units_sold"],
                period_days=row["period_days"],
                below_days=row["below_days"],
                restore_days=row["restore_days"],
            )
        )
    return rule


# ------------------------------------------------------------------ outbox events (for append_many)


def location_upserted(row: Row) -> OutboxEvent:
    return OutboxEvent(
        subject=subject("LocationUpserted", row["location_id"]),
        event_type="retail.inventory.v1.LocationUpserted",
        aggregate_type="retail.inventory.v1.Location",
        aggregate_key=row["location_id"],
        payload=events_pb2.LocationUpserted(location=location_proto(row)),
    )


def availability_event(row: Row) -> OutboxEvent:
    """AvailabilityChanged of a stock row joined with its location; the payload carries the version."""

    def build(version: int) -> Message:
        return availability_changed(row, version)

    return OutboxEvent(
        subject=subject("AvailabilityChanged", row["sku"], row["location_id"]),
        event_type=AVAILABILITY_EVENT_TYPE,
        aggregate_type=STOCK_POSITION_AGGREGATE,
        aggregate_key=f"{row['sku']}/{row['location_id']}",
        payload=build,
    )


def reservation_changed(
    proto: reservation_pb2.Reservation, change: reservation_pb2.ReservationChange.ValueType
) -> OutboxEvent:
    return OutboxEvent(
        subject=subject("ReservationChanged", proto.reservation_id),
        event_type="retail.inventory.v1.ReservationChanged",
        aggregate_type="retail.inventory.v1.Reservation",
        aggregate_key=proto.reservation_id,
        payload=events_pb2.ReservationChanged(change=change, reservation=proto),
    )


def threshold_state_changed(row: Row, available: int) -> OutboxEvent:
    return OutboxEvent(
        subject=subject("ThresholdStateChanged", str(row["rule_id"])),
        event_type="retail.inventory.v1.ThresholdStateChanged",
        aggregate_type="retail.inventory.v1.ThresholdRule",
        aggregate_key=str(row["rule_id"]),
        payload=events_pb2.ThresholdStateChanged(rule=threshold_rule_proto(row), available_to_sell=available),
    )
