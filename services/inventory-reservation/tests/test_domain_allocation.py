"""Allocation strategies and reservation planning: golden cases and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retail_inventory.domain.allocation import (
    Allocation,
    AllocationStrategy,
    Candidate,
    OutOfStockError,
    RequestLine,
    allocate,
    plan_reservation,
)

PRIO = AllocationStrategy.LOCATION_PRIORITY
MOST = AllocationStrategy.MOST_STOCK
CANDIDATES = [
    Candidate("dc-1", 5, 10),
    Candidate("s-1", 1, 3),
    Candidate("s-2", 1, 8),
    Candidate("s-3", 9, 0),
]


@pytest.mark.parametrize(
    ("quantity", "strategy", "split", "expected"),
    [
        (2, PRIO, False, [("s-1", 2)]),  # priority 1, ties by id: s-1 first
        (5, PRIO, False, [("s-2", 5)]),  # s-1 cannot cover it whole
        (9, PRIO, False, [("dc-1", 9)]),
        (11, PRIO, False, None),
        (11, PRIO, True, [("s-1", 3), ("s-2", 8)]),
        (15, PRIO, True, [("s-1", 3), ("s-2", 8), ("dc-1", 4)]),
        (21, PRIO, True, [("s-1", 3), ("s-2", 8), ("dc-1", 10)]),
        (22, PRIO, True, None),
        (2, MOST, False, [("dc-1", 2)]),
        (10, MOST, False, [("dc-1", 10)]),
        (12, MOST, True, [("dc-1", 10), ("s-2", 2)]),
        (12, MOST, False, None),
    ],
)
def test_allocate_golden(quantity, strategy, split, expected):
    assert allocate(CANDIDATES, quantity, strategy, split) == expected


def test_most_stock_ties_break_by_location_id():
    tied = [Candidate("b", 0, 5), Candidate("a", 9, 5)]
    assert allocate(tied, 1, MOST, False) == [("a", 1)]


def test_plan_lines_see_what_earlier_lines_consumed():
    available = {("sku", "s-1"): 3, ("sku", "s-2"): 8}
    region = {("sku", "r"): [Candidate("s-1", 1, 0), Candidate("s-2", 2, 0)]}
    lines = [
        RequestLine("sku", 4, region_id="r", allow_split=True),
        RequestLine("sku", 2, location_id="s-1"),  # explicit lines are planned first
    ]
    plan = plan_reservation(lines, available, region)
    assert plan == [
        Allocation(0, "sku", "s-1", 1),
        Allocation(0, "sku", "s-2", 3),
        Allocation(1, "sku", "s-1", 2),
    ]


def test_plan_names_the_first_line_that_cannot_be_covered():
    available = {("a", "s-1"): 3, ("b", "s-1"): 1}
    with pytest.raises(OutOfStockError) as caught:
        plan_reservation([RequestLine("a", 3, "s-1"), RequestLine("b", 2, "s-1")], available, {})
    assert (caught.value.request_line_index, caught.value.sku) == (1, "b")


def test_plan_unknown_position_is_out_of_stock():
    with pytest.raises(OutOfStockError):
        plan_reservation([RequestLine("a", 1, "nowhere")], {}, {})


candidates = st.lists(
    st.builds(Candidate, st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 3), st.integers(0, 20)),
    max_size=5,
    unique_by=lambda c: c.location_id,
)


@given(candidates, st.integers(1, 60), st.sampled_from([PRIO, MOST]), st.booleans())
def test_allocate_properties(cands, quantity, strategy, split):
    result = allocate(cands, quantity, strategy, split)
    available = {c.location_id: c.available for c in cands}
    if result is None:
        if split:
            assert sum(available.values()) < quantity
        else:
            assert all(a < quantity for a in available.values())
        return
    assert sum(units for _, units in result) == quantity
    assert all(0 < units <= available[loc] for loc, units in result)
    assert len({loc for loc, _ in result}) == len(result)
    if not split:
        assert len(result) == 1
