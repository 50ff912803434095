"""Local windows resolve per location time zone across DST (RFC 5545 / zoneinfo fold=0)."""

from __future__ import annotations

from datetime import UTC, datetime

from retail_promotion.domain.windows import Window, local_instant


def test_skipped_wall_time_is_read_with_the_offset_before_the_gap() -> None:
    # 2026-03-29 02:30 does not exist in Berlin (02:00 -> 03:00): read at +01:00, i.e. 03:30 local
    assert local_instant(datetime(2026, 3, 29, 2, 30), "Europe/Berlin") == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )


def test_repeated_wall_time_is_its_first_occurrence() -> None:
    # 2026-10-25 02:30 happens twice in Berlin: the first is at +02:00
    assert local_instant(datetime(2026, 10, 25, 2, 30), "Europe/Berlin") == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_a_local_weekend_window_covers_different_instants_per_zone_and_is_half_open() -> None:
    weekend = Window(datetime(2026, 3, 28), datetime(2026, 3, 30), local=True)  # across the DST change
    berlin_start, berlin_end = weekend.bounds("Europe/Berlin") or (None, None)
    assert berlin_start == datetime(2026, 3, 27, 23, 0, tzinfo=UTC)
    assert berlin_end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # Monday 00:00 at +02:00
    assert weekend.contains(datetime(2026, 3, 29, 21, 59, 59, tzinfo=UTC), "Europe/Berlin")
    assert not weekend.contains(datetime(2026, 3, 29, 22, 0, tzinfo=UTC), "Europe/Berlin")
    assert weekend.contains(datetime(2026, 3, 30, 3, 59, tzinfo=UTC), "America/New_York")
    assert not weekend.contains(datetime(2026, 3, 28, 3, 59, tzinfo=UTC), "America/New_York")
    assert not weekend.contains(datetime(2026, 3, 28, 12, tzinfo=UTC), None)  # no zone, no local window
