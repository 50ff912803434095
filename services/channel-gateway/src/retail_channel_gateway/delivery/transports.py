"""Delivery modes: a batch of ChannelChanges to one channel, and what came back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import nats.errors
from nats.js import JetStreamContext

from retail.channel.v1 import changes_pb2, channel_pb2
from retail_channel_gateway.domain.ledger import idempotency_key
from retail_channel_gateway.domain.payload import encode_batch
from retail_channel_gateway.domain.policy import DeliverySettings
from retail_channel_gateway.domain.secret_box import SecretBoxError
from retail_channel_gateway.domain.signing import H_IDEMPOTENCY_KEY, H_SIGNATURE, H_TIMESTAMP, sign
from retail_channel_gateway.domain.store_scope import store_of
from retail_common.messaging import H_MSG_ID, subject_token

__all__ = [
    "DeliveryOutcome",
    "NatsTransport",
    "SecretLookup",
    "Transport",
    "WebhookTransport",
    "delivery_subject",
]

# Names the store of a store group's per-store request (the worker sends one store per request).
H_LOCATION = "Retail-Location"


@dataclass(frozen=True)
class DeliveryOutcome:
    """ok: the channel took the whole batch (acknowledged: it confirmed applying it, e.g. webhook 2xx).
    throttled_for: pause this long without counting an attempt: the channel asked us to slow down (429
    Retry-After), or our own bus is down (NATS-subject channels); not a failure of the changes."""

    ok: bool
    acknowledged: bool = False
    error: str = ""
    throttled_for: float | None = None


class Transport(Protocol):
    async def deliver(
        self, channel_id: str, settings: DeliverySettings, changes: Sequence[changes_pb2.ChannelChange]
    ) -> DeliveryOutcome: ...


SecretLookup = Callable[[str], Awaitable[bytes | None]]


class WebhookTransport:
    """POSTs the batch, HMAC-signed over timestamp, idempotency key and body (domain/signing.py)."""

    def __init__(self, secrets: SecretLookup, *, wall_clock: Callable[[], float]) -> None:
        self._secrets = secrets
        self._wall = wall_clock
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._last_ms: dict[str, int] = {}

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver(
        self, channel_id: str, settings: DeliverySettings, changes: Sequence[changes_pb2.ChannelChange]
    ) -> DeliveryOutcome:
        try:
            secret = await self._secrets(channel_id)
        except SecretBoxError as exc:  # its key was dropped too early, or the row was tampered with
            return DeliveryOutcome(ok=False, error=str(exc))
        if not secret:
            return DeliveryOutcome(ok=False, error="no webhook signing secret")
        body, content_type = encode_batch(changes, settings.payload_format)
        key = idempotency_key(channel_id, [(c.entity_key, c.version) for c in changes])
        # Strictly increasing per channel: a quick retry of the same batch is never a signature replay.
        timestamp = max(int(self._wall() * 1000), self._last_ms.get(channel_id, 0) + 1)
        self._last_ms[channel_id] = timestamp
        headers = {
            "Content-Type": content_type,
            H_TIMESTAMP: str(timestamp),
            H_IDEMPOTENCY_KEY: key,
            H_SIGNATURE: sign(secret, timestamp, key, body),
        }
        stores = {found[1] for c in changes if (found := store_of(c)) is not None}
        if len(stores) == 1:
            headers[H_LOCATION] = stores.pop()
        try:
            response = await self._client.post(
                settings.webhook_url, content=body, headers=headers, timeout=settings.timeout
            )
        except httpx.TimeoutException:
            return DeliveryOutcome(ok=False, error="timeout")
        except httpx.HTTPError as exc:
            return DeliveryOutcome(ok=False, error=f"transport error: {type(exc).__name__}")
        if 200 <= response.status_code < 300:
            return DeliveryOutcome(ok=True, acknowledged=True)
        if response.status_code == 429:
            return DeliveryOutcome(ok=False, error="HTTP 429", throttled_for=_retry_after(response))
        return DeliveryOutcome(ok=False, error=f"HTTP {response.status_code}")


def _retry_after(response: httpx.Response) -> float:
    raw = response.headers.get("Retry-After", "1")
    try:
        return min(300.0, max(0.0, float(raw)))
    except ValueError:
        return 1.0


def delivery_subject(channel_id: str, kind: str, store: str = "") -> str:
    """`retail.delivery.v1.<channel token>.<kind>` (DELIVERY stream), `.<store token>` appended for a
    store group's per-store entities so each store subscribes to its own."""
    subject = f"retail.delivery.v1.{subject_token(channel_id)}.{kind.lower()}"
    return f"{subject}.{subject_token(store)}" if store else subject


class NatsTransport:
    """One message per change on the channel's delivery subject, binary ChannelChange; PubAck = delivered.
    Nats-Msg-Id is (channel, entity, version[, resync cursor]) so a retry after a lost PubAck is deduped
    by the stream while a deliberate resend (resync) is not."""

    def __init__(self, js: Callable[[], JetStreamContext | None]) -> None:
        self._js = js

    async def deliver(
        self, channel_id: str, settings: DeliverySettings, changes: Sequence[changes_pb2.ChannelChange]
    ) -> DeliveryOutcome:
        js = self._js()
        if js is None:
            return _BUS_DOWN
        try:
            async with asyncio.timeout(settings.timeout):
                for change in changes:
                    kind_name = channel_pb2.ChangeKind.Name(change.kind).removeprefix("CHANGE_KIND_")
                    msg_id = f"{channel_id}:{change.entity_key}:{change.version}"
                    if change.resync:
                        msg_id += f":r{change.cursor}"
                    found = store_of(change)
                    await js.publish(
                        delivery_subject(channel_id, kind_name, found[1] if found else ""),
                        change.SerializeToString(deterministic=True),
                        headers={H_MSG_ID: msg_id},
                    )
        except _OUTAGE as exc:
            # Our own bus is down or restarting, not the channel: pause like a 429 (no attempt counted,
            # no breaker failure) rather than dead-letter the channel's changes during a NATS restart.
            return DeliveryOutcome(
                ok=False, error=f"NATS unavailable: {type(exc).__name__}", throttled_for=1.0
            )
        except Exception as exc:  # other nats errors: retried per policy like any failed delivery
            return DeliveryOutcome(ok=False, error=f"NATS error: {type(exc).__name__}")
        return DeliveryOutcome(ok=True, acknowledged=True)


# Errors of a NATS connection that is down or reconnecting (the publish may be retried as is: the
# stream dedupes by Nats-Msg-Id).
_OUTAGE: tuple[type[Exception], ...] = (
    TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.NoRespondersError,
)
_BUS_DOWN = DeliveryOutcome(ok=False, error="NATS not connected", throttled_for=1.0)
