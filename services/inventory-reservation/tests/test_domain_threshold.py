"""Threshold hysteresis: one announcement per real crossing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retail_inventory.domain.threshold import (
    AbsoluteRule,
    DaysOfCoverRule,
    ThresholdState,
    initial_state,
    next_state,
)

ABOVE, BELOW = ThresholdState.ABOVE, ThresholdState.BELOW


def flips(rule, series):
    state = initial_state(rule, series[0])
    out = []
    for value in series[1:]:
        new = next_state(rule, state, value)
        if new is not state:
            out.append((value, new))
        state = new
    return out


def test_hovering_around_the_mark_announces_each_real_crossing_once():
    rule = AbsoluteRule(below_quantity=10, restore_quantity=15)
    series = [12, 9, 11, 9, 10, 14, 15, 14, 12, 9, 8, 20]
    assert flips(rule, series) == [(9, BELOW), (15, ABOVE), (9, BELOW), (20, ABOVE)]


def test_without_hysteresis_each_crossing_flips():
    rule = AbsoluteRule(below_quantity=10, restore_quantity=10)
    assert flips(rule, [10, 9, 10, 9, 9, 10]) == [(9, BELOW), (10, ABOVE), (9, BELOW), (10, ABOVE)]


@pytest.mark.parametrize(
    ("ats", "low"),
    [(29, True), (30, False), (0, True)],
)
def test_days_of_cover_integer_arithmetic(ats, low):
    # 70 units over 7 days = 10/day; below 3 days of cover = below 30 units
    rule = DaysOfCoverRule(units_sold=70, period_days=7, below_days=3, restore_days=5)
    assert rule.is_low(ats) is low
    assert rule.is_restored(50)
    assert not rule.is_restored(49)


def test_days_of_cover_with_fractional_rate():
    # 10 units over 4 days = 2.5/day; 2 days of cover = 5 units
    rule = DaysOfCoverRule(units_sold=10, period_days=4, below_days=2, restore_days=2)
    assert rule.is_low(4)
    assert not rule.is_low(5)


@pytest.mark.parametrize("bad", [(0, 5), (5, 4)])
def test_absolute_rule_bounds(bad):
    with pytest.raises(ValueError, match="below_quantity"):
        AbsoluteRule(*bad)


@given(
    st.integers(1, 20),
    st.integers(0, 10),
    st.lists(st.integers(0, 40), min_size=1, max_size=60),
)
def test_flips_alternate_and_happen_only_past_the_marks(below, gap, series):
    rule = AbsoluteRule(below, below + gap)
    state = initial_state(rule, series[0])
    for value in series[1:]:
        new = next_state(rule, state, value)
        if new is not state:
            # a flip to BELOW only under the low mark, back only at or over the restore mark
            assert (new is BELOW and value < below) or (new is ABOVE and value >= below + gap)
        else:
            # no missed flip
            assert not (state is ABOVE and value < below)
            assert not (state is BELOW and value >= below + gap)
        state = new
