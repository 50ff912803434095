"""ATS formula: hand-written golden table plus properties (DESIGN.md §6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retail_inventory.domain.ats import Fence, Position, ats

F = Fence


# (on_hand, reserved_total, safety_stock, fences, channel_reserved, channel, ats, fenced_for_others)
GOLDEN = [
    # plain stock
    (100, 0, 0, {}, {}, "web", 100, 0),
    (100, 30, 0, {}, {"web": 30}, "web", 70, 0),
    (100, 30, 10, {}, {"web": 30}, "web", 60, 0),
    # the case: marketplace fence 20 fully reserved by the marketplace -> web sees 80
    (100, 20, 0, {"mkt": F(fixed=20)}, {"mkt": 20}, "web", 80, 0),
    # fence not reserved yet: web loses the unreserved part, the marketplace does not
    (100, 0, 0, {"mkt": F(fixed=20)}, {}, "web", 80, 20),
    (100, 0, 0, {"mkt": F(fixed=20)}, {}, "mkt", 100, 0),
    (100, 5, 0, {"mkt": F(fixed=20)}, {"mkt": 5}, "web", 80, 15),
    (100, 5, 0, {"mkt": F(fixed=20)}, {"mkt": 5}, "mkt", 95, 0),
    # reserved beyond the fence frees nothing more
    (100, 30, 0, {"mkt": F(fixed=20)}, {"mkt": 30}, "web", 70, 0),
    # others' reservations do not eat into a fence
    (100, 50, 0, {"mkt": F(fixed=20)}, {"web": 50}, "web", 30, 20),
    (100, 50, 0, {"mkt": F(fixed=20)}, {"web": 50}, "mkt", 50, 0),
    # share of on-hand, rounded down: 20% of 99 = 19.8 -> 19
    (99, 0, 0, {"mkt": F(share_bp=2000)}, {}, "web", 80, 19),
    (9, 0, 0, {"mkt": F(share_bp=1000)}, {}, "web", 9, 0),
    (10, 0, 0, {"mkt": F(share_bp=1000)}, {}, "web", 9, 1),
    # two fences, a third channel
    (100, 10, 5, {"mkt": F(fixed=20), "app": F(share_bp=1000)}, {"app": 10}, "web", 65, 20),
    (100, 10, 5, {"mkt": F(fixed=20), "app": F(share_bp=1000)}, {"app": 10}, "app", 65, 20),
    (100, 10, 5, {"mkt": F(fixed=20), "app": F(share_bp=1000)}, {"app": 10}, "mkt", 85, 0),
    # never negative
    (10, 10, 0, {}, {"web": 10}, "web", 0, 0),
    (10, 0, 20, {}, {}, "web", 0, 0),
    (10, 0, 0, {"mkt": F(fixed=50)}, {}, "web", 0, 50),
    # negative on-hand counts as zero, share fences on it are zero
    (-5, 0, 0, {"mkt": F(share_bp=5000)}, {}, "web", 0, 0),
    (0, 0, 0, {}, {}, "web", 0, 0),
]


@pytest.mark.parametrize(
    ("on_hand", "reserved", "safety", "fences", "by_channel", "channel", "expected", "others"), GOLDEN
)
def test_ats_golden(on_hand, reserved, safety, fences, by_channel, channel, expected, others):
    position = Position(on_hand, reserved, safety, fences, by_channel)
    result = ats(position, channel)
    assert result.available_to_sell == expected
    assert result.fenced_for_other_channels == others


def test_own_fence_and_reservations_are_reported():
    position = Position(100, 5, 0, {"mkt": F(fixed=20)}, {"mkt": 5})
    result = ats(position, "mkt")
    assert (result.channel_fence, result.channel_reserved) == (20, 5)


@pytest.mark.parametrize("bad", [{"fixed": -1}, {"share_bp": 10_001}, {}, {"fixed": 1, "share_bp": 1}])
def test_fence_rejects_bad_specs(bad):
    with pytest.raises(ValueError, match=r"fence|share"):
        Fence(**bad)


CHANNELS = ["web", "app", "mkt"]
fences = st.dictionaries(
    st.sampled_from(CHANNELS),
    st.one_of(
        st.builds(lambda n: Fence(fixed=n), st.integers(0, 60)),
        st.builds(lambda bp: Fence(share_bp=bp), st.integers(0, 10_000)),
    ),
)


@given(
    on_hand=st.integers(0, 200),
    safety=st.integers(0, 30),
    fences=fences,
    attempts=st.lists(st.tuples(st.sampled_from(CHANNELS), st.integers(1, 40)), max_size=30),
)
def test_reserving_within_ats_never_oversells_nor_breaks_fences(on_hand, safety, fences, attempts):
    """A sequence of reservations, each accepted only if within the channel's ATS at that moment."""
    reserved = dict.fromkeys(CHANNELS, 0)
    for channel, quantity in attempts:
        position = Position(on_hand, sum(reserved.values()), safety, fences, reserved)
        if quantity <= ats(position, channel).available_to_sell:
            reserved[channel] += quantity
        total = sum(reserved.values())
        assert total <= on_hand
        after = Position(on_hand, total, safety, fences, reserved)
        for c in CHANNELS:
            assert ats(after, c).available_to_sell >= 0
        # When safety stock and fences fit in on-hand, every channel keeps its unreserved fence.
        if safety + sum(f.units(on_hand) for f in fences.values()) <= on_hand:
            for c, fence in fences.items():
                assert ats(after, c).available_to_sell >= fence.units(on_hand) - reserved[c]


@given(
    on_hand=st.integers(-50, 500),
    reserved=st.integers(0, 500),
    safety=st.integers(0, 100),
    fences=fences,
    channel=st.sampled_from(CHANNELS),
)
def test_ats_is_bounded(on_hand, reserved, safety, fences, channel):
    position = Position(on_hand, reserved, safety, fences, {})
    value = ats(position, channel).available_to_sell
    assert 0 <= value <= max(0, on_hand - reserved - safety)
