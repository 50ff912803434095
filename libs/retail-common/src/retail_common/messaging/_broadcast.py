"""Per-replica subscriptions: every replica sees every message (cache invalidation, local refresh).

Each replica gets its own ephemeral *ordered* consumer (never a shared durable, which would split the
messages between replicas). The ordered consumer is recreated by the client on gaps and missed
heartbeats, so it follows server restarts; it starts at new messages by default.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from retail_common.messaging._envelope import Envelope, UndecodableMessageError, decode_envelope

__all__ = ["ReplicaSubscription", "subscribe_per_replica"]

_log = logging.getLogger(__name__)


class ReplicaSubscription:
    def __init__(self, sub: JetStreamContext.PushSubscription) -> None:
        self._sub = sub

    async def close(self) -> None:
        await self._sub.unsubscribe()


async def subscribe_per_replica(
    js: JetStreamContext,
    subject: str,
    callback: Callable[[Envelope], Awaitable[None]],
    *,
    stream: str | None = None,
    start: Literal["new", "all", "last_per_subject"] = "new",
    idle_heartbeat: float = 5.0,
) -> ReplicaSubscription:
    """Subscribe this replica to `subject` with an ephemeral ordered consumer.

    `callback` gets each decodable envelope, in stream order; undecodable messages are logged and skipped
    (no acks: ordered consumers do not take them). Exceptions from the callback are logged.
    """
    policy = {
        "new": DeliverPolicy.NEW,
        "all": DeliverPolicy.ALL,
        "last_per_subject": DeliverPolicy.LAST_PER_SUBJECT,
    }[start]

    async def on_message(msg: Msg) -> None:
        try:
            envelope = decode_envelope(msg.subject, msg.headers, msg.data)
        except UndecodableMessageError as exc:
            _log.warning("per-replica subscription %s: skipping undecodable message: %s", subject, exc)
            return
        try:
            await callback(envelope)
        except Exception:
            _log.exception("per-replica subscription %s: callback failed", subject)

    sub = await js.subscribe(
        subject,
        cb=on_message,
        stream=stream,
        ordered_consumer=True,
        idle_heartbeat=idle_heartbeat,
        flow_control=True,
        deliver_policy=policy,
    )
    return ReplicaSubscription(sub)
