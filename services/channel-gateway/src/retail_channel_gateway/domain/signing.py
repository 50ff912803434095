"""Webhook signatures: HMAC-SHA256 over timestamp, idempotency key and body; verification with a
replay window (what a receiver does; the fake marketplace in the tests uses it).

Signed string: `<unix milliseconds>.<idempotency key>.` followed by the raw body bytes. Header value:
`v1=<hex digest>`. A receiver rejects a timestamp outside +-window of its clock and a signature it has
already accepted (a replay), and dedupes retries by the idempotency key. A sender's timestamps are
strictly increasing per channel, so a retry of the same batch never repeats a signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

__all__ = [
    "H_IDEMPOTENCY_KEY",
    "H_SIGNATURE",
    "H_TIMESTAMP",
    "SignatureError",
    "sign",
    "verify",
]

H_TIMESTAMP = "X-Retail-Timestamp"
H_IDEMPOTENCY_KEY = "X-Retail-Idempotency-Key"
H_SIGNATURE = "X-Retail-Signature"
_SCHEME = "v1="


class SignatureError(ValueError):
    """Why a webhook request was refused: `reason` is bad_signature, stale_timestamp or replay."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _digest(secret: bytes, timestamp: int, idempotency_key: str, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.{idempotency_key}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def sign(secret: bytes, timestamp: int, idempotency_key: str, body: bytes) -> str:
    if not secret:
        raise ValueError("signing secret must not be empty")
    if "." in idempotency_key:
        raise ValueError("idempotency key must not contain '.'")
    return _SCHEME + _digest(secret, timestamp, idempotency_key, body)


def verify(
    secret: bytes,
    *,
    timestamp: str,
    idempotency_key: str,
    body: bytes,
    signature: str,
    now_ms: int,
    window_ms: int,
    seen: Callable[[str], bool],
) -> None:
    """Raise SignatureError unless the request is authentic, fresh and not a replay.

    `seen(signature)` must record the signature and return True if it was recorded before (the
    receiver's replay memory; it needs to remember signatures only for the window).
    """
    if not timestamp.isdigit() or not signature.startswith(_SCHEME):
        raise SignatureError("bad_signature")
    expected = _SCHEME + _digest(secret, int(timestamp), idempotency_key, body)
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("bad_signature")
    if abs(now_ms - int(timestamp)) > window_ms:
        raise SignatureError("stale_timestamp")
    if seen(signature):
        raise SignatureError("replay")
