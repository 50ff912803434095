"""Which channels a domain change concerns, by their served locations and their assortment."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from retail_channel_gateway.domain.changes import ChangeKind, DomainChange

__all__ = ["ChannelScope", "concerned_channels"]

# Assortment membership is asked per (channel, sku) so callers can back it with a set or with SQL.
InAssortment = Callable[[str, str], bool]


@dataclass(frozen=True)
class ChannelScope:
    channel_id: str
    location_ids: frozenset[str]
    change_kinds: frozenset[ChangeKind]  # empty = all
    active: bool = True

    def wants(self, kind: ChangeKind) -> bool:
        return not self.change_kinds or kind in self.change_kinds


def _location_ok(change: DomainChange, scope: ChannelScope) -> bool:
    if change.location_id is not None:
        return change.location_id in scope.location_ids
    if change.location_ids:
        return not scope.location_ids.isdisjoint(change.location_ids)
    return True


def _assortment_ok(change: DomainChange, scope: ChannelScope, listed: InAssortment) -> bool:
    if change.sku is not None:
        return listed(scope.channel_id, change.sku)
    if change.skus:
        return any(listed(scope.channel_id, sku) for sku in change.skus)
    return True


def concerned_channels(
    change: DomainChange, channels: Iterable[ChannelScope], listed: InAssortment
) -> list[str]:
    """Ids of the active channels the change must be delivered to, sorted.

    A change is for a channel when the channel takes its kind, the change is not addressed to another
    channel, its location (if any) is one the channel serves, and its SKU (if any) is in the channel's
    assortment. A location change goes to the channels serving that location.
    """
    out = []
    for scope in channels:
        if not scope.active or not scope.wants(change.kind):
            continue
        if change.channel_id is not None and change.channel_id != scope.channel_id:
            continue
        if change.channel_ids and scope.channel_id not in change.channel_ids:
            continue
        if not _location_ok(change, scope) or not _assortment_ok(change, scope, listed):
            continue
        out.append(scope.channel_id)
    return sorted(out)
