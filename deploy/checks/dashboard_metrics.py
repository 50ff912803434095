"""Check that every `retail_*` metric the Grafana dashboard queries is one the code exports.

Finds the suite's OpenTelemetry instruments in the source (create_counter(...), create_observable_gauge(...),
... with a literal name and unit), renders each through the real OpenTelemetry Prometheus exporter to
get the exact Prometheus name (dots -> underscores, unit suffix, _total for counters), and fails
listing any dashboard metric that none of them produces. Run by `make deploy-check`.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import REGISTRY, generate_latest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "libs" / "retail-common" / "src", *sorted((ROOT / "services").glob("*/src"))]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
KINDS = {
    *("create_counter", "create_up_down_counter", "create_histogram", "create_gauge"),
    *("create_observable_gauge", "create_observable_counter", "create_observable_up_down_counter"),
}


def instruments() -> Iterator[tuple[str, str, str]]:
    """(kind, name, unit) of every instrument created with a literal name outside tests."""
    for root in SOURCES:
        for path in root.rglob("*.py"):
            if "testing" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr not in KINDS or not node.args:
                    continue
                name = node.args[0]
                if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                    continue
                unit = next((k.value for k in node.keywords if k.arg == "unit"), None)
                unit_text = (
                    unit.value if isinstance(unit, ast.Constant) and isinstance(unit.value, str) else ""
                )
                yield node.func.attr, name.value, unit_text


def prometheus_names(found: list[tuple[str, str, str]]) -> set[str]:
    """The metric names the OpenTelemetry Prometheus exporter writes for these instruments."""
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("dashboard-check")

    def one(options: CallbackOptions) -> list[Observation]:
        return [Observation(1)]

    for kind, name, unit in found:
        if kind.startswith("create_observable"):
            getattr(meter, kind)(name, callbacks=[one], unit=unit)
        elif kind == "create_histogram":
            meter.create_histogram(name, unit=unit).record(1)
        elif kind == "create_gauge":
            meter.create_gauge(name, unit=unit).set(1)
        else:
            getattr(meter, kind)(name, unit=unit).add(1)
    text = generate_latest(REGISTRY).decode()  # the reader registers itself on the default registry
    provider.shutdown()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("retail_")}


def main() -> int:
    found = list(instruments())
    exported = prometheus_names(found)
    problems = []
    for dashboard in DASHBOARDS:
        exprs = [t["expr"] for p in json.loads(dashboard.read_text())["panels"] for t in p.get("targets", [])]
        used = {m for expr in exprs for m in re.findall(r"\bretail_[a-z0-9_]+", expr)}
        missing = sorted(used - exported)
        problems += [f"{dashboard.name}: {m} is exported by no instrument" for m in missing]
        if not missing:
            print(f"{dashboard.name}: all {len(used)} metrics it queries are exported")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems or not found else 0


if __name__ == "__main__":
    sys.exit(main())
