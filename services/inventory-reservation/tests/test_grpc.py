"""The service over real gRPC connections, running as separate processes (python -m retail_inventory)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from retail.common.v1 import principal_pb2
from retail.inventory.v1 import (
    availability_pb2,
    inventory_service_pb2_grpc,
    location_pb2,
    reservation_pb2,
    stock_pb2,
    threshold_pb2,
)
from retail.inventory.v1 import (
    inventory_service_pb2 as pb,
)
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.errors import parse_error
from retail_common.grpcx import connect
from retail_inventory.servicer import OPERATOR_ROLE
from retail_inventory.testing import T0, check_invariants

MODULE = "retail_inventory"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Poll until check() holds (a generous bound, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def env(database_url, nats_server):
    return {"DATABASE_URL": database_url, "NATS_URL": nats_server.url, "DB_POOL_MAX": "10"}


@pytest.fixture
async def service(start_service, env):
    return await start_service(MODULE, env)


@pytest.fixture
async def pool(service, database_url):
    p = await create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


class Clients:
    def __init__(self, pool, address: str) -> None:
        self.store = CredentialStore(pool)
        self.address = address
        self.channels: list[grpc.aio.Channel] = []

    async def stub(self, principal: str, kind: PrincipalKind, roles=(), address: str | None = None):
        key = (await self.store.create(principal, kind, roles)).key
        return self.stub_for(key, address)

    def stub_for(self, key, address: str | None = None):
        channel = connect(address or self.address, credential=key, default_timeout=30.0, tracing=False)
        self.channels.append(channel)
        return inventory_service_pb2_grpc.InventoryServiceStub(channel)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


@pytest.fixture
async def clients(pool, service):
    c = Clients(pool, service.address)
    yield c
    await c.close()


@pytest.fixture
async def operator(clients):
    return await clients.stub("ops-1", PrincipalKind.OPERATOR, [OPERATOR_ROLE])


@pytest.fixture
async def wms(clients):
    return await clients.stub("wms", PrincipalKind.SERVICE)


@pytest.fixture
async def web(clients):
    return await clients.stub("web", PrincipalKind.CHANNEL)


def ts(minutes: int = 0) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(T0.replace(minute=minutes))
    return stamp


async def setup_stock(operator, wms, stock: dict[tuple[str, str], int], channels=("web", "mkt")) -> None:
    for i, loc in enumerate(sorted({k[1] for k in stock})):
        await operator.UpsertLocation(
            pb.UpsertLocationRequest(
                request_id=f"loc-{loc}",
                location=location_pb2.Location(
                    location_id=loc,
                    kind=location_pb2.LOCATION_KIND_STORE,
                    region_id="r1",
                    time_zone="Europe/Berlin",
                    channel_ids=list(channels),
                    allocation_priority=i,
                    active=True,
                ),
            )
        )
    await wms.RecordMovements(
        pb.RecordMovementsRequest(
            request_id="seed",
            movements=[
                stock_pb2.Movement(
                    movement_id=f"seed-{sku}-{loc}",
                    sku=sku,
                    location_id=loc,
                    delta=qty,
                    kind=stock_pb2.MOVEMENT_KIND_RECEIPT,
                    occur_time=ts(),
                )
                for (sku, loc), qty in sorted(stock.items())
            ],
        )
    )


def line(sku: str, qty: int, loc: str = "s1") -> pb.ReserveLine:
    return pb.ReserveLine(sku=sku, location_id=loc, quantity=qty)


async def test_bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(pool, operator, wms, web):
    await setup_stock(operator, wms, {("A", "s1"): 10})
    audit_before = await pool.fetchval("select count(*) from audit_log")

    def req(*lines, rid="r", **kw):
        return pb.ReserveStockRequest(reservation_id=rid, channel_id="web", lines=list(lines), **kw)

    cases = [
        (req(line("NOPE", 1)), "lines[0].sku"),
        (req(line("A", 1, "zz")), "lines[0].location_id"),
        (req(line("A", 0)), "lines[0].quantity"),
        (req(line("A", -2)), "lines[0].quantity"),
        (req(line("A", 1), ttl=Duration(seconds=5)), "ttl"),
        (req(line("A", 1), ttl=Duration(seconds=73 * 3600)), "ttl"),
        (req(*[line("A", 1)] * 101), "lines"),
        (req(line("A", 1), rid=""), "reservation_id"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await web.ReserveStock(request)
        details = parse_error(caught.value)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in details.fields, (field, details.fields)
    assert await pool.fetchval("select count(*) from reservations") == 0
    assert await pool.fetchval("select reserved_total from stock where sku = 'A'") == 0
    assert await pool.fetchval("select count(*) from audit_log") == audit_before


async def test_channels_reserve_only_for_themselves_and_do_not_manage(pool, operator, wms, web):
    await setup_stock(operator, wms, {("A", "s1"): 10})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.ReserveStock(
            pb.ReserveStockRequest(reservation_id="r", channel_id="mkt", lines=[line("A", 1)])
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.RecordMovements(pb.RecordMovementsRequest(request_id="x"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await pool.fetchval("select count(*) from reservations") == 0


async def test_fence_availability_reserve_confirm_release_and_audit(pool, operator, wms, web, clients):
    await setup_stock(operator, wms, {("A", "s1"): 100})
    await operator.SetStockPolicies(
        pb.SetStockPoliciesRequest(
            request_id="p1",
            policies=[
                stock_pb2.StockPolicy(
                    sku="A",
                    location_id="s1",
                    fences=[stock_pb2.ChannelFence(channel_id="mkt", fixed_quantity=20)],
                )
            ],
        )
    )
    mkt = await clients.stub("mkt", PrincipalKind.CHANNEL)
    await mkt.ReserveStock(
        pb.ReserveStockRequest(reservation_id="m1", channel_id="mkt", lines=[line("A", 20)])
    )
    scope = availability_pb2.AvailabilityScope(location_id="s1")
    got = await web.GetAvailability(pb.GetAvailabilityRequest(sku="A", channel_id="web", scope=scope))
    assert got.availability.available_to_sell == 80
    region = await web.GetAvailability(
        pb.GetAvailabilityRequest(
            sku="A", channel_id="web", scope=availability_pb2.AvailabilityScope(region_id="r1")
        )
    )
    assert region.availability.available_to_sell == 80
    own = await mkt.GetAvailability(pb.GetAvailabilityRequest(sku="A", channel_id="mkt", scope=scope))
    (breakdown,) = own.availability.locations
    assert (breakdown.available_to_sell, breakdown.channel_fence, breakdown.channel_reserved) == (80, 20, 20)
    assert (breakdown.on_hand, breakdown.reserved_total, breakdown.sellable) == (100, 20, True)
    await operator.SetStockPolicies(
        pb.SetStockPoliciesRequest(
            request_id="p2",
            policies=[
                stock_pb2.StockPolicy(
                    sku="A",
                    location_id="s1",
                    fences=[stock_pb2.ChannelFence(channel_id="mkt", fixed_quantity=30)],
                )
            ],
        )
    )
    got = await web.GetAvailability(pb.GetAvailabilityRequest(sku="A", channel_id="web", scope=scope))
    assert (got.availability.available_to_sell, got.availability.locations[0].fenced_for_other_channels) == (
        70,
        10,
    )
    await operator.SetStockPolicies(
        pb.SetStockPoliciesRequest(
            request_id="p3",
            policies=[
                stock_pb2.StockPolicy(
                    sku="A",
                    location_id="s1",
                    fences=[stock_pb2.ChannelFence(channel_id="mkt", fixed_quantity=20)],
                )
            ],
        )
    )

    reserved = await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="w1", channel_id="web", lines=[line("A", 5)])
    )
    again = await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="w1", channel_id="web", lines=[line("A", 5)])
    )
    assert again.reservation == reserved.reservation
    confirmed = await web.ConfirmReservation(
        pb.ConfirmReservationRequest(
            request_id="c1", reservation_id="w1", lines=[pb.LineQuantity(line_index=0, quantity=2)]
        )
    )
    assert confirmed.reservation.lines[0].confirmed_quantity == 2
    retry = await web.ConfirmReservation(
        pb.ConfirmReservationRequest(
            request_id="c1", reservation_id="w1", lines=[pb.LineQuantity(line_index=0, quantity=2)]
        )
    )
    assert retry.reservation == confirmed.reservation  # one effect
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the key again, for a different request
        await web.ConfirmReservation(
            pb.ConfirmReservationRequest(
                request_id="c1", reservation_id="w1", lines=[pb.LineQuantity(line_index=0, quantity=1)]
            )
        )
    details = parse_error(caught.value)
    assert (details.code, details.fields, details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["request_id"],
        "IDEMPOTENCY_KEY_REUSED",
    )
    released = await web.ReleaseReservation(
        pb.ReleaseReservationRequest(request_id="x1", reservation_id="w1")
    )
    assert released.reservation.state == reservation_pb2.RESERVATION_STATE_CONFIRMED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.ConfirmReservation(pb.ConfirmReservationRequest(request_id="c2", reservation_id="w1"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # another channel cannot see it
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mkt.GetReservation(pb.GetReservationRequest(reservation_id="w1"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    row = await pool.fetchrow("select on_hand, reserved_total from stock where sku = 'A'")
    assert (row["on_hand"], row["reserved_total"]) == (98, 20)
    audit = await operator.ListAuditRecords(
        pb.ListAuditRecordsRequest(entity_type="retail.inventory.v1.Reservation", entity_key="w1")
    )
    assert [r.principal_id for r in audit.records] == ["web", "web", "web"]  # release, confirm, reserve
    assert audit.records[-1].action.endswith("/ReserveStock")
    assert {r.principal_kind for r in audit.records} == {principal_pb2.PRINCIPAL_KIND_CHANNEL}
    assert audit.records[0].HasField("before")
    assert audit.records[0].HasField("after")
    assert not audit.records[-1].HasField("before")
    page = await operator.ListAuditRecords(
        pb.ListAuditRecordsRequest(
            entity_type="retail.inventory.v1.Reservation", entity_key="w1", page_size=2
        )
    )
    rest = await operator.ListAuditRecords(
        pb.ListAuditRecordsRequest(
            entity_type="retail.inventory.v1.Reservation",
            entity_key="w1",
            page_size=2,
            page_token=page.next_page_token,
        )
    )
    assert [r.audit_id for r in [*page.records, *rest.records]] == [r.audit_id for r in audit.records]
    for bad, field in (
        (pb.ListAuditRecordsRequest(page_size=1001), "page_size"),  # the contract's cap, stricter
        (pb.ListAuditRecordsRequest(page_size=-1), "page_size"),
        (pb.ListAuditRecordsRequest(entity_key="w1"), "entity_key"),
        (pb.ListAuditRecordsRequest(page_token="not-a-token"), "page_token"),
        (pb.ListAuditRecordsRequest(entity_type="x", page_token=page.next_page_token), "page_token"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await operator.ListAuditRecords(bad)
        details = parse_error(caught.value)
        assert (details.code, details.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field]), bad
    await check_invariants(pool)


async def test_expiry_sweep_in_the_service_expires_and_announces(pool, operator, wms, web):
    await setup_stock(operator, wms, {("A", "s1"): 10})
    await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="r1", channel_id="web", lines=[line("A", 4)])
    )
    await pool.execute("update reservations set expires_at = now() - interval '1 second'")

    async def expired() -> bool:
        return await pool.fetchval("select state from reservations where reservation_id = 'r1'") == "EXPIRED"

    await eventually(expired, "the sweep expires r1")
    assert await pool.fetchval("select reserved_total from stock where sku = 'A'") == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.ConfirmReservation(pb.ConfirmReservationRequest(request_id="c1", reservation_id="r1"))
    assert parse_error(caught.value).reason == "RESERVATION_EXPIRED"


async def test_streaming_snapshot_import(pool, operator, wms, clients):
    await setup_stock(operator, wms, {("A", "s1"): 1, ("A", "s2"): 1})
    key = (await clients.store.create("erp", PrincipalKind.SERVICE)).key
    # retail_common's client interceptor does not attach the credential to client-streaming calls yet
    # (reported); pass it explicitly.
    auth = (("authorization", f"Bearer {key.get_secret_value()}"),)

    def batches():
        for b in range(3):
            yield pb.ImportStockSnapshotsRequest(
                request_id="full-1",
                entries=[
                    stock_pb2.StockSnapshotEntry(
                        sku=f"S{b}-{i}", location_id=loc, on_hand=i, as_of_time=ts(10)
                    )
                    for i in range(50)
                    for loc in ("s1", "s2")
                ],
            )

    first = await wms.ImportStockSnapshots(batches(), metadata=auth)
    assert (first.received_count, first.applied_count, first.changed_count) == (
        300,
        300,
        294,
    )  # new positions snapshotted at 0 did not change
    second = await wms.ImportStockSnapshots(batches(), metadata=auth)
    assert (second.applied_count, second.ignored_count, second.changed_count) == (0, 300, 0)
    assert await pool.fetchval("select sum(on_hand) from stock where sku like 'S%'") == 3 * 2 * sum(range(50))


async def test_bad_snapshot_entries_are_invalid_argument_naming_each_field(pool, operator, wms, clients):
    await setup_stock(operator, wms, {("A", "s1"): 1})
    key = (await clients.store.create("erp", PrincipalKind.SERVICE)).key
    auth = (("authorization", f"Bearer {key.get_secret_value()}"),)
    entries = [
        stock_pb2.StockSnapshotEntry(sku="A", location_id="s1", on_hand=5, as_of_time=ts(10)),
        stock_pb2.StockSnapshotEntry(sku="A B", location_id="s1", on_hand=5, as_of_time=ts(10)),
        stock_pb2.StockSnapshotEntry(sku="C", location_id="", on_hand=-1, as_of_time=ts(10)),
        stock_pb2.StockSnapshotEntry(sku="D", location_id="s1", on_hand=5),
        stock_pb2.StockSnapshotEntry(sku="A", location_id="s1", on_hand=6, as_of_time=ts(10)),
        stock_pb2.StockSnapshotEntry(sku="E\x07", location_id="s1", on_hand=5, as_of_time=ts(10)),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wms.ImportStockSnapshots(
            iter([pb.ImportStockSnapshotsRequest(request_id="bad-1", entries=entries)]), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in parse_error(caught.value).field_violations] == [
        "entries[1].sku",
        "entries[2].location_id",
        "entries[2].on_hand",
        "entries[3].as_of_time",
        "entries[4]",
        "entries[5].sku",
    ]
    assert await pool.fetchval("select on_hand from stock where sku = 'A'") == 1  # nothing applied


async def test_a_streamed_message_that_fails_ends_the_stream_after_the_ones_before(
    pool, operator, wms, clients
):
    await setup_stock(operator, wms, {("A", "s1"): 1})
    key = (await clients.store.create("erp", PrincipalKind.SERVICE)).key
    auth = (("authorization", f"Bearer {key.get_secret_value()}"),)

    def message(sku: str, location: str) -> pb.ImportStockSnapshotsRequest:
        entry = stock_pb2.StockSnapshotEntry(sku=sku, location_id=location, on_hand=7, as_of_time=ts(10))
        return pb.ImportStockSnapshotsRequest(request_id="stream-1", entries=[entry])

    # the second message names an unknown location (found in its transaction): the first committed,
    # the third is never applied
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wms.ImportStockSnapshots(
            iter([message("P", "s1"), message("Q", "nowhere"), message("R", "s1")]), metadata=auth
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in parse_error(caught.value).field_violations] == ["entries[0].location_id"]
    # the second message is malformed (found before its transaction): the first committed
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wms.ImportStockSnapshots(iter([message("S", "s1"), message("", "s1")]), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stock = await pool.fetch("select sku from stock where sku in ('P', 'Q', 'R', 'S') order by sku")
    assert [r["sku"] for r in stock] == ["P", "S"]


async def test_oversell_storm_two_processes_64_clients(pool, operator, wms, clients, start_service, env):
    second = await start_service(MODULE, env)
    skus = ["HOT", "B", "C", "D"]
    await setup_stock(operator, wms, {(s, "s1"): 100 for s in skus})
    key = (await clients.store.create("web", PrincipalKind.CHANNEL)).key
    stubs = [
        clients.stub_for(key, address) for address in (clients.address, second.address) for _ in range(32)
    ]

    async def run(phase: str, attempts: list[list[pb.ReserveLine]]) -> list[str]:
        queue: asyncio.Queue[tuple[int, list[pb.ReserveLine]]] = asyncio.Queue()
        for item in enumerate(attempts):
            queue.put_nowait(item)
        outcomes: list[str] = []

        async def client(stub):
            while not queue.empty():
                i, lines = queue.get_nowait()
                rid = f"{phase}-{i}"
                try:
                    await stub.ReserveStock(
                        pb.ReserveStockRequest(reservation_id=rid, channel_id="web", lines=lines)
                    )
                    outcomes.append("ok")
                except grpc.aio.AioRpcError as exc:
                    details = parse_error(exc)
                    assert details.code == grpc.StatusCode.FAILED_PRECONDITION, details
                    assert details.reason == "OUT_OF_STOCK"
                    outcomes.append(details.precondition_violations[0].subject)

        await asyncio.gather(*(client(stub) for stub in stubs))  # 64 concurrent clients
        return outcomes

    # phase 1: 240 single-unit attempts on one hot SKU with 100 units
    outcomes = await run("hot", [[line("HOT", 1)] for _ in range(240)])
    assert outcomes.count("ok") == 100
    assert outcomes.count("HOT") == 140
    await check_invariants(pool)
    # phase 2: multi-line over overlapping SKUs in random line order
    rng = random.Random(5)
    attempts = [[line(s, 1) for s in rng.sample(["B", "C", "D"], rng.choice([2, 3]))] for _ in range(240)]
    outcomes = await run("multi", attempts)
    await check_invariants(pool)
    reserved = {
        r["sku"]: r["reserved_total"] for r in await pool.fetch("select sku, reserved_total from stock")
    }
    assert reserved["HOT"] == 100
    # every accepted attempt was taken whole: live lines add up to the reserved units per SKU
    live = await pool.fetch(
        "select rl.sku, sum(rl.quantity) as q from reservation_lines rl"
        " join reservations r using (reservation_id) where r.state = 'ACTIVE' group by rl.sku"
    )
    assert {r["sku"]: r["q"] for r in live} == {k: v for k, v in reserved.items() if v}
    assert all(reserved[s] <= 100 for s in skus)
    assert outcomes.count("ok") == await pool.fetchval(
        "select count(*) from reservations where reservation_id like 'multi-%'"
    )
    # the out-of-stock ones name a SKU of their request
    assert set(outcomes) - {"ok"} <= {"B", "C", "D"}
    # and something actually ran out (the phase is a real contention test)
    assert max(reserved[s] for s in ["B", "C", "D"]) == 100


async def test_extend_list_and_channel_wide_availability(pool, operator, wms, web, clients):
    await setup_stock(operator, wms, {("A", "s1"): 10, ("A", "s2"): 5})
    wide = await web.GetAvailability(
        pb.GetAvailabilityRequest(
            sku="A", channel_id="web", scope=availability_pb2.AvailabilityScope(all_channel_locations=True)
        )
    )
    assert (wide.availability.available_to_sell, [x.location_id for x in wide.availability.locations]) == (
        15,
        ["s1", "s2"],
    )
    batch = await web.BatchGetAvailability(
        pb.BatchGetAvailabilityRequest(
            channel_id="web",
            totals_only=True,
            queries=[
                pb.AvailabilityQuery(sku="A", scope=availability_pb2.AvailabilityScope(location_id="s2")),
                pb.AvailabilityQuery(
                    sku="UNKNOWN", scope=availability_pb2.AvailabilityScope(location_id="s2")
                ),
            ],
        )
    )
    assert [a.available_to_sell for a in batch.availabilities] == [5, 0]
    created = await web.ReserveStock(
        pb.ReserveStockRequest(
            reservation_id="r1", channel_id="web", lines=[line("A", 1)], ttl=Duration(seconds=60)
        )
    )
    extended = await web.ExtendReservation(
        pb.ExtendReservationRequest(request_id="e1", reservation_id="r1", ttl=Duration(seconds=3600))
    )
    assert extended.reservation.expire_time.ToDatetime() > created.reservation.expire_time.ToDatetime()
    assert extended.reservation.version == 2
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.ExtendReservation(
            pb.ExtendReservationRequest(
                request_id="e2", reservation_id="r1", ttl=Duration(seconds=100 * 3600)
            )
        )
    assert parse_error(caught.value).fields == ["ttl"]
    for i in range(3):
        await web.ReserveStock(
            pb.ReserveStockRequest(reservation_id=f"p{i}", channel_id="web", lines=[line("A", 1)])
        )
    mkt = await clients.stub("mkt", PrincipalKind.CHANNEL)
    await mkt.ReserveStock(
        pb.ReserveStockRequest(reservation_id="m1", channel_id="mkt", lines=[line("A", 1)])
    )
    seen, token = [], ""
    while True:
        page = await web.ListReservations(pb.ListReservationsRequest(page_size=2, page_token=token))
        seen += [r.reservation_id for r in page.reservations]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == ["p0", "p1", "p2", "r1"]  # only its own, every one once
    everything = await operator.ListReservations(pb.ListReservationsRequest(page_size=100))
    assert len(everything.reservations) == 5


async def test_batch_availability_mixes_scopes_in_query_order_with_breakdowns(
    pool, operator, wms, web, clients
):
    """Location queries (answered set-based), region and channel-wide ones in one batch: each answer in
    its query's place, figures by the domain formula (DESIGN §6), fences and channel scoping included."""
    await setup_stock(operator, wms, {("A", "s1"): 100, ("A", "s2"): 10, ("B", "s1"): 30})
    # s3 (region r2) does not serve web: its positions are reported, but not sellable for web
    await operator.UpsertLocation(
        pb.UpsertLocationRequest(
            request_id="loc-s3",
            location=location_pb2.Location(
                location_id="s3",
                kind=location_pb2.LOCATION_KIND_STORE,
                region_id="r2",
                time_zone="Europe/Berlin",
                channel_ids=["mkt"],
                active=True,
            ),
        )
    )
    await wms.RecordMovements(
        pb.RecordMovementsRequest(
            request_id="seed-s3",
            movements=[
                stock_pb2.Movement(
                    movement_id="seed-A-s3",
                    sku="A",
                    location_id="s3",
                    delta=7,
                    kind=stock_pb2.MOVEMENT_KIND_RECEIPT,
                    occur_time=ts(),
                )
            ],
        )
    )
    await operator.SetStockPolicies(
        pb.SetStockPoliciesRequest(
            request_id="p1",
            policies=[
                stock_pb2.StockPolicy(
                    sku="A",
                    location_id="s1",
                    fences=[stock_pb2.ChannelFence(channel_id="mkt", fixed_quantity=20)],
                ),
                stock_pb2.StockPolicy(
                    sku="B",
                    location_id="s1",
                    safety_stock=5,
                    fences=[stock_pb2.ChannelFence(channel_id="web", share_basis_points=5000)],
                ),
            ],
        )
    )
    mkt = await clients.stub("mkt", PrincipalKind.CHANNEL)
    await mkt.ReserveStock(
        pb.ReserveStockRequest(reservation_id="m1", channel_id="mkt", lines=[line("A", 5)])
    )
    await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="w1", channel_id="web", lines=[line("B", 3)])
    )

    def at(sku: str, location_id: str) -> pb.AvailabilityQuery:
        return pb.AvailabilityQuery(
            sku=sku, scope=availability_pb2.AvailabilityScope(location_id=location_id)
        )

    queries = [
        at("A", "s1"),
        at("UNKNOWN", "s1"),
        at("B", "s1"),
        at("A", "s3"),
        pb.AvailabilityQuery(sku="A", scope=availability_pb2.AvailabilityScope(region_id="r1")),
        at("A", "s1"),
        pb.AvailabilityQuery(sku="A", scope=availability_pb2.AvailabilityScope(all_channel_locations=True)),
        at("B", "s2"),
        pb.AvailabilityQuery(sku="A", scope=availability_pb2.AvailabilityScope(region_id="r2")),
    ]
    got = await web.BatchGetAvailability(pb.BatchGetAvailabilityRequest(channel_id="web", queries=queries))
    # A@s1 for web: 100 on hand - 5 reserved - (mkt's fence 20 - its 5 reserved) = 80
    a1 = (80, 100, 5, 0, 15, 0, 0, True)
    # B@s1: 30 - 3 reserved - 5 safety = 22; web's own fence is half of on-hand, 3 of it reserved
    b1 = (22, 30, 3, 5, 0, 15, 3, True)
    a2 = (10, 10, 0, 0, 0, 0, 0, True)
    a3 = (0, 7, 0, 0, 0, 0, 0, False)
    expected = [
        (80, [("s1", *a1)]),
        (0, []),
        (22, [("s1", *b1)]),
        (0, [("s3", *a3)]),
        (90, [("s1", *a1), ("s2", *a2)]),
        (80, [("s1", *a1)]),
        (90, [("s1", *a1), ("s2", *a2)]),
        (0, []),
        (0, [("s3", *a3)]),
    ]
    assert [a.sku for a in got.availabilities] == [q.sku for q in queries]
    assert {a.channel_id for a in got.availabilities} == {"web"}
    assert [
        (
            a.available_to_sell,
            [
                (
                    x.location_id,
                    x.available_to_sell,
                    x.on_hand,
                    x.reserved_total,
                    x.safety_stock,
                    x.fenced_for_other_channels,
                    x.channel_fence,
                    x.channel_reserved,
                    x.sellable,
                )
                for x in a.locations
            ],
        )
        for a in got.availabilities
    ] == expected
    totals = await web.BatchGetAvailability(
        pb.BatchGetAvailabilityRequest(channel_id="web", queries=queries, totals_only=True)
    )
    assert [(a.sku, a.available_to_sell, len(a.locations)) for a in totals.availabilities] == [
        (q.sku, e[0], 0) for q, e in zip(queries, expected, strict=True)
    ]
    # a bad id deep in a batch is named by its index
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.BatchGetAvailability(
            pb.BatchGetAvailabilityRequest(channel_id="web", queries=[at("A", "s1"), at("A", "s 1")])
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f.field for f in parse_error(caught.value).field_violations] == ["queries[1].scope.location_id"]


async def test_threshold_rules_over_grpc(pool, operator, wms, web, clients):
    await setup_stock(operator, wms, {("A", "s1"): 12})
    rule = threshold_pb2.ThresholdRule(
        sku="A",
        location_id="s1",
        channel_id="web",
        owner=threshold_pb2.ThresholdOwner(campaign_id="camp-7"),
        absolute=threshold_pb2.AbsoluteThreshold(below_quantity=10, restore_quantity=12),
    )
    created = await wms.CreateThresholdRule(pb.CreateThresholdRuleRequest(request_id="t1", rule=rule))
    assert created.rule.state == threshold_pb2.THRESHOLD_STATE_ABOVE
    again = await wms.CreateThresholdRule(pb.CreateThresholdRuleRequest(request_id="t1", rule=rule))
    assert again.rule.rule_id == created.rule.rule_id
    operator_rule = threshold_pb2.ThresholdRule()
    operator_rule.CopyFrom(rule)
    operator_rule.owner.operator_id = "ops-1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wms.CreateThresholdRule(pb.CreateThresholdRuleRequest(request_id="t2", rule=operator_rule))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.CreateThresholdRule(pb.CreateThresholdRuleRequest(request_id="t3", rule=rule))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="r1", channel_id="web", lines=[line("A", 3)])
    )
    got = await wms.GetThresholdRule(pb.GetThresholdRuleRequest(rule_id=created.rule.rule_id))
    assert (got.rule.state, got.rule.version) == (threshold_pb2.THRESHOLD_STATE_BELOW, 2)
    listed = await wms.ListThresholdRules(pb.ListThresholdRulesRequest(campaign_id="camp-7"))
    assert [r.rule_id for r in listed.rules] == [created.rule.rule_id]
    await wms.DeleteThresholdRule(
        pb.DeleteThresholdRuleRequest(request_id="d1", rule_id=created.rule.rule_id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wms.GetThresholdRule(pb.GetThresholdRuleRequest(rule_id=created.rule.rule_id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await pool.fetchval("select rule_count from stock where sku = 'A'") == 0


async def test_events_reach_jetstream_through_the_relay(pool, operator, wms, web, nats_server):
    import nats

    from retail.inventory.v1 import events_pb2

    await setup_stock(operator, wms, {("A", "s1"): 10})
    await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="r1", channel_id="web", lines=[line("A", 4)])
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    found: dict[str, bytes] = {}

    async def published() -> bool:
        subjects = {  # the convention: snake_case event, then the aggregate key as tokens
            "ReservationChanged": "retail.inventory.v1.reservation_changed.r1",
            "AvailabilityChanged": "retail.inventory.v1.availability_changed.A.s1",
            "LocationUpserted": "retail.inventory.v1.location_upserted.s1",
        }
        for event, subject in subjects.items():
            try:
                msg = await js.get_last_msg("INVENTORY", subject)
            except Exception:
                return False
            found[event] = msg.data
        return True

    try:
        await eventually(published, "the relay publishes inventory events")
    finally:
        await nc.close()
    reservation = events_pb2.ReservationChanged.FromString(found["ReservationChanged"])
    assert (reservation.reservation.reservation_id, reservation.change) == (
        "r1",
        reservation_pb2.RESERVATION_CHANGE_CREATED,
    )
    availability = events_pb2.AvailabilityChanged.FromString(found["AvailabilityChanged"])
    assert (availability.sku, availability.reserved_total) == ("A", 4)
    assert {c.channel_id: c.available_to_sell for c in availability.channels} == {"web": 6, "mkt": 6}


async def test_list_validation_names_fields(operator):
    for request, field in (
        (pb.ListReservationsRequest(page_token="garbage"), "page_token"),
        (pb.ListReservationsRequest(state=99), "state"),
        (pb.ListReservationsRequest(page_size=5000), "page_size"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await operator.ListReservations(request)
        assert parse_error(caught.value).fields == [field]


# ------------------------------------------------------------------------------------ etags


def store(location_id: str, display_name: str, etag: str = "") -> location_pb2.Location:
    return location_pb2.Location(
        location_id=location_id,
        kind=location_pb2.LOCATION_KIND_STORE,
        display_name=display_name,
        region_id="r1",
        time_zone="Europe/Berlin",
        channel_ids=["web"],
        active=True,
        etag=etag,
    )


async def aborted(call) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert parse_error(caught.value).reason == "ETAG_MISMATCH"


async def test_location_upsert_with_etag(pool, operator):
    created = (
        await operator.UpsertLocation(pb.UpsertLocationRequest(request_id="u1", location=store("s9", "A")))
    ).location
    assert created.etag == str(created.version)
    # a conditional upsert of a location that does not exist
    await aborted(
        operator.UpsertLocation(pb.UpsertLocationRequest(request_id="u0", location=store("s8", "X", "1")))
    )
    updated = (
        await operator.UpsertLocation(
            pb.UpsertLocationRequest(request_id="u2", location=store("s9", "B", created.etag))
        )
    ).location
    assert (updated.display_name, updated.etag != created.etag) == ("B", True)
    # a writer that read the first version loses and changes nothing
    await aborted(
        operator.UpsertLocation(
            pb.UpsertLocationRequest(request_id="u3", location=store("s9", "C", created.etag))
        )
    )
    got = (await operator.GetLocation(pb.GetLocationRequest(location_id="s9"))).location
    assert (got.display_name, got.etag) == ("B", updated.etag)
    # the retry of an accepted request still returns its first result; empty etag is unconditional
    again = await operator.UpsertLocation(
        pb.UpsertLocationRequest(request_id="u2", location=store("s9", "B", created.etag))
    )
    assert again.location.etag == updated.etag
    forced = await operator.UpsertLocation(
        pb.UpsertLocationRequest(request_id="u4", location=store("s9", "D"))
    )
    assert forced.location.display_name == "D"
    assert await pool.fetchval("select count(*) from audit_log where entity_key = 's9'") == 3


async def test_stock_policy_etag_ignores_stock_traffic(pool, operator, wms, web):
    await setup_stock(operator, wms, {("A", "s1"): 10, ("B", "s1"): 10})
    (a0, b0) = (
        await wms.BatchGetStockPositions(
            pb.BatchGetStockPositionsRequest(
                keys=[pb.StockKey(sku="A", location_id="s1"), pb.StockKey(sku="B", location_id="s1")]
            )
        )
    ).positions
    first = await operator.SetStockPolicies(
        pb.SetStockPoliciesRequest(
            request_id="p1",
            policies=[stock_pb2.StockPolicy(sku="A", location_id="s1", safety_stock=2, etag=a0.policy_etag)],
        )
    )
    (a1,) = first.positions
    assert a1.policy_etag != a0.policy_etag
    # reservations change the position (its version) but not its policy etag
    await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="r1", channel_id="web", lines=[line("A", 1)])
    )
    (a2,) = (
        await wms.BatchGetStockPositions(
            pb.BatchGetStockPositionsRequest(keys=[pb.StockKey(sku="A", location_id="s1")])
        )
    ).positions
    assert a2.version > a1.version
    assert a2.policy_etag == a1.policy_etag
    ok = await operator.SetStockPolicies(
        pb.SetStockPoliciesRequest(
            request_id="p2",
            policies=[stock_pb2.StockPolicy(sku="A", location_id="s1", safety_stock=3, etag=a2.policy_etag)],
        )
    )
    assert ok.positions[0].safety_stock == 3
    # one stale etag aborts the whole request: B (current etag) is not changed either
    await aborted(
        operator.SetStockPolicies(
            pb.SetStockPoliciesRequest(
                request_id="p3",
                policies=[
                    stock_pb2.StockPolicy(sku="B", location_id="s1", safety_stock=5, etag=b0.policy_etag),
                    stock_pb2.StockPolicy(sku="A", location_id="s1", safety_stock=9, etag=a2.policy_etag),
                ],
            )
        )
    )
    rows = {r["sku"]: r["safety_stock"] for r in await pool.fetch("select sku, safety_stock from stock")}
    assert rows == {"A": 3, "B": 0}


async def test_threshold_rule_delete_with_etag(pool, operator, wms, web):
    await setup_stock(operator, wms, {("A", "s1"): 12})
    rule = threshold_pb2.ThresholdRule(
        sku="A",
        location_id="s1",
        channel_id="web",
        owner=threshold_pb2.ThresholdOwner(operator_id="ops-1"),
        absolute=threshold_pb2.AbsoluteThreshold(below_quantity=10, restore_quantity=12),
    )
    created = (
        await operator.CreateThresholdRule(pb.CreateThresholdRuleRequest(request_id="t1", rule=rule))
    ).rule
    assert created.etag == "1"
    # the rule flips to BELOW: the etag read before is stale now
    await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="r1", channel_id="web", lines=[line("A", 3)])
    )
    await aborted(
        operator.DeleteThresholdRule(
            pb.DeleteThresholdRuleRequest(request_id="d1", rule_id=created.rule_id, etag=created.etag)
        )
    )
    current = (await operator.GetThresholdRule(pb.GetThresholdRuleRequest(rule_id=created.rule_id))).rule
    assert current.state == threshold_pb2.THRESHOLD_STATE_BELOW
    assert current.etag != created.etag
    await operator.DeleteThresholdRule(
        pb.DeleteThresholdRuleRequest(request_id="d2", rule_id=created.rule_id, etag=current.etag)
    )
    assert await pool.fetchval("select count(*) from threshold_rules") == 0


# ---------------------------------------------------------------------- location default fences


async def test_location_default_fences_over_grpc(pool, operator, wms, web):
    await setup_stock(operator, wms, {("A", "s1"): 100, ("B", "s1"): 100})
    current = (await operator.GetLocation(pb.GetLocationRequest(location_id="s1"))).location
    fenced = location_pb2.Location()
    fenced.CopyFrom(current)
    del fenced.default_fences[:]
    fenced.default_fences.append(stock_pb2.ChannelFence(channel_id="mkt", share_basis_points=2500))
    bad = location_pb2.Location()
    bad.CopyFrom(fenced)
    bad.default_fences.append(stock_pb2.ChannelFence(channel_id="app"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.UpsertLocation(pb.UpsertLocationRequest(request_id="f0", location=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in parse_error(caught.value).field_violations] == [
        "location.default_fences[1].amount"
    ]
    upserted = await operator.UpsertLocation(pb.UpsertLocationRequest(request_id="f1", location=fenced))
    assert [(f.channel_id, f.share_basis_points) for f in upserted.location.default_fences] == [("mkt", 2500)]
    await operator.SetStockPolicies(
        pb.SetStockPoliciesRequest(
            request_id="p1",
            policies=[
                stock_pb2.StockPolicy(
                    sku="B",
                    location_id="s1",
                    fences=[stock_pb2.ChannelFence(channel_id="mkt", fixed_quantity=10)],
                )
            ],
        )
    )
    scope = availability_pb2.AvailabilityScope(location_id="s1")
    a = await web.GetAvailability(pb.GetAvailabilityRequest(sku="A", channel_id="web", scope=scope))
    b = await web.GetAvailability(pb.GetAvailabilityRequest(sku="B", channel_id="web", scope=scope))
    # A: 25% of 100 kept for mkt by the location's default; B: its own fixed 10 replaces it
    assert (a.availability.available_to_sell, a.availability.locations[0].fenced_for_other_channels) == (
        75,
        25,
    )
    assert (b.availability.available_to_sell, b.availability.locations[0].fenced_for_other_channels) == (
        90,
        10,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await web.ReserveStock(
            pb.ReserveStockRequest(reservation_id="r1", channel_id="web", lines=[line("A", 76)])
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await web.ReserveStock(
        pb.ReserveStockRequest(reservation_id="r2", channel_id="web", lines=[line("A", 75)])
    )
    positions = await wms.BatchGetStockPositions(
        pb.BatchGetStockPositionsRequest(keys=[pb.StockKey(sku="A", location_id="s1")])
    )
    assert list(positions.positions[0].fences) == []  # the position's own policy has none
    await check_invariants(pool)


async def test_batch_threshold_rules_register_like_single_ones_in_one_call(pool, operator, wms):
    await setup_stock(operator, wms, {("A", "s1"): 12, ("A", "s2"): 12})

    def request(n: int, loc: str, channel: str, below: int) -> pb.CreateThresholdRuleRequest:
        rule = threshold_pb2.ThresholdRule(
            sku="A",
            location_id=loc,
            channel_id=channel,
            owner=threshold_pb2.ThresholdOwner(campaign_id="camp-9"),
            absolute=threshold_pb2.AbsoluteThreshold(below_quantity=below),
        )
        return pb.CreateThresholdRuleRequest(request_id=f"b{n}", rule=rule)

    batch = [request(0, "s2", "web", 10), request(1, "s1", "mkt", 20), request(2, "s1", "web", 10)]
    created = await wms.BatchCreateThresholdRules(pb.BatchCreateThresholdRulesRequest(requests=batch))
    assert [(r.location_id, r.channel_id, r.state) for r in created.rules] == [  # request order
        ("s2", "web", threshold_pb2.THRESHOLD_STATE_ABOVE),
        ("s1", "mkt", threshold_pb2.THRESHOLD_STATE_BELOW),  # 12 < 20 at creation
        ("s1", "web", threshold_pb2.THRESHOLD_STATE_ABOVE),
    ]
    again = await wms.BatchCreateThresholdRules(pb.BatchCreateThresholdRulesRequest(requests=batch))
    assert [r.rule_id for r in again.rules] == [r.rule_id for r in created.rules]  # idempotent per entry
    single = await wms.CreateThresholdRule(batch[0])
    assert single.rule.rule_id == created.rules[0].rule_id  # the same keys as CreateThresholdRule
    twice = await wms.BatchCreateThresholdRules(
        pb.BatchCreateThresholdRulesRequest(requests=[request(5, "s2", "mkt", 5), request(5, "s2", "mkt", 5)])
    )
    assert twice.rules[0].rule_id == twice.rules[1].rule_id  # one key in one batch: one rule
    assert await pool.fetchval("select rule_count from stock where sku = 'A' and location_id = 's2'") == 2
    bad = [request(3, "s1", "web", 5), request(4, "nowhere", "web", 5)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wms.BatchCreateThresholdRules(pb.BatchCreateThresholdRulesRequest(requests=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in parse_error(caught.value).field_violations] == ["requests[1].rule.location_id"]
    listed = await wms.ListThresholdRules(pb.ListThresholdRulesRequest(campaign_id="camp-9"))
    assert len(listed.rules) == 4  # the refused batch created nothing
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wms.BatchCreateThresholdRules(pb.BatchCreateThresholdRulesRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_batch_threshold_rules_refuse_bad_input_naming_the_field_and_change_nothing(
    pool, operator, wms
):
    await setup_stock(operator, wms, {("A", "s1"): 12})

    def request(n: int, sku: str = "A", below: int = 5) -> pb.CreateThresholdRuleRequest:
        rule = threshold_pb2.ThresholdRule(
            sku=sku,
            location_id="s1",
            channel_id="web",
            owner=threshold_pb2.ThresholdOwner(campaign_id="camp-9"),
            absolute=threshold_pb2.AbsoluteThreshold(below_quantity=below),
        )
        return pb.CreateThresholdRuleRequest(request_id=f"bad{n}", rule=rule)

    async def changed() -> tuple[int, int, int]:
        return (
            await pool.fetchval("select count(*) from threshold_rules"),
            await pool.fetchval("select count(*) from audit_log where entity_type like '%ThresholdRule'"),
            await pool.fetchval("select sum(rule_count) from stock"),
        )

    before = await changed()
    cases = [
        ([request(0), request(1, below=0)], ["requests[1].rule.absolute.below_quantity"]),
        ([request(0), request(1), request(2, sku="ZZ")], ["requests[2].rule.sku"]),
    ]
    for batch, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await wms.BatchCreateThresholdRules(pb.BatchCreateThresholdRulesRequest(requests=batch))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in parse_error(caught.value).field_violations] == fields
        assert await changed() == before
    created = await wms.BatchCreateThresholdRules(pb.BatchCreateThresholdRulesRequest(requests=[request(0)]))
    assert await changed() == (before[0] + 1, before[1] + 1, before[2] + 1)
    audit = await pool.fetchrow("select * from audit_log where entity_type like '%ThresholdRule'")
    assert audit["entity_key"] == created.rules[0].rule_id
    assert (audit["actor_id"], audit["action"]) == (
        "wms",
        "/retail.inventory.v1.InventoryService/BatchCreateThresholdRules",
    )
