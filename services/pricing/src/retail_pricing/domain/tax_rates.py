"""Effective-dated tax rates: per (region, tax class) a history of rates, each from its start on."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

__all__ = ["SINCE_ALWAYS", "RateTimeline", "TaxRates"]

# The start of a rate in effect at every earlier instant (rows from before effective dating).
SINCE_ALWAYS = datetime.min.replace(tzinfo=UTC)

Key = tuple[str, str]  # (region id, tax class)


@dataclass(frozen=True)
class RateTimeline:
    """The rate applied to one (region, tax class) over time, default fallback included: rates[i]
    holds from starts[i] (inclusive) to starts[i + 1]; starts[0] is SINCE_ALWAYS; no two neighbours
    are equal, so every later start is an instant at which prices actually move."""

    starts: tuple[datetime, ...]
    rates: tuple[Decimal, ...]

    def at(self, instant: datetime) -> Decimal:
        if len(self.rates) == 1:  # the common case: one rate for ever
            return self.rates[0]
        return self.rates[bisect.bisect_right(self.starts, instant) - 1]

    @property
    def changes(self) -> tuple[datetime, ...]:
        return self.starts[1:]


def _own_at(history: list[tuple[datetime, Decimal]], instant: datetime) -> Decimal | None:
    """The rate of one key's own history at `instant`, None before its first start."""
    i = bisect.bisect_right(history, instant, key=lambda row: row[0])
    return history[i - 1][1] if i else None


class TaxRates:
    """A consistent snapshot of every key's history; timelines are derived once per key and kept."""

    def __init__(self, history: Mapping[Key, Iterable[tuple[datetime, Decimal]]]) -> None:
        self._history = {key: sorted(rows) for key, rows in history.items()}
        self._timelines: dict[Key, RateTimeline] = {}

    @classmethod
    def constant(cls, rates: Mapping[Key, Decimal]) -> TaxRates:
        """Rates without history (each in effect at every instant)."""
        return cls({key: [(SINCE_ALWAYS, rate)] for key, rate in rates.items()})

    def timeline(self, region_id: str, tax_class: str) -> RateTimeline:
        key = (region_id, tax_class)
        timeline = self._timelines.get(key)
        if timeline is None:
            timeline = self._timelines[key] = self._derive(region_id, tax_class)
        return timeline

    def _derive(self, region_id: str, tax_class: str) -> RateTimeline:
        own = self._history.get((region_id, tax_class), [])
        default = self._history.get(("", tax_class), []) if region_id else []
        points = sorted({SINCE_ALWAYS, *(s for s, _ in own), *(s for s, _ in default)})
        starts: list[datetime] = []
        rates: list[Decimal] = []
        for point in points:
            rate = _own_at(own, point)
            if rate is None:  # the key has no rate (yet) at this instant: the class default applies
                rate = _own_at(default, point)
            rate = Decimal(0) if rate is None else rate
            if not rates or rates[-1] != rate:
                starts.append(point)
                rates.append(rate)
        return RateTimeline(tuple(starts), tuple(rates))

    def rate(self, region_id: str, tax_class: str, at: datetime) -> Decimal:
        """The rate of (region, tax class) at `at`, else the class default at `at`, else 0."""
        return self.timeline(region_id, tax_class).at(at)
