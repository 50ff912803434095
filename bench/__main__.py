"""`python -m bench [NAME ...]`: every registered benchmark (bench/registry.py), one table.

Each figure is printed beside the raw baseline measured in the same run, the ratio and its target. The
machine's load average is printed before and after: on a shared machine, compare ratios, not figures.
`--list` names the registered benches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from bench.registry import BENCHES, Bench, BenchResult, Row


def as_rows(bench: str, result: BenchResult) -> list[Row]:
    rows: list[Row] = []
    for item in result:
        if isinstance(item, Row):
            rows.append(item)
        else:
            name, figure, raw, target = item
            # Plain tuples carry their unit in the name; "(<= target)" marks a ceiling.
            rows.append(Row(name, figure, "", raw=raw, target=target, ceiling="<=" in name))
    return [Row(f"{bench}: {r.name}", r.figure, r.unit, r.raw, r.target, r.note, r.ceiling) for r in rows]


async def run_one(bench: Bench) -> list[Row]:
    started = time.perf_counter()
    try:
        rows = as_rows(bench.name, await bench.load()())
    except Exception as exc:  # one broken bench must not hide the others' figures
        logging.exception("bench %s failed", bench.name)
        return [Row(f"{bench.name}: FAILED", float("nan"), "", note=f"{type(exc).__name__}: {exc}"[:120])]
    print(f"  {bench.name}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return rows


def _number(value: float, unit: str) -> str:
    if value != value:  # nan
        return "-"
    text = f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text}{unit}"


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" if abs(ratio) >= 0.1 else f"{ratio:.2g}"  # 0.00013, not 0.00


def format_table(rows: list[Row]) -> str:
    header = ("benchmark", "figure", "raw baseline", "ratio", "target", "note")
    lines = [header]
    for r in rows:
        ratio = r.figure / r.raw if r.raw else None
        measured = r.figure if ratio is None else ratio
        if r.target is None:
            target, verdict = "", ""
        else:
            target = f"{'<=' if r.ceiling else '>='}{r.target:g}"
            met = measured <= r.target if r.ceiling else measured >= r.target
            verdict = " ok" if met else " MISSED"
        lines.append(
            (
                r.name,
                _number(r.figure, r.unit),
                _number(r.raw, r.unit) if r.raw else "-",
                _ratio(ratio),
                target + verdict,
                r.note,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for n, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:-1], widths[1:], strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


async def main(names: list[str]) -> int:
    unknown = set(names) - {b.name for b in BENCHES}
    if unknown:
        print(f"unknown bench(es): {', '.join(sorted(unknown))}; see --list", file=sys.stderr)
        return 2
    chosen = [b for b in BENCHES if not names or b.name in names]
    print(f"before: {_load()} ({os.cpu_count()} cpus)", file=sys.stderr)
    rows: list[Row] = []
    for bench in chosen:
        done = await run_one(bench)
        print(format_table(done), file=sys.stderr, flush=True)  # in case a later bench never finishes
        rows.extend(done)
    print()
    print(format_table(rows))
    print(f"after: {_load()}")
    return 1 if any(r.name.endswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    if "--list" in sys.argv[1:]:
        print("\n".join(f"{b.name:<12} {b.entry}" for b in BENCHES))
        sys.exit(0)
    sys.exit(asyncio.run(main(sys.argv[1:])))
