"""Property tests: the resolver agrees with a brute-force reference written directly from DESIGN §6."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from retail_pricing.domain.model import (
    DEFAULT_PRIORITY,
    AbsoluteWindow,
    ListKind,
    ListScope,
    Location,
    PriceEntry,
    PriceList,
    PriceQuery,
    TaxTreatment,
)
from retail_pricing.domain.resolution import Outcome, applicable_entries, explain, pick_winner

BASE = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
LOCATIONS = {"S1": Location("S1", "R1", "UTC"), "S2": Location("S2", "R2", "UTC")}

ids = st.sampled_from
scopes = st.builds(
    ListScope,
    channel_ids=st.frozensets(ids(["web", "app"]), max_size=2),
    region_ids=st.frozensets(ids(["R1", "R2"]), max_size=2),
    location_ids=st.frozensets(ids(["S1", "S2"]), max_size=2),
    customer_segment=ids(["", "", "gold"]),
)


@st.composite
def price_lists(draw: st.DrawFn) -> dict[str, PriceList]:
    count = draw(st.integers(1, 5))
    result = {}
    for i in range(count):
        result[f"L{i}"] = PriceList(
            f"L{i}",
            draw(ids(["EUR", "EUR", "EUR", "USD"])),
            draw(st.sampled_from(list(ListKind))),
            TaxTreatment.INCLUDED,
            draw(ids([0, 0, 0, 150, 200])),
            draw(scopes),
            draw(st.booleans() | st.just(True)),
        )
    return result


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[str, PriceList], list[PriceEntry], PriceQuery]:
    lists = draw(price_lists())
    entries = []
    for entry_id in draw(st.lists(st.integers(1, 60), min_size=0, max_size=12, unique=True)):
        start = draw(st.integers(0, 10))
        length = draw(st.none() | st.integers(1, 10))
        window = AbsoluteWindow(
            BASE + start * HOUR, None if length is None else BASE + (start + length) * HOUR
        )
        entries.append(
            PriceEntry(
                entry_id,
                draw(ids(sorted(lists))),
                "SKU",
                Decimal(draw(st.integers(0, 1000))) / 100,
                window,
                draw(ids([1, 1, 5, 10])),
            )
        )
    query = PriceQuery(
        sku="SKU",
        currency="EUR",
        at=BASE + draw(st.integers(0, 22)) * HOUR / 2,
        channel_id=draw(ids(["", "web", "app"])),
        location_id=draw(ids(["", "S1", "S2"])),
        region_id=draw(ids(["", "R1"])),
        customer_segment=draw(ids(["", "gold"])),
        quantity=draw(st.integers(1, 12)),
    )
    return lists, entries, query


def reference_winner(lists, entries, query) -> int | None:
    """Brute force, written independently: filter, then the candidate that beats every other one."""
    location = LOCATIONS.get(query.location_id) if query.location_id else None
    region = (location.region_id if location else "") if query.location_id else query.region_id

    def matches(e: PriceEntry) -> bool:
        pl = lists[e.price_list_id]
        s = pl.scope
        w = e.window
        return (
            pl.active
            and pl.currency == query.currency
            and (not s.channel_ids or query.channel_id in s.channel_ids)
            and (not s.region_ids or region in s.region_ids)
            and (not s.location_ids or query.location_id in s.location_ids)
            and (not s.customer_segment or s.customer_segment == query.customer_segment)
            and w.start <= query.at
            and (w.end is None or query.at < w.end)
            and e.min_quantity <= query.quantity
        )

    fitting = [e for e in entries if matches(e)]
    # Only the highest reached tier of each list.
    fitting = [
        e
        for e in fitting
        if not any(o.price_list_id == e.price_list_id and o.min_quantity > e.min_quantity for o in fitting)
    ]

    def prio(e: PriceEntry) -> int:
        pl = lists[e.price_list_id]
        return pl.priority if pl.priority else DEFAULT_PRIORITY[pl.kind]

    def level(e: PriceEntry) -> int:
        s = lists[e.price_list_id].scope
        if s.location_ids:
            return 3
        if s.region_ids:
            return 2
        if s.channel_ids:
            return 1
        return 0

    def beats(a: PriceEntry, b: PriceEntry) -> bool:
        if prio(a) != prio(b):
            return prio(a) > prio(b)
        if level(a) != level(b):
            return level(a) > level(b)
        seg_a = bool(lists[a.price_list_id].scope.customer_segment)
        seg_b = bool(lists[b.price_list_id].scope.customer_segment)
        if seg_a != seg_b:
            return seg_a
        if a.window.start != b.window.start:
            return a.window.start > b.window.start
        return a.entry_id < b.entry_id

    winners = [a for a in fitting if all(a is b or beats(a, b) for b in fitting)]
    assert len(winners) <= 1
    return winners[0].entry_id if winners else None


@settings(max_examples=400, deadline=None)
@given(scenario())
def test_resolver_matches_brute_force_reference(case) -> None:
    lists, entries, query = case
    location = LOCATIONS.get(query.location_id) if query.location_id else None
    expected = reference_winner(lists, entries, query)

    fast = pick_winner(applicable_entries(query, entries, lists, location), query.at, query.quantity)
    assert (fast.entry.entry_id if fast else None) == expected

    resolution = explain(query, entries, lists, location)
    assert (resolution.winner.entry.entry_id if resolution.winner else None) == expected
    # Explain accounts for every entry exactly once, with exactly one winner when there is a price.
    assert sorted(c.entry.entry_id for c in resolution.candidates) == sorted(e.entry_id for e in entries)
    winners = [c.entry.entry_id for c in resolution.candidates if c.outcome is Outcome.WINNER]
    assert winners == ([] if expected is None else [expected])


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_resolution_ignores_entry_order(case) -> None:
    lists, entries, query = case
    location = LOCATIONS.get(query.location_id) if query.location_id else None
    forward = explain(query, entries, lists, location)
    backward = explain(query, list(reversed(entries)), lists, location)
    assert forward.candidates == backward.candidates
