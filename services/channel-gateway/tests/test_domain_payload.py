"""Payloads: effective window, per-channel ATS, profile fields, formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from retail.channel.v1 import changes_pb2
from retail_channel_gateway.domain.changes import ChangeKind, DomainChange
from retail_channel_gateway.domain.payload import PayloadFormat, Profile, encode_batch, render

T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
START = datetime(2026, 5, 2, tzinfo=UTC)
END = datetime(2026, 5, 4, tzinfo=UTC)


def availability() -> DomainChange:
    return DomainChange(
        kind=ChangeKind.AVAILABILITY,
        entity_key="availability/A/s1",
        version=7,
        occurred_at=T0,
        sku="A",
        location_id="s1",
        body=changes_pb2.AvailabilityUpdate(sku="A", location_id="s1", on_hand=10, reserved_total=2),
        channel_ats={"web": 5, "app": 3},
    )


def test_availability_carries_the_channels_own_ats_and_hides_detail_unless_profiled() -> None:
    web = render(availability(), "web", Profile())
    app = render(availability(), "app", Profile(include_stock_detail=True))
    assert (web.availability.available_to_sell, web.availability.on_hand) == (5, 0)
    assert (
        app.availability.available_to_sell,
        app.availability.on_hand,
        app.availability.reserved_total,
    ) == (
        3,
        10,
        2,
    )
    assert web.version == 7
    assert web.entity_key == "availability/A/s1"
    assert web.channel_id == "web"


def test_effective_window_is_the_changes_window_or_starts_when_it_happened() -> None:
    promo = DomainChange(
        kind=ChangeKind.PROMOTION,
        entity_key="promotion/c1",
        version=2,
        occurred_at=T0,
        effective_from=START,
        effective_until=END,
        body=changes_pb2.PromotionUpdate(promotion_id="c1", state="ACTIVATED"),
    )
    rendered = render(promo, "web", Profile())
    assert rendered.effective_window.start_time.ToDatetime(UTC) == START
    assert rendered.effective_window.end_time.ToDatetime(UTC) == END
    open_ended = render(availability(), "web", Profile())
    assert open_ended.effective_window.start_time.ToDatetime(UTC) == T0
    assert not open_ended.effective_window.HasField("end_time")


def test_json_and_protobuf_batches_round_trip() -> None:
    changes = [render(availability(), "web", Profile()), render(availability(), "app", Profile())]
    body, content_type = encode_batch(changes, PayloadFormat.JSON)
    assert content_type == "application/json"
    decoded = json.loads(body)
    assert [c["channel_id"] for c in decoded["changes"]] == ["web", "app"]
    assert decoded["changes"][0]["version"] == "7"  # int64 stays exact as a string
    raw, content_type = encode_batch(changes, PayloadFormat.PROTOBUF)
    first_len = int.from_bytes(raw[:4], "big")
    assert changes_pb2.ChannelChange.FromString(raw[4 : 4 + first_len]) == changes[0]
