"""Optional py-spy sampling of service processes around a measured window (BENCH_PYSPY=<py-spy binary>,
BENCH_PYSPY_DIR=<output dir>, BENCH_PYSPY_ARGS=<py-spy options>, default --nonblocking): one
collapsed-stacks file per process, for flame graphs or grep."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = ["sampled"]


@contextmanager
def sampled(pids: Mapping[str, int], label: str) -> Iterator[None]:
    """Sample `pids` (name -> pid) while the block runs; a no-op unless BENCH_PYSPY is set."""
    binary = os.environ.get("BENCH_PYSPY")
    if not binary:
        yield
        return
    out = Path(os.environ.get("BENCH_PYSPY_DIR", "/tmp/bench-pyspy"))
    out.mkdir(parents=True, exist_ok=True)

    # --nonblocking does not pause the process; --native (C frames, e.g. the GC) needs pausing
    options = os.environ.get("BENCH_PYSPY_ARGS", "--nonblocking").split()

    def record(name: str, pid: int) -> list[str]:
        output = str(out / f"{label}-{name}.txt")
        return [
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "-o",
            output,
            *options,
        ]

    samplers = [
        subprocess.Popen(record(name, pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, pid in pids.items()
    ]
    try:
        yield
    finally:
        for sampler in samplers:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for sampler in samplers:
            sampler.wait(30)
