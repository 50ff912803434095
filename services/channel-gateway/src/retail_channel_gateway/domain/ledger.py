"""Ledger rules per (channel, entity): what may replace what, what is pending, when it is due.

The repository's SQL applies the same rules in conditional statements (see repository/ledger.py); these
functions are their reference and what the engine uses for decisions in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from retail_channel_gateway.domain.changes import Lane

__all__ = [
    "Pending",
    "accepts_projection",
    "advance_delivered",
    "due_at",
    "idempotency_key",
    "is_pending",
    "order_for_delivery",
]


def accepts_projection(projected_version: int | None, incoming_version: int) -> bool:
    """A newer version replaces the pending payload; an older or equal one (a late retry) never does."""
    return projected_version is None or incoming_version > projected_version


def advance_delivered(delivered_version: int, sent_version: int) -> int:
    """Delivered/acknowledged versions only move forward (a slow older attempt cannot move them back)."""
    return max(delivered_version, sent_version)


def is_pending(projected_version: int, delivered_version: int, dead: bool) -> bool:
    return not dead and projected_version > delivered_version


def due_at(effective_from: datetime | None, projected_at: datetime, lead_time: timedelta) -> datetime:
    """Deliver `lead_time` ahead of effect, never before the change was known (projected_at). A zero
    lead time means "as soon as known" (channel.proto DeliveryPolicy.lead_time): the payload carries
    the effective window, so the channel applies it at the right instant."""
    if effective_from is None or lead_time <= timedelta(0):
        return projected_at
    return max(projected_at, effective_from - lead_time)


@dataclass(frozen=True)
class Pending:
    entity_key: str
    version: int
    lane: Lane
    seq: int


def order_for_delivery(pending: Iterable[Pending], batch_size: int) -> list[Pending]:
    """The next batch: FAST lane before BULK, then projection order (seq). Price and promotion changes
    therefore never wait behind bulk stock traffic, whatever its size."""
    return sorted(pending, key=lambda p: (p.lane, p.seq))[:batch_size]


def idempotency_key(channel_id: str, items: Sequence[tuple[str, int]]) -> str:
    """Deterministic per (channel, set of entity versions): a retry of the same batch carries the same
    key, so a receiver that already applied it can dedupe it."""
    digest = hashlib.sha256(channel_id.encode())
    for key, version in sorted(items):
        digest.update(b"\x00" + key.encode() + b"\x00" + str(version).encode())
    return digest.hexdigest()[:40]
