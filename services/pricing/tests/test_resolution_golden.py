"""Hand-written golden tables for price precedence (DESIGN §6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from retail_pricing.domain.model import (
    AbsoluteWindow,
    ListKind,
    ListScope,
    LocalWindow,
    Location,
    PriceEntry,
    PriceList,
    PriceQuery,
    TaxTreatment,
)
from retail_pricing.domain.resolution import Outcome, explain

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ALWAYS = AbsoluteWindow(T0 - 365 * DAY)


def plist(list_id: str, kind: ListKind = ListKind.BASE, priority: int = 0, **scope: Any) -> PriceList:
    return PriceList(
        list_id,
        "EUR",
        kind,
        TaxTreatment.INCLUDED,
        priority,
        ListScope(
            channel_ids=frozenset(scope.get("channels", ())),
            region_ids=frozenset(scope.get("regions", ())),
            location_ids=frozenset(scope.get("locations", ())),
            customer_segment=str(scope.get("segment", "")),
        ),
        active=bool(scope.get("active", True)),
    )


LISTS = {
    pl.price_list_id: pl
    for pl in [
        plist("base"),
        plist("base-web", channels=["web"]),
        plist("base-r1", regions=["R1"]),
        plist("base-s1", locations=["S1"]),
        plist("base-gold", segment="gold"),
        plist("base-web-gold", channels=["web"], segment="gold"),
        plist("markdown", ListKind.MARKDOWN),
        plist("clearance-web", ListKind.CLEARANCE, channels=["web"]),
        plist("base-prio250", ListKind.BASE, priority=250),
        plist("inactive-clearance", ListKind.CLEARANCE, active=False),
        plist("usd", ListKind.CLEARANCE),
    ]
}
LISTS["usd"] = PriceList("usd", "USD", ListKind.CLEARANCE, TaxTreatment.INCLUDED)

LOCATIONS = {
    "S1": Location("S1", "R1", "Europe/Berlin"),
    "S2": Location("S2", "R2", "America/New_York"),
}


def entry(entry_id: int, list_id: str, amount: str = "1", window=ALWAYS, min_quantity: int = 1) -> PriceEntry:
    return PriceEntry(entry_id, list_id, "SKU", Decimal(amount), window, min_quantity)


def query(at: datetime = T0, **kwargs: Any) -> PriceQuery:
    return PriceQuery(sku="SKU", currency="EUR", at=at, **kwargs)


# (case, entries, query, expected winner entry id or None)
PRECEDENCE = [
    ("only base", [entry(1, "base")], query(), 1),
    ("markdown beats base", [entry(1, "base"), entry(2, "markdown")], query(), 2),
    (
        "priority beats specificity: global markdown over location base",
        [entry(1, "base-s1"), entry(2, "markdown")],
        query(location_id="S1"),
        2,
    ),
    (
        "clearance beats markdown",
        [entry(1, "markdown"), entry(2, "clearance-web")],
        query(channel_id="web"),
        2,
    ),
    (
        "clearance scoped to another channel does not apply",
        [entry(1, "markdown"), entry(2, "clearance-web")],
        query(channel_id="app"),
        1,
    ),
    (
        "explicit priority 250 beats markdown 200",
        [entry(1, "markdown"), entry(2, "base-prio250")],
        query(),
        2,
    ),
    ("location > region", [entry(1, "base-r1"), entry(2, "base-s1")], query(location_id="S1"), 2),
    (
        "region > channel",
        [entry(1, "base-web"), entry(2, "base-r1")],
        query(channel_id="web", location_id="S1"),
        2,
    ),
    ("channel > global", [entry(1, "base"), entry(2, "base-web")], query(channel_id="web"), 2),
    ("region from location replica", [entry(1, "base"), entry(2, "base-r1")], query(location_id="S2"), 1),
    (
        "region from request without location",
        [entry(1, "base"), entry(2, "base-r1")],
        query(region_id="R1"),
        2,
    ),
    (
        "segment beats no segment at global level",
        [entry(1, "base"), entry(2, "base-gold")],
        query(customer_segment="gold"),
        2,
    ),
    ("segment list needs the segment", [entry(1, "base"), entry(2, "base-gold")], query(), 1),
    (
        "channel+segment beats channel",
        [entry(1, "base-web"), entry(2, "base-web-gold")],
        query(channel_id="web", customer_segment="gold"),
        2,
    ),
    (
        "channel without segment beats global with segment (level first)",
        [entry(1, "base-gold"), entry(2, "base-web")],
        query(channel_id="web", customer_segment="gold"),
        2,
    ),
    (
        "latest valid_from wins at equal priority and scope",
        [
            entry(1, "base", window=AbsoluteWindow(T0 - 10 * DAY)),
            entry(2, "base", window=AbsoluteWindow(T0 - DAY)),
        ],
        query(),
        2,
    ),
    (
        "lowest entry id breaks a full tie",
        [entry(7, "base"), entry(3, "base")],
        query(),
        3,
    ),
    ("inactive list ignored", [entry(1, "base"), entry(2, "inactive-clearance")], query(), 1),
    ("other currency ignored", [entry(1, "base"), entry(2, "usd")], query(), 1),
    (
        "tier 10 reached by quantity 12",
        [entry(1, "base"), entry(2, "base", min_quantity=10)],
        query(quantity=12),
        2,
    ),
    ("tier 10 not reached by 9", [entry(1, "base"), entry(2, "base", min_quantity=10)], query(quantity=9), 1),
    (
        "higher tier of a lower-priority list loses to markdown",
        [entry(1, "base", min_quantity=10), entry(2, "markdown")],
        query(quantity=12),
        2,
    ),
    (
        "window start is inside (half-open)",
        [entry(1, "base"), entry(2, "markdown", window=AbsoluteWindow(T0, T0 + DAY))],
        query(at=T0),
        2,
    ),
    (
        "window end is outside (half-open)",
        [entry(1, "base"), entry(2, "markdown", window=AbsoluteWindow(T0 - DAY, T0))],
        query(at=T0),
        1,
    ),
    (
        "last microsecond before the end is inside",
        [entry(1, "base"), entry(2, "markdown", window=AbsoluteWindow(T0 - DAY, T0))],
        query(at=T0 - timedelta(microseconds=1)),
        2,
    ),
    ("nothing applies", [entry(1, "usd")], query(), None),
]


@pytest.mark.parametrize(("case", "entries", "q", "expected"), PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_precedence_golden_table(case, entries, q, expected) -> None:
    resolution = explain(q, entries, LISTS, LOCATIONS.get(q.location_id))
    winner = resolution.winner.entry.entry_id if resolution.winner else None
    assert winner == expected, case
    winners = [c.entry.entry_id for c in resolution.candidates if c.outcome is Outcome.WINNER]
    assert winners == ([] if expected is None else [expected])
    assert sorted(c.entry.entry_id for c in resolution.candidates) == sorted(e.entry_id for e in entries)


EXPLAIN = [
    ([entry(1, "base"), entry(2, "markdown")], query(), {1: Outcome.LOWER_PRIORITY, 2: Outcome.WINNER}),
    ([entry(1, "base"), entry(2, "base-web")], query(channel_id="web"), {1: Outcome.LESS_SPECIFIC_SCOPE}),
    ([entry(1, "base-web")], query(channel_id="app"), {1: Outcome.CHANNEL_MISMATCH}),
    ([entry(1, "base-r1")], query(location_id="S2"), {1: Outcome.REGION_MISMATCH}),
    ([entry(1, "base-s1")], query(location_id="S2"), {1: Outcome.LOCATION_MISMATCH}),
    ([entry(1, "base-gold")], query(customer_segment="silver"), {1: Outcome.SEGMENT_MISMATCH}),
    ([entry(1, "inactive-clearance")], query(), {1: Outcome.LIST_INACTIVE}),
    ([entry(1, "usd")], query(), {1: Outcome.CURRENCY_MISMATCH}),
    ([entry(1, "base", window=AbsoluteWindow(T0 + DAY))], query(), {1: Outcome.OUTSIDE_WINDOW}),
    ([entry(1, "base", min_quantity=5)], query(quantity=2), {1: Outcome.BELOW_TIER}),
    (
        [entry(1, "base"), entry(2, "base", min_quantity=5)],
        query(quantity=6),
        {1: Outcome.HIGHER_TIER_APPLIES, 2: Outcome.WINNER},
    ),
    (
        [
            entry(1, "base", window=AbsoluteWindow(T0 - 2 * DAY)),
            entry(2, "base", window=AbsoluteWindow(T0 - DAY)),
        ],
        query(),
        {1: Outcome.EARLIER_START},
    ),
    ([entry(5, "base"), entry(4, "base")], query(), {5: Outcome.HIGHER_ENTRY_ID, 4: Outcome.WINNER}),
    ([entry(1, "base", window=LocalWindow(datetime(2026, 1, 1)))], query(), {1: Outcome.NO_TIME_ZONE}),
]


@pytest.mark.parametrize(("entries", "q", "outcomes"), EXPLAIN)
def test_explain_names_the_rule_that_removed_each_candidate(entries, q, outcomes) -> None:
    resolution = explain(q, entries, LISTS, LOCATIONS.get(q.location_id))
    got = {c.entry.entry_id: c.outcome for c in resolution.candidates}
    for entry_id, outcome in outcomes.items():
        assert got[entry_id] is outcome


# A weekend markdown as a local window "Sunday 02:30 to Monday 00:00" in every store. In Berlin, 2026-03-29
# 02:30 does not exist (clocks jump 02:00 CET -> 03:00 CEST): it starts at 03:30 CEST = 01:30 UTC. The end
# Monday 00:00 CEST = Sunday 22:00 UTC. New York is already on EDT (-4) since 2026-03-08.
DST_WINDOW = LocalWindow(datetime(2026, 3, 29, 2, 30), datetime(2026, 3, 30, 0, 0))
DST_CASES = [
    ("S1", datetime(2026, 3, 29, 1, 29, 59, 999999, tzinfo=UTC), 1),
    ("S1", datetime(2026, 3, 29, 1, 30, tzinfo=UTC), 2),
    ("S1", datetime(2026, 3, 29, 21, 59, 59, tzinfo=UTC), 2),
    ("S1", datetime(2026, 3, 29, 22, 0, tzinfo=UTC), 1),
    ("S2", datetime(2026, 3, 29, 6, 29, 59, tzinfo=UTC), 1),
    ("S2", datetime(2026, 3, 29, 6, 30, tzinfo=UTC), 2),  # 02:30 EDT
    ("S2", datetime(2026, 3, 30, 3, 59, 59, tzinfo=UTC), 2),
    ("S2", datetime(2026, 3, 30, 4, 0, tzinfo=UTC), 1),  # Monday 00:00 EDT
]


@pytest.mark.parametrize(("location", "at", "expected"), DST_CASES)
def test_local_window_across_spring_forward_per_store_zone(location, at, expected) -> None:
    entries = [entry(1, "base"), entry(2, "markdown", window=DST_WINDOW)]
    resolution = explain(query(at=at, location_id=location), entries, LISTS, LOCATIONS[location])
    assert resolution.winner is not None
    assert resolution.winner.entry.entry_id == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # 2026-10-25 02:30 occurs twice in Berlin; the window starts at the first (CEST, 00:30 UTC).
        (datetime(2026, 10, 25, 0, 29, 59, tzinfo=UTC), 1),
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 2),
    ],
)
def test_local_window_start_in_fall_back_hour_is_first_occurrence(at, expected) -> None:
    window = LocalWindow(datetime(2026, 10, 25, 2, 30))
    entries = [entry(1, "base"), entry(2, "markdown", window=window)]
    resolution = explain(query(at=at, location_id="S1"), entries, LISTS, LOCATIONS["S1"])
    assert resolution.winner is not None
    assert resolution.winner.entry.entry_id == expected
