"""Reservation state machine: golden transitions and a conservation property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retail_inventory.domain.reservation import (
    Line,
    LineQuantityError,
    NotActiveError,
    ReservationState,
    confirm,
    expire,
    release,
)

A = ReservationState.ACTIVE
LINES = [Line("a", "s-1", 3), Line("b", "s-1", 2)]


def test_confirm_all():
    lines, state, done = confirm(A, LINES, None, expired=False)
    assert state is ReservationState.CONFIRMED
    assert done == {0: 3, 1: 2}
    assert [line.held for line in lines] == [0, 0]


def test_partial_confirm_keeps_it_active_then_release_settles_confirmed():
    lines, state, done = confirm(A, LINES, [(0, 1)], expired=False)
    assert (state, done, [x.held for x in lines]) == (A, {0: 1}, [2, 2])
    lines, state, done = release(state, lines, None, expired=False)
    assert state is ReservationState.CONFIRMED
    assert done == {0: 2, 1: 2}
    assert [(x.confirmed, x.released) for x in lines] == [(1, 2), (0, 2)]


def test_release_all_is_released():
    _, state, _ = release(A, LINES, None, expired=False)
    assert state is ReservationState.RELEASED


@pytest.mark.parametrize(
    "state", [ReservationState.CONFIRMED, ReservationState.RELEASED, ReservationState.EXPIRED]
)
def test_final_states_refuse_confirm_and_release(state):
    with pytest.raises(NotActiveError):
        confirm(state, LINES, None, expired=False)
    with pytest.raises(NotActiveError):
        release(state, LINES, None, expired=False)


def test_past_expiry_refuses_even_before_the_sweep():
    with pytest.raises(NotActiveError) as caught:
        confirm(A, LINES, None, expired=True)
    assert caught.value.expired


@pytest.mark.parametrize(
    ("requested", "position"),
    [([(2, 1)], 0), ([(0, 4)], 0), ([(0, 1), (0, 1)], 1), ([(1, 0)], 0), ([(0, 1), (-1, 1)], 1)],
)
def test_bad_line_requests_name_their_position(requested, position):
    with pytest.raises(LineQuantityError) as caught:
        confirm(A, LINES, requested, expired=False)
    assert caught.value.position == position


def test_expire_frees_only_held_units():
    lines, _, _ = confirm(A, LINES, [(0, 1)], expired=False)
    expired, freed = expire(A, lines)
    assert freed == {0: 2, 1: 2}
    assert [(x.confirmed, x.released, x.held) for x in expired] == [(1, 2, 0), (0, 2, 0)]
    with pytest.raises(NotActiveError):
        expire(ReservationState.EXPIRED, expired)


ops = st.lists(
    st.tuples(
        st.sampled_from(["confirm", "release", "expire"]),
        st.one_of(st.none(), st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4)), max_size=3)),
    ),
    max_size=8,
)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), ops)
def test_units_are_conserved_and_state_matches_units(quantities, operations):
    lines = [Line("s", f"l{i}", q) for i, q in enumerate(quantities)]
    state = A
    for op, requested in operations:
        try:
            if op == "expire":
                lines, _ = expire(state, lines)
                state = ReservationState.EXPIRED
            else:
                fn = confirm if op == "confirm" else release
                lines, state, _ = fn(state, lines, requested, expired=False)
        except (NotActiveError, LineQuantityError):
            pass
        for line in lines:
            assert line.held >= 0
            assert line.held + line.confirmed + line.released == line.quantity
        holds = any(line.held for line in lines)
        assert holds == (state is A)
