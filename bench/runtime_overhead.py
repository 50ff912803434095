"""The shared gRPC runtime's per-call tax: an empty unary RPC served through our real bootstrap vs a bare
grpc.aio echo, same client, same run.

"Ours" is the probe service (`retail_common.testing.probe`, built on `run_service` alone) answering
WhoAmI: no database, no I/O, so what it costs beyond the echo is the runtime itself: the OTel server
span, call context + request log, error mapping, deadline and auth interceptors, health and reflection
registered. Three configurations, each its own process:

- default: LOG_LEVEL=INFO (one JSON request log line per call, to the process's log file) and the OTel
  SDK as `setup_telemetry` sets it up without an OTLP endpoint (a real TracerProvider, no exporter);
- warning: the same tracing, LOG_LEVEL=WARNING (no request log line), as the pricing and inventory
  benches run their services;
- quiet: LOG_LEVEL=WARNING and OTEL_SDK_DISABLED=true (interceptors and auth only), as the gateway
  bench runs its services.

Both are called with the same raw channel and the same bytes (an empty WhoAmIRequest, which the echo
returns unchanged), carrying the bearer key. Rounds alternate echo and the three configurations so
load drifts hit all alike. Besides calls/s, the server processes' CPU time (utime + stime from /proc)
per call is reported: it is the cost per call itself, less sensitive to the client's share of the
2 cores.

Knobs: BENCH_CONCURRENCY (16), BENCH_SECONDS (3, per round), BENCH_RUNTIME_ROUNDS (3); BENCH_PYSPY
(bench/_pyspy.py) samples each server during its rounds.
Run alone: `python -m bench.runtime_overhead`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench._pyspy import sampled
from bench.raw_grpc_echo import ECHO_METHOD, start_echo
from bench.registry import Row
from retail.testing.v1 import probe_pb2
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.testing import NatsServer
from retail_common.testing.postgres import locate_postgres
from retail_common.testing.process import ServiceProcess

__all__ = ["cpu_seconds", "run_runtime_overhead_bench"]

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_RUNTIME_ROUNDS", "3"))
WHO_AM_I = "/retail.testing.v1.ProbeService/WhoAmI"
_TICK = os.sysconf("SC_CLK_TCK")

# Without an OTLP endpoint or with these unset, setup_telemetry's default is a TracerProvider without
# exporter; make sure the bench's own environment does not change that for the "default" process.
_OTEL_OVERRIDES = {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}
CONFIGS: dict[str, dict[str, str]] = {
    "default": {"LOG_LEVEL": "INFO", **_OTEL_OVERRIDES},
    "warning": {"LOG_LEVEL": "WARNING", **_OTEL_OVERRIDES},
    "quiet": {"LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"},
}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class _Tally:
    calls: int = 0
    seconds: float = 0.0
    cpu: float = 0.0

    @property
    def qps(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu / self.calls * 1e6


async def _round(call: Callable[[], Awaitable[object]], pid: int, tally: _Tally) -> None:
    done = 0
    stop = time.perf_counter() + SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    tally.seconds += time.perf_counter() - started
    tally.cpu += cpu_seconds(pid) - cpu_before
    tally.calls += done


async def run_runtime_overhead_bench() -> list[Row]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-runtime-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    nats = NatsServer()
    db = await (await locate_postgres()).create_database("bruntime")
    processes: dict[str, ServiceProcess] = {}
    channels: list[grpc.aio.Channel] = []
    echo_process, echo_address = await start_echo(tmp)
    try:
        nats.start()
        for name, env in CONFIGS.items():
            process = ServiceProcess(
                "retail_common.testing.probe",
                {"DATABASE_URL": db.dsn, "NATS_URL": nats.url, "DB_POOL_MAX": "2", **env},
                workdir=str(tmp / name),
            )
            process.start()
            await process.wait_serving(120)  # the first one migrates the database
            processes[name] = process
        pool = await create_pool(db.dsn, min_size=1, max_size=1)
        try:
            created = await CredentialStore(pool).create("bench", PrincipalKind.SERVICE, [])
        finally:
            await pool.close()
        metadata = (("authorization", f"Bearer {created.key.get_secret_value()}"),)
        request = probe_pb2.WhoAmIRequest().SerializeToString()

        def caller(address: str, method: str) -> Callable[[], Awaitable[object]]:
            channel = grpc.aio.insecure_channel(address)
            channels.append(channel)
            stub = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            return lambda: stub(request, metadata=metadata, timeout=60)

        targets = {"echo": (caller(echo_address, ECHO_METHOD), echo_process.pid)}
        for name, process in processes.items():
            targets[name] = (caller(process.address, WHO_AM_I), process.pid)
        for call, _pid in targets.values():  # warm up: connections, the credential cache
            for _ in range(50):
                await call()
        tallies = {name: _Tally() for name in targets}
        for round_number in range(ROUNDS):
            for name, (call, pid) in targets.items():
                with sampled({name: pid}, f"runtime-{round_number}"):  # BENCH_PYSPY only
                    await _round(call, pid, tallies[name])
        echo = tallies["echo"]
        rows = []
        for name in CONFIGS:
            ours = tallies[name]
            rows.append(
                Row(
                    f"empty unary calls/s through run_service ({name}) vs grpc.aio echo",
                    ours.qps,
                    raw=echo.qps,
                    note=f"{CONCURRENCY} callers, {ROUNDS} x {SECONDS:g}s",
                )
            )
            rows.append(
                Row(
                    f"server CPU per call ({name}) vs grpc.aio echo",
                    ours.cpu_us_per_call,
                    unit=" us",
                    raw=echo.cpu_us_per_call,
                    note="utime+stime of the server process / calls",
                )
            )
        return rows
    finally:
        for channel in channels:
            await channel.close(None)
        for process in processes.values():
            await process.terminate()
        echo_process.terminate()
        await echo_process.wait()
        nats.close()
        await db.drop()


if __name__ == "__main__":
    for row in asyncio.run(run_runtime_overhead_bench()):
        ratio = f"  raw {row.raw:,.1f}  ratio {row.figure / row.raw:.2f}" if row.raw else ""
        print(f"{row.name:<75} {row.figure:>10,.1f}{row.unit}{ratio}  ({row.note})")
