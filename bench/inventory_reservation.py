"""Inventory-reservation benchmarks beside raw baselines measured in the same run (issue 5).

- Reserve TPS through gRPC (service as a separate process, 32 concurrent clients, 1 unit per call),
  for spread SKUs and for one hot SKU, vs a raw asyncpg conditional-UPDATE loop on the same `stock`
  table with the same concurrency (target >= 0.6), once the relay has published the import's events.
  The baseline is the service's own hold statement (inv_ats with the effective fences, per-channel
  counts, location check) in autocommit; a second row compares with the minimal
  `on_hand - reserved_total >= 1` UPDATE;
- Reserve and GetLocation run in SEGMENTS rounds alternating with their baselines, so that load drift
  on a shared machine affects both sides of a ratio alike;
- GetLocation QPS vs the same one-row select: the runtime's per-call cost (auth lookup, interceptors,
  spans, pool reset), which bounds every RPC's ratio;
- BatchGetAvailability SKU-locations/s (1,000 queries per call; target >= 50,000/s);
- snapshot import rows/s through the ImportStockSnapshots stream vs raw COPY of the same rows, in the
  same batches, into a table of the same shape (target >= 0.3), twice: a first load (every position is
  new, every one changes and gets its AvailabilityChanged) and a newer re-snapshot of the same estate
  in which RESNAPSHOT_CHANGED (2%) of the positions change (each position's as-of still moves). The
  estate is scaled down (BENCH_STORES x BENCH_SKUS, 20 x 5,000) so the run takes a few minutes; the
  full estate is 600 x 20,000. BENCH_INVENTORY_PARTS=snapshot,reserve,batch picks the figures (Reserve
  needs the snapshot's SKUs).

Run alone: `python -m bench.inventory_reservation`; registered as `inventory` in bench/registry.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from bench._pyspy import sampled
from retail.inventory.v1 import (
    availability_pb2,
    inventory_service_pb2_grpc,
    location_pb2,
    stock_pb2,
)
from retail.inventory.v1 import (
    inventory_service_pb2 as pb,
)
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.grpcx import connect
from retail_common.testing import NatsServer
from retail_common.testing.postgres import locate_postgres
from retail_common.testing.process import ServiceProcess
from retail_inventory.servicer import OPERATOR_ROLE

__all__ = ["run_inventory_bench"]

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
RESERVES = int(os.environ.get("BENCH_RESERVES", "3000"))
# Reserve and GetLocation figures alternate with their baselines in this many rounds (load drift).
SEGMENTS = int(os.environ.get("BENCH_SEGMENTS", "5"))
SPREAD_SKUS = 2_000
STORES = int(os.environ.get("BENCH_STORES", "20"))
SKUS = int(os.environ.get("BENCH_SKUS", "5000"))
# Which figures to measure (comma-separated: snapshot, reserve, batch); all by default.
PARTS = set(os.environ.get("BENCH_INVENTORY_PARTS", "snapshot,reserve,batch").split(","))
# Share of positions a re-snapshot changes.
RESNAPSHOT_CHANGED = 0.02
BATCH = 5_000
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def _ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def _concurrently(count: int, call: Callable[[int], Awaitable[None]]) -> float:
    """Run call(0..count-1) on CONCURRENCY workers; returns calls per second."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


async def _interleaved(count: int, *calls: Callable[[int], Awaitable[None]]) -> list[float]:
    """Each call(0..count-1), in SEGMENTS alternating rounds (call 1, call 2, ..., call 1, ...), so
    that load drift on a shared machine hits all of them alike; returns calls per second of each."""
    per = max(1, count // SEGMENTS)
    elapsed = [0.0] * len(calls)
    for segment in range(SEGMENTS):
        for k, call in enumerate(calls):

            async def offset(
                i: int, call: Callable[[int], Awaitable[None]] = call, base: int = segment * per
            ) -> None:
                await call(base + i)

            elapsed[k] += per / await _concurrently(per, offset)
    return [per * SEGMENTS / e for e in elapsed]


# The service's hold, as one autocommit statement: the same conditional UPDATE (ATS by inv_ats with the
# effective fences and per-channel counts, location active and serving the channel) on the same schema.
_RAW_EQUIVALENT = """
update stock s set reserved_total = s.reserved_total + 1,
       channel_reserved = inv_add_reserved(s.channel_reserved, 'web', 1),
       version = s.version + 1, updated_at = now()
from locations l
where s.sku = $1 and s.location_id = 'raw' and l.location_id = s.location_id and l.active
  and 'web' = any(l.channel_ids)
  and inv_ats(s.on_hand, s.reserved_total, s.safety_stock, l.default_fences || s.fences,
              s.channel_reserved, 'web') >= 1
"""
# The minimal one: on-hand minus reserved only.
_RAW_SIMPLE = (
    "update stock set reserved_total = reserved_total + 1 where sku = $1 and location_id = 'raw'"
    " and on_hand - reserved_total >= 1"
)


def _raw_reserve(
    pool: asyncpg.Pool[asyncpg.Record], sku_of: Callable[[int], str], statement: str
) -> Callable[[int], Awaitable[None]]:
    """A baseline: one conditional UPDATE per reservation, nothing else."""

    async def one(i: int) -> None:
        await pool.execute(statement, sku_of(i))

    return one


async def _seed(ops: inventory_service_pb2_grpc.InventoryServiceAsyncStub) -> None:
    for i in range(STORES):
        await ops.UpsertLocation(
            pb.UpsertLocationRequest(
                request_id=f"loc-{i}",
                location=location_pb2.Location(
                    location_id=f"store-{i:03d}",
                    kind=location_pb2.LOCATION_KIND_STORE,
                    region_id=f"region-{i % 4}",
                    time_zone="Europe/Berlin",
                    channel_ids=["web", "app"],
                    active=True,
                ),
            )
        )


async def _import(
    erp: inventory_service_pb2_grpc.InventoryServiceAsyncStub,
    auth: tuple[tuple[str, str], ...],
    request_id: str,
    estate: list[tuple[str, str, int]],
    as_of: datetime,
    changed: int,
) -> float:
    """ImportStockSnapshots of the estate in BATCH-entry messages; rows per second."""
    stamp = _ts(as_of)

    def batches() -> Iterator[pb.ImportStockSnapshotsRequest]:
        for first in range(0, len(estate), BATCH):
            yield pb.ImportStockSnapshotsRequest(
                request_id=request_id,
                entries=[
                    stock_pb2.StockSnapshotEntry(sku=s, location_id=loc, on_hand=q, as_of_time=stamp)
                    for s, loc, q in estate[first : first + BATCH]
                ],
            )

    started = time.perf_counter()
    result = await erp.ImportStockSnapshots(batches(), metadata=auth)
    elapsed = time.perf_counter() - started
    assert (result.applied_count, result.changed_count) == (len(estate), changed), result
    return len(estate) / elapsed


async def _drain(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    started = time.perf_counter()
    while await pool.fetchval("select count(*) from outbox where published_at is null"):
        if time.perf_counter() - started > 600:
            raise RuntimeError("the relay did not drain the import's events within 600 s")
        await asyncio.sleep(0.5)


async def _raw_copy(
    pool: asyncpg.Pool[asyncpg.Record], estate: list[tuple[str, str, int]], as_of: datetime
) -> float:
    """The baseline: COPY of the same rows in the same batches into a table of the same shape."""
    await pool.execute("truncate raw_copy")
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for first in range(0, len(estate), BATCH):
            await conn.copy_records_to_table(
                "raw_copy", records=[(s, loc, q, as_of) for s, loc, q in estate[first : first + BATCH]]
            )
    return len(estate) / (time.perf_counter() - started)


async def run_inventory_bench() -> list[tuple[str, float, float | None, float | None]]:
    """Returns rows (figure, ours, raw baseline or None, target ratio or absolute target)."""
    server = await locate_postgres()
    db = await server.create_database("bench_inv")
    nats = NatsServer()
    nats.start()
    process = ServiceProcess(
        "retail_inventory",
        {"DATABASE_URL": db.dsn, "NATS_URL": nats.url, "DB_POOL_MAX": "20", "LOG_LEVEL": "WARNING"},
    )
    process.start()
    try:
        await process.wait_serving(60)
        pool = await create_pool(db.dsn, min_size=CONCURRENCY, max_size=CONCURRENCY)
        store = CredentialStore(pool)
        keys = {
            "ops": (await store.create("bench-ops", PrincipalKind.OPERATOR, [OPERATOR_ROLE])).key,
            "erp": (await store.create("bench-erp", PrincipalKind.SERVICE)).key,
            "web": (await store.create("web", PrincipalKind.CHANNEL)).key,
        }
        channels = {
            k: connect(process.address, credential=v, default_timeout=120, tracing=False)
            for k, v in keys.items()
        }
        ops = inventory_service_pb2_grpc.InventoryServiceStub(channels["ops"])
        erp = inventory_service_pb2_grpc.InventoryServiceStub(channels["erp"])
        web = inventory_service_pb2_grpc.InventoryServiceStub(channels["web"])
        await _seed(ops)
        rows: list[tuple[str, float, float | None, float | None]] = []

        # --- snapshot import vs raw COPY: a first load (every position new and changed) and a newer
        # re-snapshot of the same estate where RESNAPSHOT_CHANGED of the positions change.
        estate = [
            (f"sku-{s:05d}", f"store-{loc:03d}", 50 + (s + loc) % 50)
            for loc in range(STORES)
            for s in range(SKUS)
        ]
        step = round(1 / RESNAPSHOT_CHANGED)
        later = [(s, loc, q + 1 if i % step == 0 else q) for i, (s, loc, q) in enumerate(estate)]
        auth = (("authorization", f"Bearer {keys['erp'].get_secret_value()}"),)
        await pool.execute(
            "create table raw_copy (sku text, location_id text, on_hand bigint, as_of timestamptz)"
        )
        loads = [
            ("first load", estate, AS_OF, len(estate)),
            (
                f"re-snapshot, {RESNAPSHOT_CHANGED:.0%} changed",
                later,
                AS_OF + timedelta(days=1),
                len(estate) // step,
            ),
        ]
        for label, rows_in, as_of, changed in loads if "snapshot" in PARTS else []:
            ours = await _import(erp, auth, f"bench-{as_of:%j}", rows_in, as_of, changed)
            # The import leaves one AvailabilityChanged per changed position in the outbox; the
            # service's relay publishes them in the background. Let it drain first, so that neither raw
            # COPY nor the next figures run beside the import's backlog.
            await _drain(pool)
            raw = await _raw_copy(pool, rows_in, as_of)
            rows.append((f"snapshot import rows/s, {label} ({STORES}x{SKUS})", ours, raw, 0.3))

        # --- reserve: spread SKUs and one hot SKU, vs raw conditional UPDATE on the same table
        if "reserve" in PARTS:
            await pool.execute(
                "insert into locations (location_id, kind, region_id, time_zone, channel_ids)"
                " values ('raw', 'LOCATION_KIND_STORE', 'raw', 'UTC', '{web}');"
                "insert into stock (sku, location_id, on_hand)"
                " select sku, 'raw', 1000000 from skus"
            )
            await pool.execute("update stock set on_hand = 1000000 where location_id = 'store-000'")

            def spread(i: int) -> str:
                return f"sku-{i % min(SPREAD_SKUS, SKUS):05d}"

            for label, sku_of in (("spread SKUs", spread), ("one hot SKU", lambda i: "sku-00000")):
                tag = label.split()[0]

                async def reserve(i: int, sku_of: Callable[[int], str] = sku_of, tag: str = tag) -> None:
                    await web.ReserveStock(
                        pb.ReserveStockRequest(
                            reservation_id=f"{tag}-{i}",
                            channel_id="web",
                            lines=[pb.ReserveLine(sku=sku_of(i), location_id="store-000", quantity=1)],
                        )
                    )

                with sampled({"inventory": process.pid}, f"inventory-reserve-{tag}"):  # BENCH_PYSPY only
                    ours, raw, simple = await _interleaved(
                        RESERVES,
                        reserve,
                        _raw_reserve(pool, sku_of, _RAW_EQUIVALENT),
                        _raw_reserve(pool, sku_of, _RAW_SIMPLE),
                    )
                rows.append((f"ReserveStock TPS, {label} (gRPC, {CONCURRENCY} clients)", ours, raw, 0.6))
                rows.append((f"  same vs minimal UPDATE (on_hand - reserved only), {tag}", ours, simple, 0.6))

        # --- the runtime's own cost per call (auth lookup, interceptors, spans, pool): a one-row read
        if "reserve" in PARTS:

            async def get_location(i: int) -> None:
                await web.GetLocation(pb.GetLocationRequest(location_id="store-000"))

            async def raw_get_location(i: int) -> None:
                await pool.fetchrow("select * from locations where location_id = 'store-000'")

            ours, raw = await _interleaved(RESERVES, get_location, raw_get_location)
            rows.append(
                (f"GetLocation QPS (call overhead reference, {CONCURRENCY} clients)", ours, raw, None)
            )

        # --- BatchGetAvailability
        if "batch" in PARTS:
            queries = [
                pb.AvailabilityQuery(
                    sku=f"sku-{(i * 7) % SKUS:05d}",
                    scope=availability_pb2.AvailabilityScope(location_id=f"store-{i % STORES:03d}"),
                )
                for i in range(1000)
            ]
            request = pb.BatchGetAvailabilityRequest(channel_id="web", queries=queries)
            calls = 200

            async def batch(i: int) -> None:
                await web.BatchGetAvailability(request)

            per_second = await _concurrently(calls, batch) * len(queries)
            rows.append(("BatchGetAvailability SKU-locations/s", per_second, None, 50_000))
        for channel in channels.values():
            await channel.close(None)
        await pool.close()
        return rows
    finally:
        await process.terminate()
        nats.close()
        await db.drop()


def print_rows(rows: list[tuple[str, float, float | None, float | None]]) -> None:
    print(f"{'figure':<60}{'ours':>12}{'raw baseline':>16}{'ratio':>8}{'target':>10}")
    for figure, ours, raw, target in rows:
        ratio = f"{ours / raw:.2f}" if raw else "-"
        raw_text = f"{raw:,.0f}" if raw else "-"
        target_text = f">={target:g}" if target is not None else ""
        print(f"{figure:<60}{ours:>12,.0f}{raw_text:>16}{ratio:>8}{target_text:>10}")


if __name__ == "__main__":
    print_rows(asyncio.run(run_inventory_bench()))
