"""The event envelope: protobuf payload bytes plus validated headers.

Headers (all strings): Nats-Msg-Id (UUIDv7 event id), Retail-Event-Type, Retail-Schema-Version,
Retail-Aggregate-Type, Retail-Aggregate-Key, Retail-Aggregate-Version, Retail-Occurred-At (RFC 3339 UTC),
traceparent/tracestate (optional), Retail-Original-Event-Id (only on dead-letter replays).
A message whose required headers are missing or invalid is undecodable (it goes to dead letters).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import uuid6

__all__ = [
    "H_AGGREGATE_KEY",
    "H_AGGREGATE_TYPE",
    "H_AGGREGATE_VERSION",
    "H_EVENT_TYPE",
    "H_MSG_ID",
    "H_OCCURRED_AT",
    "H_ORIGINAL_EVENT_ID",
    "H_SCHEMA_VERSION",
    "Envelope",
    "UndecodableMessageError",
    "decode_envelope",
    "new_event_id",
]

H_MSG_ID = "Nats-Msg-Id"
H_EVENT_TYPE = "Retail-Event-Type"
H_SCHEMA_VERSION = "Retail-Schema-Version"
H_AGGREGATE_TYPE = "Retail-Aggregate-Type"
H_AGGREGATE_KEY = "Retail-Aggregate-Key"
H_AGGREGATE_VERSION = "Retail-Aggregate-Version"
H_OCCURRED_AT = "Retail-Occurred-At"
H_ORIGINAL_EVENT_ID = "Retail-Original-Event-Id"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"


class UndecodableMessageError(ValueError):
    """The message cannot be turned into an Envelope; the reason names the header at fault."""


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (time-ordered) event id."""
    value: uuid.UUID = uuid6.uuid7()
    return uuid.UUID(bytes=value.bytes)


@dataclass(frozen=True)
class Envelope:
    subject: str
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    aggregate_type: str
    aggregate_key: str
    aggregate_version: int
    occurred_at: datetime
    payload: bytes
    traceparent: str | None = None
    tracestate: str | None = None
    original_event_id: uuid.UUID | None = None

    @property
    def dedupe_id(self) -> uuid.UUID:
        """The id the inbox dedupes by: the original event id on a replay, else the event id."""
        return self.original_event_id or self.event_id

    def headers(self) -> dict[str, str]:
        out = {
            H_MSG_ID: str(self.event_id),
            H_EVENT_TYPE: self.event_type,
            H_SCHEMA_VERSION: str(self.schema_version),
            H_AGGREGATE_TYPE: self.aggregate_type,
            H_AGGREGATE_KEY: self.aggregate_key,
            H_AGGREGATE_VERSION: str(self.aggregate_version),
            H_OCCURRED_AT: format_instant(self.occurred_at),
        }
        if self.traceparent:
            out[H_TRACEPARENT] = self.traceparent
        if self.tracestate:
            out[H_TRACESTATE] = self.tracestate
        if self.original_event_id is not None:
            out[H_ORIGINAL_EVENT_ID] = str(self.original_event_id)
        return out


def format_instant(instant: datetime) -> str:
    if instant.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or value.strip() == "":
        raise UndecodableMessageError(f"missing header {name}")
    return value


def _uuid(name: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise UndecodableMessageError(f"header {name} is not a UUID: {value[:64]!r}") from None


def _positive_int(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise UndecodableMessageError(f"header {name} is not a positive integer: {value[:64]!r}")
    return int(value)


def decode_envelope(subject: str, headers: Mapping[str, str] | None, payload: bytes) -> Envelope:
    """Validate the headers of a received message; raise UndecodableMessageError naming what is wrong."""
    if not headers:
        raise UndecodableMessageError("message has no headers")
    event_id = _uuid(H_MSG_ID, _required(headers, H_MSG_ID))
    occurred_raw = _required(headers, H_OCCURRED_AT)
    try:
        occurred_at = datetime.fromisoformat(occurred_raw)
    except ValueError:
        raise UndecodableMessageError(f"header {H_OCCURRED_AT} is not an RFC 3339 instant") from None
    if occurred_at.tzinfo is None:
        raise UndecodableMessageError(f"header {H_OCCURRED_AT} has no offset")
    original = headers.get(H_ORIGINAL_EVENT_ID)
    return Envelope(
        subject=subject,
        event_id=event_id,
        event_type=_required(headers, H_EVENT_TYPE),
        schema_version=_positive_int(H_SCHEMA_VERSION, _required(headers, H_SCHEMA_VERSION)),
        aggregate_type=_required(headers, H_AGGREGATE_TYPE),
        aggregate_key=_required(headers, H_AGGREGATE_KEY),
        aggregate_version=_positive_int(H_AGGREGATE_VERSION, _required(headers, H_AGGREGATE_VERSION)),
        occurred_at=occurred_at.astimezone(UTC),
        payload=payload,
        traceparent=headers.get(H_TRACEPARENT) or None,
        tracestate=headers.get(H_TRACESTATE) or None,
        original_event_id=_uuid(H_ORIGINAL_EVENT_ID, original) if original else None,
    )
