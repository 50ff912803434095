"""Property tests: the resolver (and the Pricer's effective-since and reference price) agrees with a
brute-force reference written directly from DESIGN §6."""

from __future__ import annotations

from dataclasses import replace
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
from retail_pricing.domain.pricer import Pricer, ProductInfo
from retail_pricing.domain.resolution import Outcome, applicable_entries, explain, pick_winner
from retail_pricing.domain.tax import Amounts, split_tax
from retail_pricing.domain.tax_rates import SINCE_ALWAYS, TaxRates

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


RATE_CHOICES = [Decimal("0.1"), Decimal("0.2"), Decimal("0.25")]


@st.composite
def rate_histories(draw: st.DrawFn) -> TaxRates:
    """A default and an R1 history with 0-2 changes each, on whole hours around the entries' windows."""

    def history(since_always: bool) -> list[tuple[datetime, Decimal]]:
        rows = [(SINCE_ALWAYS, draw(ids(RATE_CHOICES)))] if since_always else []
        for hour in draw(st.lists(st.integers(-2, 12), max_size=2, unique=True)):
            rows.append((BASE + hour * HOUR, draw(ids(RATE_CHOICES))))
        return rows

    rates = {("", "standard"): history(True)}
    if draw(st.booleans()):
        rates[("R1", "standard")] = history(draw(st.booleans()))
    return TaxRates(rates)


def brute_force_price(lists, entries, query, rates: TaxRates, hour: int) -> Amounts | None:
    """The price during [BASE + hour, BASE + hour + 1 h): every window and rate change is on a whole hour."""
    at = BASE + hour * HOUR
    winner_id = reference_winner(lists, entries, replace(query, at=at))
    if winner_id is None:
        return None
    entry = next(e for e in entries if e.entry_id == winner_id)
    location = LOCATIONS.get(query.location_id) if query.location_id else None
    region = (location.region_id if location else "") if query.location_id else query.region_id
    rate = rates.rate(region, "standard", at)
    return split_tax(entry.amount, lists[entry.price_list_id].tax_treatment, rate, query.currency)


@settings(max_examples=400, deadline=None)
@given(scenario(), rate_histories())
def test_pricer_matches_brute_force_effective_since_and_reference(case, rates: TaxRates) -> None:
    """Pricer.resolve (prepared entries, lone-candidate shortcut) against an hour-by-hour walk."""
    lists, entries, query = case
    pricer = Pricer(lists, LOCATIONS, rates)
    product = ProductInfo("SKU", True, "standard")
    hour = (query.at - BASE) // HOUR
    current = brute_force_price(lists, entries, query, rates, hour)
    for _ in range(2):  # the second call uses the prepared entries of the tuple
        resolved = pricer.resolve(query, product, tuple(entries))
        if current is None:
            assert resolved is None
            continue
        assert resolved is not None
        assert resolved.amounts == current
        since = hour
        while since > -20 and brute_force_price(lists, entries, query, rates, since - 1) == current:
            since -= 1
        assert resolved.effective_since == BASE + since * HOUR
        before = [brute_force_price(lists, entries, query, rates, h) for h in range(since - 30 * 24, since)]
        prices = [p for p in before if p is not None]
        expected = min(prices, key=lambda a: a.gross) if prices else None
        assert (resolved.reference.gross if resolved.reference else None) == (
            expected.gross if expected else None
        )
