"""Proto <-> domain for the registry: validation (INVALID_ARGUMENT naming every bad field, before any
change) and conversions of channels, policies, health, dead letters."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from retail.channel.v1 import channel_pb2, health_pb2
from retail_channel_gateway.domain.changes import ChangeKind, Lane
from retail_channel_gateway.domain.payload import PayloadFormat
from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.repository import ChannelRecord, DeadLetterRow
from retail_channel_gateway.repository.ledger import HealthRow
from retail_common.errors import FieldViolation, InvalidArgument
from retail_common.messaging import subject_token

__all__ = [
    "CHANNEL_ID",
    "channel_proto",
    "check_channel_id",
    "dead_letter_proto",
    "health_proto",
    "settings_from_proto",
    "ts",
    "validate_channel",
]

CHANNEL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_LOCATIONS = 10_000


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _seconds(value: Duration) -> float:
    return value.seconds + value.nanos / 1e9


def _duration(seconds: float) -> Duration:
    out = Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


def check_channel_id(value: str, field: str = "channel_id") -> list[FieldViolation]:
    if not CHANNEL_ID.match(value):
        return [FieldViolation(field, "required: 1..64 characters of A-Z a-z 0-9 _ -")]
    return []


def _policy_violations(p: channel_pb2.DeliveryPolicy, prefix: str, allow_http: bool) -> list[FieldViolation]:
    bad: list[FieldViolation] = []

    def check(ok: bool, field: str, why: str) -> None:
        if not ok:
            bad.append(FieldViolation(f"{prefix}.{field}", why))

    mode = p.WhichOneof("mode")
    check(mode is not None, "mode", "one of webhook, nats_subject, change_stream is required")
    if mode == "webhook":
        schemes = ("https://", "http://") if allow_http else ("https://",)
        check(p.webhook.url.startswith(schemes) and len(p.webhook.url) <= 2048, "webhook.url",
              "must be an https:// URL (at most 2048 characters)")  # fmt: skip
    if mode == "change_stream":
        retention = _seconds(p.change_stream.retention)
        check(0 <= retention <= 30 * 86400, "change_stream.retention", "must be 0..30 days")
    check(0 <= _seconds(p.lead_time) <= 30 * 86400, "lead_time", "must be 0..30 days")
    check(p.rate_limit.requests_per_second >= 0, "rate_limit.requests_per_second", "must be >= 0")
    check(0 <= p.rate_limit.burst <= 100_000, "rate_limit.burst", "must be 0..100000")
    check(0 <= p.batch_size <= 1000, "batch_size", "must be 0..1000")
    check(0 <= _seconds(p.timeout) <= 120, "timeout", "must be 0..120 s")
    check(0 <= p.retry.max_attempts <= 100, "retry.max_attempts", "must be 0..100")
    check(_seconds(p.retry.initial_backoff) >= 0, "retry.initial_backoff", "must be >= 0")
    check(_seconds(p.retry.max_backoff) >= 0, "retry.max_backoff", "must be >= 0")
    check(
        0 <= p.circuit_breaker.failure_threshold <= 1000,
        "circuit_breaker.failure_threshold",
        "must be 0..1000",
    )
    check(0 <= _seconds(p.circuit_breaker.open_duration) <= 3600, "circuit_breaker.open_duration",
          "must be 0..1 hour")  # fmt: skip
    for i, kind in enumerate(p.payload_profile.change_kinds):
        check(kind != channel_pb2.CHANGE_KIND_UNSPECIFIED and kind in channel_pb2.ChangeKind.values(),
              f"payload_profile.change_kinds[{i}]", "unknown change kind")  # fmt: skip
    return bad


def validate_channel(channel: channel_pb2.Channel, *, allow_http: bool, prefix: str = "channel") -> None:
    bad = check_channel_id(channel.channel_id, f"{prefix}.channel_id")
    if not 1 <= len(channel.display_name) <= 200:
        bad.append(FieldViolation(f"{prefix}.display_name", "required, at most 200 characters"))
    if channel.kind not in (1, 2, 3, 4):
        bad.append(
            FieldViolation(f"{prefix}.kind", "required: ECOMMERCE, MOBILE, POS_STORE_GROUP or MARKETPLACE")
        )
    if len(channel.location_ids) > _MAX_LOCATIONS:
        bad.append(FieldViolation(f"{prefix}.location_ids", f"at most {_MAX_LOCATIONS}"))
    for i, location in enumerate(channel.location_ids):
        if not 1 <= len(location) <= 128:
            bad.append(FieldViolation(f"{prefix}.location_ids[{i}]", "must be 1..128 characters"))
    if channel.currency_code and not re.match(r"^[A-Z]{3}$", channel.currency_code):
        bad.append(FieldViolation(f"{prefix}.currency_code", "an ISO 4217 code such as EUR, or empty"))
    if not channel.HasField("delivery"):
        bad.append(FieldViolation(f"{prefix}.delivery", "required"))
    else:
        bad += _policy_violations(channel.delivery, f"{prefix}.delivery", allow_http)
    if bad:
        raise InvalidArgument(bad)


def settings_from_proto(p: channel_pb2.DeliveryPolicy, currency: str = "") -> DeliverySettings:
    """Defaults per the contract; call validate_channel first."""
    mode = {
        "webhook": DeliveryMode.WEBHOOK,
        "nats_subject": DeliveryMode.NATS,
        "change_stream": DeliveryMode.STREAM,
    }[p.WhichOneof("mode") or "webhook"]
    default_format = PayloadFormat.JSON if mode == DeliveryMode.WEBHOOK else PayloadFormat.PROTOBUF
    fmt = {
        channel_pb2.PAYLOAD_FORMAT_JSON: PayloadFormat.JSON,
        channel_pb2.PAYLOAD_FORMAT_PROTOBUF: PayloadFormat.PROTOBUF,
    }.get(p.payload_profile.format, default_format)
    initial = _seconds(p.retry.initial_backoff) or 0.5
    retention = _seconds(p.change_stream.retention) if mode == DeliveryMode.STREAM else 0
    return DeliverySettings(
        mode=mode,
        webhook_url=p.webhook.url if mode == DeliveryMode.WEBHOOK else "",
        lead_time=timedelta(seconds=_seconds(p.lead_time)),
        rate_per_second=p.rate_limit.requests_per_second,
        burst=p.rate_limit.burst,
        batch_size=p.batch_size or 100,
        timeout=_seconds(p.timeout) or 10.0,
        max_attempts=p.retry.max_attempts or 8,
        initial_backoff=initial,
        max_backoff=max(_seconds(p.retry.max_backoff) or 60.0, initial),
        failure_threshold=p.circuit_breaker.failure_threshold or 5,
        open_for=_seconds(p.circuit_breaker.open_duration) or 30.0,
        payload_format=fmt,
        change_kinds=frozenset(
            ChangeKind(channel_pb2.ChangeKind.Name(k).removeprefix("CHANGE_KIND_"))
            for k in p.payload_profile.change_kinds
        ),
        include_stock_detail=p.payload_profile.include_stock_detail,
        stock_lane=Lane.FAST if p.stock_lane == channel_pb2.LANE_FAST else Lane.BULK,
        retention=timedelta(seconds=retention or 7 * 86400),
        currency=currency,
    )


def policy_proto(
    s: DeliverySettings, channel_id: str, signing_key_id: str | None
) -> channel_pb2.DeliveryPolicy:
    p = channel_pb2.DeliveryPolicy(
        lead_time=_duration(s.lead_time.total_seconds()),
        rate_limit=channel_pb2.RateLimit(requests_per_second=s.rate_per_second, burst=s.burst),
        batch_size=s.batch_size,
        timeout=_duration(s.timeout),
        retry=channel_pb2.RetryPolicy(
            max_attempts=s.max_attempts,
            initial_backoff=_duration(s.initial_backoff),
            max_backoff=_duration(s.max_backoff),
        ),
        circuit_breaker=channel_pb2.CircuitBreakerPolicy(
            failure_threshold=s.failure_threshold, open_duration=_duration(s.open_for)
        ),
        payload_profile=channel_pb2.PayloadProfile(
            format=(
                channel_pb2.PAYLOAD_FORMAT_JSON
                if s.payload_format == PayloadFormat.JSON
                else channel_pb2.PAYLOAD_FORMAT_PROTOBUF
            ),
            change_kinds=[
                channel_pb2.ChangeKind.Value(f"CHANGE_KIND_{k.value}") for k in sorted(s.change_kinds)
            ],
            include_stock_detail=s.include_stock_detail,
        ),
        stock_lane=channel_pb2.LANE_FAST if s.stock_lane is Lane.FAST else channel_pb2.LANE_BULK,
    )
    if s.mode == DeliveryMode.WEBHOOK:
        p.webhook.CopyFrom(channel_pb2.WebhookTarget(url=s.webhook_url, signing_key_id=signing_key_id or ""))
    elif s.mode == DeliveryMode.NATS:
        p.nats_subject.CopyFrom(
            channel_pb2.NatsSubjectTarget(subject_prefix=f"retail.delivery.v1.{subject_token(channel_id)}")
        )
    else:
        p.change_stream.CopyFrom(
            channel_pb2.ChangeStreamTarget(retention=_duration(s.retention.total_seconds()))
        )
    return p


def channel_proto(r: ChannelRecord) -> channel_pb2.Channel:
    return channel_pb2.Channel(
        channel_id=r.channel_id,
        display_name=r.display_name,
        kind=channel_pb2.ChannelKind.Value(f"CHANNEL_KIND_{r.kind}"),
        location_ids=list(r.location_ids),
        delivery=policy_proto(r.settings, r.channel_id, r.signing_key_id),
        assortment_size=r.assortment_size,
        active=r.active,
        etag=str(r.version),
        create_time=ts(r.created_at),
        update_time=ts(r.updated_at),
        currency_code=r.settings.currency,
    )


def kind_name(channel: channel_pb2.Channel) -> str:
    return channel_pb2.ChannelKind.Name(channel.kind).removeprefix("CHANNEL_KIND_")


def health_proto(channel_id: str, h: HealthRow, now: datetime) -> health_pb2.ChannelHealth:
    total = h.ok + h.failed
    degraded = h.breaker_state != "CLOSED" or h.dead_letters > 0
    return health_pb2.ChannelHealth(
        channel_id=channel_id,
        breaker_state=health_pb2.BreakerState.Value(f"BREAKER_STATE_{h.breaker_state}"),
        backlog=h.backlog_fast + h.backlog_bulk,
        fast_lane_backlog=h.backlog_fast,
        bulk_lane_backlog=h.backlog_bulk,
        lag_seconds=0.0
        if h.oldest_pending_at is None
        else max(0.0, (now - h.oldest_pending_at).total_seconds()),
        last_success_time=ts(h.last_success_at),
        last_failure_time=ts(h.last_failure_at),
        error_rate=0.0 if total == 0 else h.failed / total,
        dead_letters=h.dead_letters,
        owner=h.owner,
        condition=health_pb2.CHANNEL_CONDITION_DEGRADED if degraded else health_pb2.CHANNEL_CONDITION_HEALTHY,
    )


def dead_letter_proto(d: DeadLetterRow) -> health_pb2.DeliveryDeadLetter:
    return health_pb2.DeliveryDeadLetter(
        dead_letter_id=d.id,
        channel_id=d.channel_id,
        kind=channel_pb2.ChangeKind.Value(f"CHANGE_KIND_{d.kind}"),
        entity_key=d.entity_key,
        version=d.version,
        attempts=d.attempts,
        last_error=d.last_error,
        dead_time=ts(d.dead_at),
        replay_time=ts(d.replayed_at),
    )
