"""Deployment ledger rules: per-target state from the gateway's delivery and health events, the
overall deployment state and the remediation tasks (DeploymentState on retail.promotion.v1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

__all__ = [
    "Delivery",
    "Overall",
    "Remediation",
    "Summary",
    "Target",
    "TargetState",
    "apply_delivery",
    "effective_state",
    "overall",
    "remediations",
    "summaries",
]


class TargetState(Enum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    FAILED = "FAILED"
    SUSPENDED = "SUSPENDED"


class Delivery(Enum):
    """What the gateway reports (DeliveryStateChanged.state)."""

    DELIVERED = "DELIVERED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    DEAD_LETTERED = "DEAD_LETTERED"


class Overall(Enum):
    PENDING = "PENDING"
    DEPLOYED = "DEPLOYED"
    PARTIALLY_DEPLOYED = "PARTIALLY_DEPLOYED"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"


_RANK = {Delivery.DEAD_LETTERED: 1, Delivery.DELIVERED: 2, Delivery.ACKNOWLEDGED: 3}


@dataclass(frozen=True, slots=True)
class Target:
    channel_id: str
    location_id: str = ""
    version: int = 0  # campaign version the last delivery event was about
    delivery: Delivery | None = None
    degraded: bool = False  # channel health DEGRADED (breaker open)
    error: str = ""
    # When the ledger row last changed (shown on the board, not part of the target's state).
    updated_at: datetime | None = field(default=None, compare=False)


def apply_delivery(target: Target, delivery: Delivery, version: int, detail: str = "") -> Target:
    """Apply a delivery event if it is newer (higher version, or same version and further along:
    a replay's DELIVERED after DEAD_LETTERED counts). Older or equal events change nothing."""
    current = (target.version, _RANK[target.delivery] if target.delivery else 0)
    if (version, _RANK[delivery]) <= current:
        return target
    error = detail if delivery is Delivery.DEAD_LETTERED else ""
    return replace(target, version=version, delivery=delivery, error=error)


def effective_state(target: Target, campaign_version: int) -> TargetState:
    if target.degraded:
        return TargetState.SUSPENDED
    if target.delivery is Delivery.DEAD_LETTERED:
        return TargetState.FAILED
    if target.delivery is None or target.version < campaign_version:
        return TargetState.PENDING
    return TargetState.ACKNOWLEDGED if target.delivery is Delivery.ACKNOWLEDGED else TargetState.DELIVERED


def overall(states: Sequence[TargetState], *, rolled_back: bool = False) -> Overall:
    if rolled_back:
        return Overall.ROLLED_BACK
    live = {TargetState.DELIVERED, TargetState.ACKNOWLEDGED}
    bad = {TargetState.FAILED, TargetState.SUSPENDED}
    if not states:
        return Overall.PENDING
    if all(s in bad for s in states):
        return Overall.FAILED
    if all(s in live for s in states):
        return Overall.DEPLOYED
    if any(s in bad for s in states) and any(s in live for s in states):
        return Overall.PARTIALLY_DEPLOYED
    return Overall.PENDING


@dataclass(frozen=True, slots=True)
class Remediation:
    channel_id: str
    location_id: str
    action: str  # REPLAY_DELIVERY | RESTORE_CHANNEL
    description: str


def _where(t: Target) -> str:
    return f"{t.channel_id} at store {t.location_id}" if t.location_id else t.channel_id


def remediations(targets: Sequence[Target], campaign_version: int) -> list[Remediation]:
    out = []
    for t in sorted(targets, key=lambda t: (t.channel_id, t.location_id)):
        state = effective_state(t, campaign_version)
        if state is TargetState.SUSPENDED:
            out.append(
                Remediation(
                    t.channel_id,
                    t.location_id,
                    "RESTORE_CHANNEL",
                    f"channel {t.channel_id} is degraded; the offer stays suspended there until it recovers",
                )
            )
        elif state is TargetState.FAILED:
            out.append(
                Remediation(
                    t.channel_id,
                    t.location_id,
                    "REPLAY_DELIVERY",
                    f"replay the dead-lettered delivery of version {t.version} to {_where(t)}"
                    + (f" ({t.error})" if t.error else ""),
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class Summary:
    """Per channel: how many of its targets are in each state (per_location: tracked per store)."""

    channel_id: str
    per_location: bool
    counts: dict[TargetState, int]


def summaries(targets: Sequence[Target], campaign_version: int) -> list[Summary]:
    by_channel: dict[str, Summary] = {}
    for t in targets:
        summary = by_channel.setdefault(
            t.channel_id, Summary(t.channel_id, False, {state: 0 for state in TargetState})
        )
        if t.location_id and not summary.per_location:
            summary = by_channel[t.channel_id] = replace(summary, per_location=True)
        summary.counts[effective_state(t, campaign_version)] += 1
    return [by_channel[c] for c in sorted(by_channel)]
