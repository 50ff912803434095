"""Snapshot/movement merge: any arrival order gives the same on-hand as the from-scratch reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from retail_inventory.domain.stock import (
    RecordedMovement,
    movement_applies,
    on_hand_after_snapshot,
    shortage_cuts,
    snapshot_applies,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def test_golden_snapshot_then_late_movement_and_older_snapshot():
    movements: dict[str, RecordedMovement] = {}
    as_of = None
    on_hand = 0
    # movement at t=5 (+10), snapshot at t=10 says 50 (contains it), movement at t=12 (-3)
    movements["m1"] = RecordedMovement(at(5), 10)
    on_hand += 10
    assert snapshot_applies(as_of, at(10))
    on_hand, as_of = on_hand_after_snapshot(50, at(10), movements.values()), at(10)
    assert on_hand == 50
    movements["m2"] = RecordedMovement(at(12), -3)
    assert movement_applies(as_of, at(12))
    on_hand -= 3
    # a late movement that happened before the snapshot is contained in it
    assert not movement_applies(as_of, at(9))
    # an older snapshot is ignored, an equal one too
    assert not snapshot_applies(as_of, at(8))
    assert not snapshot_applies(as_of, at(10))
    # a newer snapshot re-applies movements after its as-of (m2 at 12)
    assert on_hand_after_snapshot(40, at(11), movements.values()) == 37
    assert on_hand == 47


def test_shortage_cuts_newest_first():
    held = [("r3", 2), ("r2", 5), ("r1", 4)]
    assert shortage_cuts(held, on_hand=6, reserved=11) == [("r3", 2), ("r2", 3)]
    assert shortage_cuts(held, on_hand=-4, reserved=11) == [("r3", 2), ("r2", 5), ("r1", 4)]
    assert shortage_cuts(held, on_hand=11, reserved=11) == []


events = st.lists(
    st.one_of(
        st.tuples(st.just("snapshot"), st.integers(0, 100), st.integers(0, 200)),
        st.tuples(st.just("movement"), st.integers(0, 100), st.integers(-20, 20), st.integers(0, 15)),
    ),
    max_size=30,
)


@given(events)
def test_incremental_merge_equals_reference(events):
    # reference: the newest snapshot (unique as-of) plus every distinct movement after it
    snapshots: dict[int, int] = {}
    movements: dict[int, RecordedMovement] = {}
    # incremental, in arrival order, as the repository does it
    as_of = None
    on_hand = 0
    for event in events:
        if event[0] == "snapshot":
            _, minute, quantity = event
            if minute in snapshots:
                continue  # the reference needs unique as-ofs; equal ones are ignored anyway
            snapshots[minute] = quantity
            if snapshot_applies(as_of, at(minute)):
                on_hand, as_of = on_hand_after_snapshot(quantity, at(minute), movements.values()), at(minute)
        else:
            _, minute, delta, movement_id = event
            if movement_id in movements:
                continue  # duplicate id: no effect
            movements[movement_id] = RecordedMovement(at(minute), delta)
            if movement_applies(as_of, at(minute)):
                on_hand += delta
        if snapshots:
            newest = max(snapshots)
            after = [m.delta for m in movements.values() if m.occur_time > at(newest)]
            expected = snapshots[newest] + sum(after)
        else:
            expected = sum(m.delta for m in movements.values())
        assert on_hand == expected
