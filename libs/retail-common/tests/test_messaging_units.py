"""Pure parts of retail_common.messaging: subject tokens, envelope headers, stream specs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retail_common.messaging import (
    SUITE_STREAMS,
    Envelope,
    StreamSpec,
    UndecodableMessageError,
    decode_envelope,
    decode_subject_token,
    event_filter,
    event_name,
    event_subject,
    new_event_id,
    subject_token,
)


@given(st.text())
def test_subject_token_is_reversible_and_safe(value: str) -> None:
    token = subject_token(value)
    assert token
    assert not any(c in token for c in ".*> \t\r\n")
    assert token.isascii()
    assert decode_subject_token(token) == value


def test_subject_token_examples() -> None:
    assert subject_token("SKU-123_a") == "SKU-123_a"
    assert subject_token("a.b c>*") == "a%2Eb%20c%3E%2A"
    assert subject_token("") == "%"
    assert subject_token("%") == "%25"
    assert event_subject("pricing", "price_changed", "store.1") == "retail.pricing.v1.price_changed.store%2E1"
    with pytest.raises(ValueError, match="non-canonical"):
        decode_subject_token("%41")  # "A" would be encoded as itself
    with pytest.raises(ValueError, match="domain"):
        event_subject("Pricing.x", "e")


def test_event_names_and_filters() -> None:
    assert event_name("PriceChanged") == "price_changed"
    assert event_name("ThresholdStateChanged") == "threshold_state_changed"
    assert (
        event_filter("inventory", event_name("LocationUpserted")) == "retail.inventory.v1.location_upserted.>"
    )
    with pytest.raises(ValueError, match="event"):
        event_name("Price.Changed")


def test_suite_streams() -> None:
    by_name = {s.name: s for s in SUITE_STREAMS}
    assert set(by_name) == {"PRICING", "INVENTORY", "PROMOTION", "CHANNEL", "DELIVERY", "DEADLETTER"}
    assert by_name["PRICING"].subjects == ("retail.pricing.>",)
    assert by_name["DELIVERY"].subjects == ("retail.delivery.>",)
    assert all(s.duplicate_window >= 120 and s.storage == "file" for s in SUITE_STREAMS)
    with pytest.raises(ValueError, match="duplicate_window"):
        StreamSpec(name="X", subjects=("x.>",), duplicate_window=60)


def _envelope(**overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "subject": "retail.testing.v1.amount_recorded",
        "event_id": new_event_id(),
        "event_type": "retail.testing.v1.AmountRecorded",
        "schema_version": 1,
        "aggregate_type": "account",
        "aggregate_key": "acc-1",
        "aggregate_version": 3,
        "occurred_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        "payload": b"\x08\x01",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    fields.update(overrides)
    return Envelope(**fields)  # type: ignore[arg-type]


def test_envelope_round_trip() -> None:
    env = _envelope(original_event_id=uuid.uuid4())
    assert env.event_id.version == 7
    decoded = decode_envelope(env.subject, env.headers(), env.payload)
    assert decoded == env
    assert decoded.dedupe_id == env.original_event_id


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("Nats-Msg-Id", None, "missing header Nats-Msg-Id"),
        ("Nats-Msg-Id", "not-a-uuid", "not a UUID"),
        ("Retail-Aggregate-Version", "0", "positive integer"),
        ("Retail-Aggregate-Version", "x", "positive integer"),
        ("Retail-Schema-Version", None, "missing header Retail-Schema-Version"),
        ("Retail-Occurred-At", "yesterday", "RFC 3339"),
        ("Retail-Aggregate-Key", "", "missing header Retail-Aggregate-Key"),
        ("Retail-Original-Event-Id", "zz", "not a UUID"),
    ],
)
def test_invalid_headers_are_undecodable(header: str, value: str | None, message: str) -> None:
    headers = _envelope().headers()
    if value is None:
        headers.pop(header)
    else:
        headers[header] = value
    with pytest.raises(UndecodableMessageError, match=message):
        decode_envelope("s", headers, b"")
    with pytest.raises(UndecodableMessageError, match="no headers"):
        decode_envelope("s", None, b"")


_hex = st.text(alphabet="0123456789abcdefABCDEF-x", min_size=0, max_size=40)


@given(
    st.one_of(
        st.builds(
            lambda t, s, f: f"00-{t:032x}-{s:016x}-{f:02x}",
            st.integers(0, 2**128 - 1),
            st.integers(0, 2**64 - 1),
            st.integers(0, 255),
        ),
        st.builds(lambda a, b, c, d: f"{a}-{b}-{c}-{d}", _hex, _hex, _hex, _hex),
        st.just(""),
    ),
    st.sampled_from([None, "", "k=v"]),
)
def test_inbox_parent_context_matches_the_w3c_propagator(traceparent: str, tracestate: str | None) -> None:
    from opentelemetry import trace

    from retail_common.messaging import extract_context
    from retail_common.messaging._inbox_spans import parent_context

    fast = parent_context(traceparent, tracestate)
    expected = trace.get_current_span(extract_context(traceparent, tracestate)).get_span_context()
    assert trace.get_current_span(fast).get_span_context() == expected
