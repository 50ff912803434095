"""Pricing benchmarks beside raw baselines measured in the same run (issue 4).

- ResolvePrice QPS (service as a separate process, BENCH_CONCURRENCY clients) vs a bare grpc.aio echo
  server (also a separate process) called the same way (a channel from retail_common.grpcx.connect for
  both; the echo through a bare channel is a reference row), alternating BENCH_PRICING_ROUNDS (3)
  rounds of BENCH_SECONDS each (target >= 0.6);
- BatchResolvePrices SKU-prices/s (1,000 queries per call) on a catalogue of BENCH_PRICING_SKUS SKUs
  (full size 100,000) with BENCH_PRICING_STORES location-scoped override lists (full size 600), each
  overriding BENCH_PRICING_OVERRIDES SKUs (target >= 50,000/s);
- CSV import rows/s through the ImportPriceEntries stream vs raw COPY of the same file into a table of
  typed columns, alternating BENCH_PRICING_ROUNDS rounds (target >= 0.3);
- import memory: peak RSS of a fresh service process importing 10x the rows vs 1x (target <= 1.5;
  BENCH_PRICING_IMPORT_ROWS, full size 100,000 vs 1,000,000).

Run alone: `python -m bench.pricing_service`; `run_pricing_bench()` is the hook for bench/__main__
(rows: figure, ours, raw baseline or None, target ratio or absolute target).
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
from pydantic import SecretStr

from bench._pyspy import sampled
from bench.raw_grpc_echo import ECHO_METHOD as ECHO
from bench.raw_grpc_echo import start_echo
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, pricing_service_pb2_grpc
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.grpcx import connect
from retail_common.testing import NatsServer
from retail_common.testing.postgres import locate_postgres
from retail_common.testing.process import ServiceProcess
from retail_pricing.service import APPROVER_ROLE, OPERATOR_ROLE
from retail_pricing.testing import price_list, product, query

__all__ = ["run_pricing_bench"]

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
SKUS = int(os.environ.get("BENCH_PRICING_SKUS", "100000"))
STORES = int(os.environ.get("BENCH_PRICING_STORES", "600"))
OVERRIDES = int(os.environ.get("BENCH_PRICING_OVERRIDES", "50"))
IMPORT_ROWS = int(os.environ.get("BENCH_PRICING_IMPORT_ROWS", "100000"))
IMPORT_SKUS = min(SKUS, 10_000)  # the import figures do not depend on the catalogue size
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
SETTLE_SECONDS = float(os.environ.get("BENCH_PRICING_SETTLE_SECONDS", "10"))
IMPORT_FIGURES = os.environ.get("BENCH_PRICING_IMPORT_FIGURES", "1") == "1"
# Alternating rounds of ours and the raw baseline (import and ResolvePrice).
ROUNDS = max(1, int(os.environ.get("BENCH_PRICING_ROUNDS", "3")))
START = "2026-01-01T00:00:00+00:00"
CHUNK = 512 * 1024

Row = tuple[str, float, float | None, float | None]


def _phase(name: str) -> None:
    """A progress line on stderr (the phases of a full-size run take minutes; a profiler can wait for
    the line of the phase it samples)."""
    print(f"pricing bench: {datetime.now(UTC):%H:%M:%S} {name}", file=sys.stderr, flush=True)


async def _qps(call: Callable[[], Awaitable[object]], seconds: float = SECONDS) -> float:
    """Calls per second with CONCURRENCY callers for `seconds`."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


# --- fixtures of the run --------------------------------------------------------------------------


def _catalogue_csv() -> bytes:
    out = io.StringIO()
    out.write("price_list_id,sku,amount,currency_code,start_time\n")
    for s in range(SKUS):
        out.write(f"base,sku-{s:06d},{10 + s % 90}.99,EUR,{START}\n")
    rng = random.Random(7)
    for store in range(STORES):
        for s in rng.sample(range(SKUS), min(OVERRIDES, SKUS)):
            out.write(f"store-{store:03d},sku-{s:06d},{5 + s % 40}.49,EUR,{START}\n")
    return out.getvalue().encode()


def _import_csv(rows: int) -> bytes:
    out = io.StringIO()
    out.write("price_list_id,sku,amount,currency_code,start_time,end_time\n")
    for i in range(rows):
        day = 1 + (i // IMPORT_SKUS) % 28
        out.write(f"base,sku-{i % IMPORT_SKUS:06d},{i % 100}.{i % 100:02d},EUR,2027-02-{day:02d}T00:00:00Z,")
        out.write(f"2027-02-{day:02d}T12:00:00Z\n")
    return out.getvalue().encode()


async def _chunks(request_id: str, data: bytes) -> AsyncIterator[pb.ImportPriceEntriesRequest]:
    for first in range(0, len(data), CHUNK):
        yield pb.ImportPriceEntriesRequest(
            request_id=request_id if first == 0 else "", data=data[first : first + CHUNK]
        )


class _Service:
    """A pricing service process with its database, NATS and two operators and a channel."""

    def __init__(self) -> None:
        self.nats = NatsServer()
        self.stubs: dict[str, pricing_service_pb2_grpc.PricingServiceAsyncStub] = {}
        self.keys: dict[str, str] = {}
        self.channels: list[grpc.aio.Channel] = []

    async def start(self, name: str) -> None:
        server = await locate_postgres()
        self.db = await server.create_database(name)
        self.nats.start()
        self.process = ServiceProcess(
            "retail_pricing",
            {
                "DATABASE_URL": self.db.dsn,
                "NATS_URL": self.nats.url,
                "DB_POOL_MAX": "10",
                "LOG_LEVEL": "WARNING",
            },
        )
        self.process.start()
        await self.process.wait_serving(120)
        self.pool = await create_pool(self.db.dsn, min_size=1, max_size=4)
        store = CredentialStore(self.pool)
        for principal, kind, roles in (
            ("ops", PrincipalKind.OPERATOR, [OPERATOR_ROLE, APPROVER_ROLE]),
            ("approver", PrincipalKind.OPERATOR, [OPERATOR_ROLE, APPROVER_ROLE]),
            ("web", PrincipalKind.CHANNEL, []),
        ):
            key = (await store.create(principal, kind, roles)).key
            self.keys[principal] = key.get_secret_value()
            channel = connect(self.process.address, credential=key, default_timeout=600, tracing=False)
            self.channels.append(channel)
            self.stubs[principal] = pricing_service_pb2_grpc.PricingServiceStub(channel)

    def auth(self, principal: str) -> tuple[tuple[str, str | bytes], ...]:
        # retail_common.grpcx.connect() adds credentials to unary-unary calls only (grpc.aio registers a
        # multi-kind interceptor for its first kind), so client streams carry it explicitly.
        return (("authorization", f"Bearer {self.keys[principal]}"),)

    async def drained(self) -> None:
        """Wait until the outbox is published and the service had time to consume its own events."""
        for _ in range(3600):  # at most 30 minutes
            if not await self.pool.fetchval("select count(*) from outbox where published_at is null"):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(SETTLE_SECONDS)

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    async def products(self, count: int = SKUS) -> None:
        ops = self.stubs["ops"]
        for first in range(0, count, 1000):
            await ops.BatchUpsertProducts(
                pb.BatchUpsertProductsRequest(
                    request_id=f"products-{first}",
                    products=[product(f"sku-{s:06d}") for s in range(first, min(first + 1000, count))],
                )
            )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)
        await self.pool.close()
        await self.process.terminate()
        self.nats.close()
        await self.db.drop()


async def _approve(svc: _Service, change_set: change_sets_pb2.ChangeSet) -> None:
    """Submit (preview + guardrails), then approve; each step's duration on stderr, sampled under
    BENCH_PYSPY (not a benchmark figure: approval has no target, but operators wait for it)."""
    started = time.perf_counter()
    with sampled({"pricing": svc.process.pid}, "pricing-submit"):
        submitted = await svc.stubs["ops"].SubmitChangeSet(
            pb.SubmitChangeSetRequest(
                request_id=f"s-{change_set.change_set_id}",
                change_set_id=change_set.change_set_id,
                etag=change_set.etag,
            )
        )
    _phase(f"submitted in {time.perf_counter() - started:.1f}s; approving")
    started = time.perf_counter()
    with sampled({"pricing": svc.process.pid}, "pricing-approve"):
        await svc.stubs["approver"].ApproveChangeSet(
            pb.ApproveChangeSetRequest(
                request_id=f"a-{change_set.change_set_id}",
                change_set_id=change_set.change_set_id,
                etag=submitted.change_set.etag,
            )
        )
    _phase(f"approved in {time.perf_counter() - started:.1f}s")


async def _resolution_and_import(tmp: Path) -> list[Row]:
    rows: list[Row] = []
    svc = _Service()
    await svc.start("bench_pricing")
    try:
        await svc.pool.execute(
            "insert into locations (location_id, region_id, time_zone, version)"
            " select 'store-' || lpad(i::text, 3, '0'), 'region-' || (i % 8), 'Europe/Berlin', 1"
            " from generate_series(0, $1 - 1) i",
            STORES,
        )
        await svc.products()
        ops = svc.stubs["ops"]
        await ops.CreatePriceList(pb.CreatePriceListRequest(request_id="base", price_list=price_list("base")))
        for store in range(STORES):
            override = price_list(
                f"store-{store:03d}", price_lists_pb2.PRICE_LIST_KIND_BASE, locations=(f"store-{store:03d}",)
            )
            await ops.CreatePriceList(
                pb.CreatePriceListRequest(request_id=f"list-{store}", price_list=override)
            )

        # --- CSV import vs raw COPY of the same file (once the product events are relayed)
        await svc.drained()
        _phase("measuring ImportPriceEntries")
        data = _catalogue_csv()
        count = data.count(b"\n") - 1
        # Alternating rounds (each import is a new DRAFT change set; the first is approved below): a
        # change in the machine's load hits both sides alike.
        ours_seconds = raw_seconds = 0.0
        for round_ in range(ROUNDS):
            started = time.perf_counter()
            done = await ops.ImportPriceEntries(
                _chunks(f"catalogue-{round_}", data), metadata=svc.auth("ops")
            )
            ours_seconds += time.perf_counter() - started
            assert done.row_count == count
            if round_ == 0:
                imported = done
            await svc.pool.execute(
                f"create table raw_copy_{round_} (price_list_id text, sku text, amount numeric,"
                " currency_code text, start_time timestamptz)"
            )
            started = time.perf_counter()
            async with svc.pool.acquire() as conn:
                await conn.copy_to_table(
                    f"raw_copy_{round_}", source=io.BytesIO(data), format="csv", header=True
                )
            raw_seconds += time.perf_counter() - started
        rows.append(
            (
                f"ImportPriceEntries CSV rows/s ({count} rows, {ROUNDS} rounds)",
                ROUNDS * count / ours_seconds,
                ROUNDS * count / raw_seconds,
                0.3,
            )
        )
        _phase("approving the import")
        await _approve(svc, imported.change_set)
        # Steady state: the approval's events (one PriceChanged per SKU) are relayed and seen by the
        # service's own cache-invalidation subscription before resolution is measured.
        await svc.drained()

        web = svc.stubs["web"]
        rng = random.Random(11)

        def batch() -> pb.BatchResolvePricesRequest:
            return pb.BatchResolvePricesRequest(
                queries=[
                    query(f"sku-{rng.randrange(SKUS):06d}", location_id=f"store-{rng.randrange(STORES):03d}")
                    for _ in range(1000)
                ]
            )

        for first in range(0, SKUS, 1000):  # warm every SKU into the cache
            await web.BatchResolvePrices(
                pb.BatchResolvePricesRequest(
                    queries=[query(f"sku-{s:06d}") for s in range(first, min(first + 1000, SKUS))]
                )
            )
        requests = [batch() for _ in range(200)]  # distinct random queries: no result reuse
        turn = 0

        async def one_batch() -> None:
            nonlocal turn
            turn += 1
            await web.BatchResolvePrices(requests[turn % len(requests)])

        _phase(f"measuring BatchResolvePrices for {SECONDS:g}s (service pid {svc.process.pid})")
        with sampled({"pricing": svc.process.pid}, "pricing-batch"):  # BENCH_PYSPY only
            calls = await _qps(one_batch)
        rows.append(
            (
                f"BatchResolvePrices SKU-prices/s ({SKUS} SKUs, {STORES} store lists)",
                calls * 1000,
                None,
                50_000,
            )
        )

        # --- ResolvePrice vs a bare grpc.aio echo server
        single = [pb.ResolvePriceRequest(query=q) for q in requests[0].queries[:100]]
        n = 0

        async def resolve() -> None:
            nonlocal n
            n += 1
            await web.ResolvePrice(single[n % len(single)])

        _phase(
            f"measuring ResolvePrice and the grpc.aio echo, {ROUNDS} rounds of {SECONDS:g}s each"
            f" (service pid {svc.process.pid})"
        )
        echo_process, address = await start_echo(tmp)
        # The services run on uvloop (ServiceSettings.event_loop); the baseline is a bare grpc.aio
        # server on asyncio's loop. The same echo on uvloop is reported beside it, so the share of the
        # ratio that is the event loop's stays visible.
        uv_echo_process, uv_address = await start_echo(tmp, "uvloop")
        try:
            # The echo is called through a channel built like ours (retail_common.grpcx.connect: the
            # client interceptors that add the credential and the deadline), so the ratio compares the
            # servers; a bare channel's echo is reported beside it for reference.
            same_client = connect(
                address, credential=SecretStr(svc.keys["web"]), default_timeout=600, tracing=False
            )
            uv_client = connect(
                uv_address, credential=SecretStr(svc.keys["web"]), default_timeout=600, tracing=False
            )
            bare_client = grpc.aio.insecure_channel(address)
            payload = single[0].SerializeToString()
            echo_same = same_client.unary_unary(ECHO, request_serializer=None, response_deserializer=None)
            echo_bare = bare_client.unary_unary(ECHO, request_serializer=None, response_deserializer=None)
            echo_uv = uv_client.unary_unary(ECHO, request_serializer=None, response_deserializer=None)

            async def echo() -> None:
                await echo_same(payload)

            async def echo_on_uvloop() -> None:
                await echo_uv(payload)

            async def echo_bare_client() -> None:
                await echo_bare(payload)

            # Alternating rounds: a change in the machine's load hits both sides alike.
            ours_rounds, raw_rounds, bare_rounds, uv_rounds = [], [], [], []
            with sampled({"pricing": svc.process.pid}, "pricing-single"):  # BENCH_PYSPY only
                for _ in range(ROUNDS):
                    ours_rounds.append(await _qps(resolve))
                    raw_rounds.append(await _qps(echo))
                    bare_rounds.append(await _qps(echo_bare_client))
                    uv_rounds.append(await _qps(echo_on_uvloop))
            ours, raw = sum(ours_rounds) / ROUNDS, sum(raw_rounds) / ROUNDS
            bare, uv = sum(bare_rounds) / ROUNDS, sum(uv_rounds) / ROUNDS
            for channel in (same_client, uv_client, bare_client):
                await channel.close(None)
        finally:
            for process in (echo_process, uv_echo_process):
                process.terminate()
                await process.wait()
        rows.append(
            (f"ResolvePrice QPS ({CONCURRENCY} clients) vs bare grpc.aio echo, same client", ours, raw, 0.6)
        )
        rows.append(
            (f"(reference) bare grpc.aio echo QPS, bare client, {CONCURRENCY} clients", bare, None, None)
        )
        rows.append(
            (f"(reference) ResolvePrice QPS vs the echo on uvloop, {CONCURRENCY} clients", ours, uv, None)
        )
    finally:
        await svc.close()
    return rows


async def _import_peak(rows: int) -> tuple[float, int]:
    """rows/s and peak RSS (KiB) of a fresh service process importing `rows` rows."""
    svc = _Service()
    await svc.start("bench_pricing_import")
    try:
        await svc.products(IMPORT_SKUS)
        await svc.stubs["ops"].CreatePriceList(
            pb.CreatePriceListRequest(request_id="b", price_list=price_list("base"))
        )
        data = _import_csv(rows)
        started = time.perf_counter()
        done = await svc.stubs["ops"].ImportPriceEntries(_chunks("imp", data), metadata=svc.auth("ops"))
        rate = rows / (time.perf_counter() - started)
        assert done.row_count == rows
        return rate, svc.peak_rss_kib()
    finally:
        await svc.close()


async def run_pricing_bench() -> list[Row]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-pricing-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = await _resolution_and_import(tmp)
    if not IMPORT_FIGURES:
        return rows
    _, small = await _import_peak(IMPORT_ROWS)
    rate, large = await _import_peak(10 * IMPORT_ROWS)
    rows.append((f"ImportPriceEntries rows/s ({10 * IMPORT_ROWS} rows)", rate, None, None))
    rows.append(
        (
            f"import peak RSS ratio {10 * IMPORT_ROWS} vs {IMPORT_ROWS} rows (<= target)",
            large / small,
            None,
            1.5,
        )
    )
    return rows


def _print(rows: list[Row]) -> None:
    for figure, ours, raw, target in rows:
        ratio = f"  ratio {ours / raw:.2f}" if raw else ""
        baseline = f"  raw {raw:,.1f}" if raw is not None else ""
        goal = f"  target {target:g}" if target is not None else ""
        print(f"{figure:<80} {ours:>14,.2f}{baseline}{ratio}{goal}")


if __name__ == "__main__":
    started = datetime.now(UTC)
    _print(asyncio.run(run_pricing_bench()))
    print(f"({(datetime.now(UTC) - started).total_seconds():.0f}s)")
