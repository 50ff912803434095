"""Event payloads: AvailabilityChanged carries the domain formula's figure for every channel, with the
location's default fences overridden per channel by the position's own."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from retail_common.messaging import event_subject
from retail_inventory import events
from retail_inventory.domain.ats import Position, ats

CHANNELS = ["app", "mkt", "web"]
fence_maps = st.dictionaries(
    st.sampled_from(CHANNELS),
    st.one_of(
        st.builds(lambda n: {"fixed": n}, st.integers(0, 80)),
        st.builds(lambda bp: {"share_bp": bp}, st.integers(1, 10_000)),
    ),
)
rows = st.fixed_dictionaries(
    {
        "sku": st.just("A"),
        "location_id": st.just("s1"),
        "on_hand": st.integers(-20, 300),
        "reserved_total": st.integers(0, 20),
        "safety_stock": st.integers(0, 50),
        # None is how the repository returns an empty map
        "fences": st.one_of(st.none(), fence_maps),
        "default_fences": st.one_of(st.none(), fence_maps),
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
    # a position's own fence for a channel replaces the location's default for that channel
    effective = {**(row["default_fences"] or {}), **(row["fences"] or {})}
    position = Position(
        on_hand=row["on_hand"],
        reserved_total=row["reserved_total"],
        safety_stock=row["safety_stock"],
        fences={c: events.fence_from_json(f) for c, f in effective.items()},
        channel_reserved=row["channel_reserved"] or {},
    )
    expected = {
        c: ats(position, c).available_to_sell if row["active"] and c in row["channel_ids"] else 0
        for c in sorted(set(row["channel_ids"]) | set(effective))
    }
    assert {c.channel_id: c.available_to_sell for c in event.channels} == expected
    assert [c.channel_id for c in event.channels] == sorted(expected)
    assert event.version == 7
    assert event.change_time.ToDatetime(tzinfo=UTC) == row["updated_at"]


@given(
    st.sampled_from(["AvailabilityChanged", "ReservationChanged"]),
    st.lists(
        st.one_of(st.text(), st.text("AZaz09_-.% *>", max_size=6), st.sampled_from(["sku-00001", "A", ""])),
        min_size=1,
        max_size=3,
    ),
)
def test_subjects_are_event_subject_for_any_id(event, key):
    assert events.subject(event, *key) == event_subject("inventory", events.event_name(event), *key)
