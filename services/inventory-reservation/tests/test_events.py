"""Event payloads: AvailabilityChanged carries the domain formula's figure for every channel."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from retail_inventory import events
from retail_inventory.domain.ats import ats

CHANNELS = ["app", "mkt", "web"]
rows = st.fixed_dictionaries(
    {
        "sku": st.just("A"),
        "location_id": st.just("s1"),
        "on_hand": st.integers(-20, 300),
        "reserved_total": st.integers(0, 20),
        "safety_stock": st.integers(0, 50),
        # None is how the repository returns an empty map
        "fences": st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(CHANNELS),
                st.one_of(
                    st.builds(lambda n: {"fixed": n}, st.integers(0, 80)),
                    st.builds(lambda bp: {"share_bp": bp}, st.integers(1, 10_000)),
                ),
            ),
        ),
        "channel_reserved": st.one_of(
            st.none(), st.dictionaries(st.sampled_from(CHANNELS), st.integers(1, 5))
        ),
        "channel_ids": st.lists(st.sampled_from(CHANNELS), unique=True),
        "active": st.booleans(),
        "updated_at": st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    }
)


@given(rows)
def test_availability_changed_matches_formula(row):
    event = events.availability_changed(row, 7)  # type: ignore[arg-type]
    position = events.position_of(row)  # type: ignore[arg-type]
    expected = {
        c: ats(position, c).available_to_sell if row["active"] and c in row["channel_ids"] else 0
        for c in sorted(set(row["channel_ids"]) | set(row["fences"] or {}))
    }
    assert {c.channel_id: c.available_to_sell for c in event.channels} == expected
    assert [c.channel_id for c in event.channels] == sorted(expected)
    assert event.version == 7
    assert event.change_time.ToDatetime(tzinfo=UTC) == row["updated_at"]
