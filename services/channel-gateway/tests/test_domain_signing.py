"""Webhook signatures: HMAC over timestamp + idempotency key + body, replay window, replays."""

from __future__ import annotations

import pytest

from retail_channel_gateway.domain.signing import SignatureError, sign, verify

SECRET = b"s3cret"


def memory() -> tuple[set[str], object]:
    seen: set[str] = set()

    def check(signature: str) -> bool:
        before = signature in seen
        seen.add(signature)
        return before

    return seen, check


def test_authentic_request_passes_once_and_its_replay_is_refused() -> None:
    _, seen = memory()
    signature = sign(SECRET, 1000, "key1", b'{"a":1}')
    args = {"timestamp": "1000", "idempotency_key": "key1", "body": b'{"a":1}', "signature": signature}
    verify(SECRET, **args, now_ms=1010, window_ms=300, seen=seen)  # type: ignore[arg-type]
    with pytest.raises(SignatureError) as err:
        verify(SECRET, **args, now_ms=1011, window_ms=300, seen=seen)  # type: ignore[arg-type]
    assert err.value.reason == "replay"


@pytest.mark.parametrize(
    ("field", "value"),
    [("timestamp", "1001"), ("idempotency_key", "key2"), ("body", b'{"a":2}')],
)
def test_any_tampered_part_breaks_the_signature(field: str, value: object) -> None:
    _, seen = memory()
    args: dict[str, object] = {"timestamp": "1000", "idempotency_key": "key1", "body": b'{"a":1}'}
    signature = sign(SECRET, 1000, "key1", b'{"a":1}')
    args[field] = value
    with pytest.raises(SignatureError) as err:
        verify(SECRET, **args, signature=signature, now_ms=1000, window_ms=300, seen=seen)  # type: ignore[arg-type]
    assert err.value.reason == "bad_signature"


def test_wrong_secret_and_stale_timestamp_are_refused() -> None:
    _, seen = memory()
    signature = sign(b"other", 1000, "k", b"x")
    with pytest.raises(SignatureError, match="bad_signature"):
        verify(SECRET, timestamp="1000", idempotency_key="k", body=b"x", signature=signature, now_ms=1000,
               window_ms=300, seen=seen)  # type: ignore[arg-type]  # fmt: skip
    fresh = sign(SECRET, 1000, "k", b"x")
    with pytest.raises(SignatureError, match="stale_timestamp"):
        verify(SECRET, timestamp="1000", idempotency_key="k", body=b"x", signature=fresh, now_ms=1301,
               window_ms=300, seen=seen)  # type: ignore[arg-type]  # fmt: skip
