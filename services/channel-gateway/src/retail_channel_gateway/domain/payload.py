"""Payloads: a DomainChange rendered for one channel (its profile), with its effective window."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import changes_pb2, channel_pb2
from retail.common.v1 import time_window_pb2
from retail_channel_gateway.domain.changes import ChangeKind, DomainChange

__all__ = ["PayloadFormat", "Profile", "decode_change", "encode_batch", "render"]

_ONEOF = {
    ChangeKind.PRICE: "price",
    ChangeKind.AVAILABILITY: "availability",
    ChangeKind.PROMOTION: "promotion",
    ChangeKind.CAMPAIGN: "campaign",
    ChangeKind.PRODUCT: "product",
    ChangeKind.LOCATION: "location",
    ChangeKind.RESERVATION: "reservation",
}


class PayloadFormat:
    JSON = "json"
    PROTOBUF = "protobuf"


@dataclass(frozen=True)
class Profile:
    format: str = PayloadFormat.JSON
    include_stock_detail: bool = False


def _ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def render(
    change: DomainChange, channel_id: str, profile: Profile, *, resync: bool = False
) -> changes_pb2.ChannelChange:
    """The ChannelChange one channel receives (no cursor: that is assigned by the change log).

    Effective window: [effective_from or occurred_at, effective_until); every payload carries it so a
    channel that misses a later change still stops applying this one at the window's end.
    """
    window = time_window_pb2.AbsoluteWindow(start_time=_ts(change.effective_from or change.occurred_at))
    if change.effective_until is not None:
        window.end_time.CopyFrom(_ts(change.effective_until))
    out = changes_pb2.ChannelChange(
        channel_id=channel_id,
        kind=channel_pb2.ChangeKind.Value(f"CHANGE_KIND_{change.kind.value}"),
        entity_key=change.entity_key,
        version=change.version,
        effective_window=window,
        create_time=_ts(change.occurred_at),
        resync=resync,
    )
    if change.body is None:
        return out
    target = getattr(out, _ONEOF[change.kind])
    target.CopyFrom(change.body)
    if isinstance(target, changes_pb2.AvailabilityUpdate):
        target.available_to_sell = change.channel_ats.get(channel_id, 0)
        if not profile.include_stock_detail:
            target.on_hand = 0
            target.reserved_total = 0
    return out


def decode_change(data: bytes) -> changes_pb2.ChannelChange:
    return changes_pb2.ChannelChange.FromString(data)


def encode_batch(changes: Sequence[changes_pb2.ChannelChange], fmt: str) -> tuple[bytes, str]:
    """Body and content type of one delivery of `changes` in the channel's format."""
    if fmt == PayloadFormat.PROTOBUF:
        parts = []  # one message per change, each prefixed by its 4-byte big-endian length
        for change in changes:
            data = change.SerializeToString(deterministic=True)
            parts.append(len(data).to_bytes(4, "big") + data)
        return b"".join(parts), "application/x-protobuf-delimited"
    items = [json_format.MessageToDict(change, preserving_proto_field_name=True) for change in changes]
    return json.dumps({"changes": items}, separators=(",", ":"), sort_keys=True).encode(), "application/json"
