"""Merge rules of stock snapshots and movements, and what a shortage does to reservations.

On-hand of a SKU/location is always `latest snapshot + Σ recorded movements that occurred after its
as-of` (or `Σ all movements` before the first snapshot), whatever order things arrive in:

- a movement is idempotent by id; it changes on-hand only if it occurred after the current as-of
  (otherwise the snapshot already counts it);
- a snapshot applies only if its as-of is strictly newer than the current one (an older or equal one
  is ignored), and then on-hand = its quantity + the recorded movements after its as-of.

A shortage (on-hand falling below the units held by reservations) cuts held units, newest reservation
first (LIFO: the newest are the least likely to be picked already), until reserved <= max(0, on-hand).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

__all__ = [
    "RecordedMovement",
    "movement_applies",
    "on_hand_after_snapshot",
    "shortage_cuts",
    "snapshot_applies",
]

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class RecordedMovement:
    occur_time: datetime
    delta: int


def movement_applies(current_as_of: datetime | None, occur_time: datetime) -> bool:
    return current_as_of is None or occur_time > current_as_of


def snapshot_applies(current_as_of: datetime | None, new_as_of: datetime) -> bool:
    return current_as_of is None or new_as_of > current_as_of


def on_hand_after_snapshot(quantity: int, as_of: datetime, movements: Iterable[RecordedMovement]) -> int:
    return quantity + sum(m.delta for m in movements if m.occur_time > as_of)


def shortage_cuts(
    held_newest_first: Sequence[tuple[K, int]], on_hand: int, reserved: int
) -> list[tuple[K, int]]:
    """Which held units to free so that reserved <= max(0, on_hand): [(line key, units cut)]."""
    excess = reserved - max(0, on_hand)
    cuts: list[tuple[K, int]] = []
    for key, held in held_newest_first:
        if excess <= 0:
            break
        cut = min(held, excess)
        if cut > 0:
            cuts.append((key, cut))
            excess -= cut
    return cuts
