"""The benchmarks `python -m bench` runs, and the row type they report.

To add one: write `async def run_x_bench() -> list[Row]` in bench/x.py and add ONE line to BENCHES:

    Bench("x", "bench.x:run_x_bench"),

Entries are imported lazily, so a bench that fails to import or run is reported as a failed row while
the others still run. A bench may return `Row`s or plain tuples `(name, figure, raw or None, target or
None)`; the target is a ratio to the raw figure when there is one, else an absolute floor (a name
containing "<=" marks a ceiling).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["BENCHES", "Bench", "BenchResult", "Row"]


@dataclass(frozen=True)
class Row:
    name: str
    figure: float
    unit: str = "/s"
    raw: float | None = None  # a raw baseline measured in the same run
    target: float | None = None  # ratio to `raw` when given, else an absolute figure
    note: str = ""
    ceiling: bool = False  # the target is an upper bound (e.g. a memory ratio)


BenchResult = Sequence[Row | tuple[str, float, float | None, float | None]]


@dataclass(frozen=True)
class Bench:
    name: str
    entry: str  # "module:function", an async function returning a BenchResult

    def load(self) -> Callable[[], Awaitable[BenchResult]]:
        import importlib

        module, _, function = self.entry.partition(":")
        loaded: Callable[[], Awaitable[BenchResult]] = getattr(importlib.import_module(module), function)
        return loaded


BENCHES: list[Bench] = [
    Bench("messaging", "bench.messaging:run_messaging_bench"),
    Bench("inventory", "bench.inventory_reservation:run_inventory_bench"),
    Bench("pricing", "bench.pricing_service:run_pricing_bench"),
    Bench("promotion", "bench.promotion_service:run_promotion_bench"),
    Bench("channel-gateway", "bench.channel_gateway:run_channel_gateway_bench"),
    Bench("campaign-fanout", "bench.campaign_fanout:run_campaign_fanout_bench"),
    Bench("runtime-overhead", "bench.runtime_overhead:run_runtime_overhead_bench"),
]
