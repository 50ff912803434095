"""Provisioning of streams and durable consumers from code, idempotent at start (create or update)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

__all__ = [
    "SUITE_STREAMS",
    "ConsumerSpec",
    "StreamSpec",
    "ensure_consumer",
    "ensure_streams",
    "suite_streams",
]

_log = logging.getLogger(__name__)

_MIN_DUPLICATE_WINDOW = 120.0
_DAY = 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    """One stream. `duplicate_window` bounds how late a retry with the same Nats-Msg-Id is still deduped."""

    name: str
    subjects: tuple[str, ...]
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1
    duplicate_window: float = 300.0
    max_age: float = 7 * _DAY
    description: str = ""

    def __post_init__(self) -> None:
        if self.duplicate_window < _MIN_DUPLICATE_WINDOW:
            raise ValueError("duplicate_window must be >= 120 s: relay retries rely on it")
        if self.replicas < 1:
            raise ValueError("replicas must be >= 1")
        if not self.subjects:
            raise ValueError("a stream needs at least one subject")

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window,
            max_age=self.max_age,
        )


def suite_streams(replicas: int = 1, max_age: float = 7 * _DAY) -> tuple[StreamSpec, ...]:
    """The suite's streams (DESIGN §5): one per owning domain, plus DELIVERY and DEADLETTER."""
    return tuple(
        StreamSpec(name=name, subjects=(f"retail.{domain}.>",), replicas=replicas, max_age=max_age)
        for name, domain in (
            ("PRICING", "pricing"),
            ("INVENTORY", "inventory"),
            ("PROMOTION", "promotion"),
            ("CHANNEL", "channel"),
            ("DELIVERY", "delivery"),
            ("DEADLETTER", "deadletter"),
        )
    )


SUITE_STREAMS = suite_streams()


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer with explicit ack.

    `max_deliver` and `backoff` are enforced by the InboxConsumer runner (nak delays and the dead-letter
    decision); the server-side consumer is created with unlimited deliveries so a message is never left
    silently undeliverable if a runner dies between its last failure and the dead-letter write.
    """

    durable: str
    filter_subjects: tuple[str, ...]
    ack_wait: float = 30.0
    max_deliver: int = 5
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0)
    max_ack_pending: int = 1000
    deliver_policy: Literal["all", "new"] = "all"
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.filter_subjects:
            raise ValueError("a consumer needs at least one filter subject")
        if self.max_deliver < 1:
            raise ValueError("max_deliver must be >= 1")

    def config(self) -> ConsumerConfig:
        one = len(self.filter_subjects) == 1
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            description=self.description or None,
            deliver_policy=DeliverPolicy.ALL if self.deliver_policy == "all" else DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            filter_subject=self.filter_subjects[0] if one else None,
            filter_subjects=None if one else list(self.filter_subjects),
            max_ack_pending=self.max_ack_pending,
            metadata=dict(self.extra) or None,
        )


async def ensure_streams(js: JetStreamContext, specs: Iterable[StreamSpec]) -> None:
    """Create each stream, or update it to the spec if it exists (idempotent)."""
    for spec in specs:
        config = spec.config()
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(config)
            _log.info("created stream %s", spec.name)
            continue
        await js.update_stream(config)


async def ensure_consumer(js: JetStreamContext, stream: str, spec: ConsumerSpec) -> None:
    """Create the durable consumer, or update its settings if it exists (idempotent)."""
    # add_consumer on an existing durable with a changed (editable) config updates it on servers >= 2.10.
    await js.add_consumer(stream, spec.config())
