"""The pricing service over real gRPC, running as separate processes (python -m retail_pricing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from google.type import decimal_pb2

from retail.common.v1 import time_window_pb2
from retail.pricing.v1 import (
    change_sets_pb2,
    events_pb2,
    price_lists_pb2,
    pricing_service_pb2_grpc,
    resolution_pb2,
)
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.errors import parse_error
from retail_common.grpcx import connect
from retail_pricing.service import APPROVER_ROLE, OPERATOR_ROLE
from retail_pricing.testing import add, as_decimal, money, price_list, product, query, ts

MODULE = "retail_pricing"
NOW = datetime.now(UTC).replace(microsecond=0)
PRICING_TABLES = ("products", "price_lists", "price_entries", "tax_rates", "locations")


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Poll until check() holds (a generous bound, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def env(database_url, nats_server):
    return {"DATABASE_URL": database_url, "NATS_URL": nats_server.url, "DB_POOL_MAX": "5"}


@pytest.fixture
async def service(start_service, env):
    return await start_service(MODULE, env)


@pytest.fixture
async def pool(service, database_url):
    p = await create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


class Clients:
    def __init__(self, pool) -> None:
        self.store = CredentialStore(pool)
        self.channels: list[grpc.aio.Channel] = []
        self.keys: dict[str, str] = {}

    async def stub(self, address: str, principal: str, kind: PrincipalKind, roles=()):
        key = (await self.store.create(principal, kind, roles)).key
        self.keys[principal] = key.get_secret_value()
        channel = connect(address, credential=key, default_timeout=30.0, tracing=False)
        self.channels.append(channel)
        return pricing_service_pb2_grpc.PricingServiceStub(channel)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


@pytest.fixture
async def clients(pool):
    c = Clients(pool)
    yield c
    await c.close()


@pytest.fixture
async def alice(clients, service):
    return await clients.stub(
        service.address, "alice", PrincipalKind.OPERATOR, [OPERATOR_ROLE, APPROVER_ROLE]
    )


@pytest.fixture
async def bob(clients, service):
    return await clients.stub(service.address, "bob", PrincipalKind.OPERATOR, [OPERATOR_ROLE, APPROVER_ROLE])


@pytest.fixture
async def web(clients, service):
    return await clients.stub(service.address, "web", PrincipalKind.CHANNEL)


async def seed(alice, skus=("A",)) -> None:
    await alice.BatchUpsertProducts(
        pb.BatchUpsertProductsRequest(request_id="p", products=[product(s) for s in skus])
    )
    await alice.CreatePriceList(pb.CreatePriceListRequest(request_id="l", price_list=price_list("base")))


async def approve(author, approver, request_id: str, *items) -> pb.ApproveChangeSetResponse:
    created = await author.CreateChangeSet(
        pb.CreateChangeSetRequest(
            request_id=f"{request_id}-c", change_set=change_sets_pb2.ChangeSet(items=list(items))
        )
    )
    submitted = await author.SubmitChangeSet(
        pb.SubmitChangeSetRequest(
            request_id=f"{request_id}-s",
            change_set_id=created.change_set.change_set_id,
            etag=created.change_set.etag,
        )
    )
    return await approver.ApproveChangeSet(
        pb.ApproveChangeSetRequest(
            request_id=f"{request_id}-a",
            change_set_id=submitted.change_set.change_set_id,
            etag=submitted.change_set.etag,
        )
    )


async def invalid(call: Awaitable[object]) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = parse_error(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    return details.fields


async def counts(pool) -> tuple[int, int]:
    return (
        await pool.fetchval("select count(*) from change_sets"),
        await pool.fetchval("select count(*) from price_entries"),
    )


async def test_approval_flow_resolution_and_explain_over_grpc(alice, bob, web, pool) -> None:
    await seed(alice)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await approve(alice, alice, "self", add("base", "A", "9.99", NOW))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    approved = await approve(alice, bob, "ok", add("base", "A", "9.99", NOW))
    assert approved.change_set.state == change_sets_pb2.CHANGE_SET_STATE_APPROVED
    # every audit record names the mutation's request_id (the runtime puts it in the call context)
    audit = await bob.ListAuditRecords(pb.ListAuditRecordsRequest(page_size=100))
    by_action = {r.action.rsplit("/", 1)[-1]: r.request_id for r in audit.records}
    assert by_action["CreatePriceList"] == "l"
    assert by_action["ApproveChangeSet"] == "ok-a"
    assert all(r.request_id for r in audit.records)

    resolved = await web.ResolvePrice(pb.ResolvePriceRequest(query=query("A")))
    assert as_decimal(resolved.price.price.gross) == Decimal("9.99")
    explained = await web.ExplainPrice(pb.ExplainPriceRequest(query=query("A")))
    assert [c.outcome for c in explained.candidates] == [resolution_pb2.CANDIDATE_OUTCOME_WINNER]
    # A channel may not change prices.
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await web.CreateChangeSet(
            pb.CreateChangeSetRequest(request_id="x", change_set=change_sets_pb2.ChangeSet())
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(alice, web, pool) -> None:
    await seed(alice)
    bad_list = price_list("x", currency="EURO")
    assert await invalid(
        alice.CreatePriceList(pb.CreatePriceListRequest(request_id="l2", price_list=bad_list))
    ) == ["price_list.currency_code"]
    cases = [
        (add("base", "A", "-1.00", NOW), "change_set.items[0].add_entry.amount"),
        (
            add("base", "A", "1.00", NOW, NOW - timedelta(days=1)),
            "change_set.items[0].add_entry.window.absolute.end_time",
        ),
        (add("base", "NOPE", "1.00", NOW), "change_set.items[0].add_entry.sku"),
        (add("base", "A", "1.00", NOW, currency="XXY"), "change_set.items[0].add_entry.amount.currency_code"),
    ]
    for i, (item, field) in enumerate(cases):
        request = pb.CreateChangeSetRequest(
            request_id=f"bad-{i}", change_set=change_sets_pb2.ChangeSet(items=[item])
        )
        assert await invalid(alice.CreateChangeSet(request)) == [field]
    too_many = pb.BatchResolvePricesRequest(queries=[query("A")] * 1001)
    assert await invalid(web.BatchResolvePrices(too_many)) == ["queries"]
    assert await counts(pool) == (0, 0)
    assert await pool.fetchval("select count(*) from price_lists") == 1


def bearer(clients: Clients, principal: str) -> list[tuple[str, str]]:
    """grpc.aio registers a channel interceptor for the first call kind it implements only, so
    retail_common.grpcx.connect() adds the credential to unary-unary calls only: streams pass it here."""
    return [("authorization", f"Bearer {clients.keys[principal]}")]


async def test_malformed_csv_rows_are_reported_by_row_and_nothing_is_kept(alice, clients, pool) -> None:
    await seed(alice)
    csv_text = (
        b"price_list_id,sku,amount,currency_code,start_time,end_time\n"
        b"base,A,1.00,EUR,2030-01-01T00:00:00Z,\n"
        b"base,A,abc,EUR,2030-02-01T00:00:00Z,\n"
        b"base,NOPE,1.00,EUR,2030-03-01T00:00:00Z,\n"
        b"base,A,1.00,EUR,2030-05-01T00:00:00Z,2030-04-01T00:00:00Z\n"
    )

    async def chunks():
        yield pb.ImportPriceEntriesRequest(request_id="imp", description="bad", data=csv_text[:50])
        yield pb.ImportPriceEntriesRequest(data=csv_text[50:])

    fields = await invalid(alice.ImportPriceEntries(chunks(), metadata=bearer(clients, "alice"), timeout=30))
    assert sorted(fields) == ["rows[3].amount", "rows[4].sku", "rows[5].end_time"]
    assert await counts(pool) == (0, 0)


async def test_csv_import_creates_a_draft_change_set(alice, bob, web, clients, pool) -> None:
    await seed(alice, skus=("A", "B"))
    csv_text = (
        "sku,price_list_id,amount,currency_code,start_time,min_quantity\n"
        f"A,base,2.50,EUR,{NOW.isoformat()},\n"
        f"B,base,3.50,EUR,{NOW.isoformat()},10\n"
    ).encode()

    async def chunks():
        for i in range(0, len(csv_text), 7):
            yield pb.ImportPriceEntriesRequest(request_id="imp" if i == 0 else "", data=csv_text[i : i + 7])

    imported = await alice.ImportPriceEntries(chunks(), metadata=bearer(clients, "alice"), timeout=30)
    assert imported.row_count == 2
    cs = imported.change_set
    assert cs.state == change_sets_pb2.CHANGE_SET_STATE_DRAFT
    submitted = await alice.SubmitChangeSet(
        pb.SubmitChangeSetRequest(request_id="s", change_set_id=cs.change_set_id, etag=cs.etag)
    )
    await bob.ApproveChangeSet(
        pb.ApproveChangeSetRequest(
            request_id="a", change_set_id=cs.change_set_id, etag=submitted.change_set.etag
        )
    )
    b10 = await web.ResolvePrice(pb.ResolvePriceRequest(query=query("B", quantity=10)))
    assert as_decimal(b10.price.price.gross) == Decimal("3.50")


async def test_etag_conflict_is_aborted_and_retry_returns_first_result(alice, pool) -> None:
    await seed(alice)
    got = await alice.GetPriceList(pb.GetPriceListRequest(price_list_id="base"))
    first = got.price_list
    first.display_name = "one"
    request = pb.UpdatePriceListRequest(request_id="u1", price_list=first)
    one = await alice.UpdatePriceList(request)
    assert await alice.UpdatePriceList(request) == one  # retry: same answer, applied once
    assert (await alice.GetPriceList(pb.GetPriceListRequest(price_list_id="base"))).price_list.version == 2
    stale = got.price_list
    stale.display_name = "two"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.UpdatePriceList(pb.UpdatePriceListRequest(request_id="u2", price_list=stale))
    assert caught.value.code() == grpc.StatusCode.ABORTED


async def test_local_window_resolves_in_each_store_zone(alice, bob, web, pool) -> None:
    await seed(alice)
    await pool.execute(
        "insert into locations values"
        " ('berlin', 'de', 'Europe/Berlin', 1), ('ny', 'us', 'America/New_York', 1)"
    )
    local = change_sets_pb2.ChangeSetItem(
        add_entry=change_sets_pb2.AddPriceEntry(
            price_list_id="base",
            sku="A",
            amount=money("5.00"),
            window=time_window_pb2.TimeWindow(
                local=time_window_pb2.LocalWindow(start_time=_wall(2031, 6, 1))
            ),
        )
    )
    await approve(alice, bob, "loc", local)
    berlin_start = datetime(2031, 5, 31, 22, 0, tzinfo=UTC)  # 00:00 CEST
    for location, at, found in [
        ("berlin", berlin_start - timedelta(seconds=1), False),
        ("berlin", berlin_start, True),
        ("ny", berlin_start, False),
        ("ny", datetime(2031, 6, 1, 4, 0, tzinfo=UTC), True),  # 00:00 EDT
    ]:
        result = await web.BatchResolvePrices(
            pb.BatchResolvePricesRequest(queries=[query("A", at, location_id=location)])
        )
        assert result.results[0].HasField("price") is found, (location, at)


def _wall(year: int, month: int, day: int):
    from google.type import datetime_pb2

    return datetime_pb2.DateTime(year=year, month=month, day=day)


async def test_two_processes_resolve_the_new_price_after_approval(
    start_service, env, alice, bob, clients, pool
) -> None:
    await seed(alice)
    await approve(alice, bob, "v1", add("base", "A", "10.00", NOW))
    other = await start_service(MODULE, env)
    web_other = await clients.stub(other.address, "web-2", PrincipalKind.CHANNEL)
    first = await web_other.ResolvePrice(pb.ResolvePriceRequest(query=query("A")))
    assert as_decimal(first.price.price.gross) == Decimal("10.00")  # now cached in the other process
    entry_id = first.price.entry.entry_id
    from retail_pricing.testing import end

    await approve(alice, bob, "v2", end(entry_id), add("base", "A", "8.00", datetime.now(UTC)))

    async def both_see_new_price() -> bool:
        a = await alice.ResolvePrice(pb.ResolvePriceRequest(query=query("A")))
        b = await web_other.ResolvePrice(pb.ResolvePriceRequest(query=query("A")))
        return as_decimal(a.price.price.gross) == as_decimal(b.price.price.gross) == Decimal("8.00")

    await eventually(both_see_new_price, "both replicas resolve 8.00 after the approval")


async def _scans(pool) -> int:
    await pool.execute("select pg_stat_clear_snapshot()")
    value = await pool.fetchval(
        "select coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) from pg_stat_user_tables"
        " where relname = any($1::text[])",
        list(PRICING_TABLES),
    )
    return int(value)


async def _settled_scans(pool) -> int:
    """Table scan counters once the service's backends have flushed their statistics (PG flushes pending
    stats of an idle backend within 10s)."""
    await asyncio.sleep(11)
    return await _scans(pool)


async def test_ten_thousand_resolutions_touch_no_pricing_table_while_nothing_changes(
    alice, bob, web, pool
) -> None:
    await seed(alice, skus=("A", "B"))
    await approve(alice, bob, "p", add("base", "A", "10.00", NOW), add("base", "B", "11.00", NOW))

    async def all_published() -> bool:
        return await pool.fetchval("select count(*) from outbox where published_at is null") == 0

    await eventually(all_published, "the relay published every event")
    await _settled_scans(pool)  # and this replica has seen them: its cache was invalidated by them
    await web.BatchResolvePrices(pb.BatchResolvePricesRequest(queries=[query("A"), query("B")]))  # warm up
    before = await _settled_scans(pool)
    for _ in range(50):
        await asyncio.gather(
            *(web.ResolvePrice(pb.ResolvePriceRequest(query=query(s))) for s in ("A", "B") * 100)
        )
    after = await _settled_scans(pool)
    assert after == before
    # Control: a change does reach the tables (the counters are live).
    await alice.BatchUpsertProducts(pb.BatchUpsertProductsRequest(request_id="p2", products=[product("C")]))
    await web.ResolvePrice(pb.ResolvePriceRequest(query=query("A")))
    assert await _settled_scans(pool) > after


async def _activation_events(pool) -> int:
    rows = await pool.fetch("select payload from outbox where event_type = 'retail.pricing.v1.PriceChanged'")
    causes = [events_pb2.PriceChanged.FromString(r["payload"]).cause for r in rows]
    return causes.count(events_pb2.PRICE_CHANGE_CAUSE_ACTIVATION)


async def _wait_until(instant: datetime) -> None:
    await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()) + 0.1)


async def test_entry_due_while_stopped_is_announced_after_restart(
    start_service, env, service, alice, bob, pool
) -> None:
    await seed(alice)
    markdown = price_list("md", price_lists_pb2.PRICE_LIST_KIND_MARKDOWN)
    await alice.CreatePriceList(pb.CreatePriceListRequest(request_id="md", price_list=markdown))
    due = datetime.now(UTC) + timedelta(seconds=2)
    await approve(alice, bob, "md", add("md", "A", "5.00", due))
    await service.terminate()
    await _wait_until(due)
    assert await _activation_events(pool) == 0  # nobody was running at the instant
    await start_service(MODULE, env)

    async def announced() -> bool:
        return await _activation_events(pool) == 1

    await eventually(announced, "the missed activation is announced after restart")


async def test_two_processes_announce_an_activation_once(start_service, env, alice, bob, pool) -> None:
    await start_service(MODULE, env)
    await seed(alice)
    due = datetime.now(UTC) + timedelta(seconds=2)
    await approve(alice, bob, "b", add("base", "A", "5.00", due))

    async def all_announced() -> bool:
        pending = await pool.fetchval("select count(*) from activations where announced_at is null")
        return pending == 0 and await _activation_events(pool) >= 1

    await eventually(all_announced, "the activation is announced")
    assert await _activation_events(pool) == 1


def _tax_rate(value: str, at: datetime | None = None) -> price_lists_pb2.TaxRate:
    return price_lists_pb2.TaxRate(
        tax_class="standard",
        rate=decimal_pb2.Decimal(value=value),
        effective_time=None if at is None else ts(at),
    )


async def test_two_processes_announce_a_scheduled_tax_rate_once_on_the_injected_clock(
    start_service, env, database_url, tmp_path
) -> None:
    """Both replicas run on one injectable clock (retail_pricing.clocked: an offset in a file); the rate
    is scheduled a day ahead, the clock jumps past it, and the change is announced exactly once."""
    clock_file = tmp_path / "clock-offset"
    clock_file.write_text("0")
    clocked_env = {**env, "PRICING_CLOCK_FILE": str(clock_file)}
    one = await start_service(f"{MODULE}.clocked", clocked_env)
    two = await start_service(f"{MODULE}.clocked", clocked_env)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    clients = Clients(pool)
    try:
        alice = await clients.stub(
            one.address, "alice", PrincipalKind.OPERATOR, [OPERATOR_ROLE, APPROVER_ROLE]
        )
        bob = await clients.stub(two.address, "bob", PrincipalKind.OPERATOR, [OPERATOR_ROLE, APPROVER_ROLE])
        web_two = await clients.stub(two.address, "web", PrincipalKind.CHANNEL)
        await seed(alice, skus=("A", "B"))  # B has no price: nothing to announce for it
        await approve(alice, bob, "b", add("base", "A", "10.00", datetime.now(UTC)))
        await alice.SetTaxRate(pb.SetTaxRateRequest(request_id="t-now", tax_rate=_tax_rate("0.25")))
        change = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        await alice.SetTaxRate(pb.SetTaxRateRequest(request_id="t-jan", tax_rate=_tax_rate("0.10", change)))

        async def net_at(stub, at: datetime | None) -> Decimal:
            resolved = await stub.ResolvePrice(pb.ResolvePriceRequest(query=query("A", at)))
            return as_decimal(resolved.price.price.net)

        async def two_knows_the_schedule() -> bool:  # its configuration cache follows TaxRateChanged
            return await net_at(web_two, change) == Decimal("9.09")

        await eventually(two_knows_the_schedule, "the other replica resolves the scheduled rate")
        assert await net_at(web_two, change - timedelta(microseconds=1)) == Decimal("8.00")
        assert await net_at(web_two, None) == Decimal("8.00")
        assert await _activation_events(pool) == 0

        clock_file.write_text(str(timedelta(days=1, seconds=1).total_seconds()))  # both jump past it

        async def announced() -> bool:
            pending = await pool.fetchval(
                "select count(*) from tax_rate_activations where announced_at is null"
            )
            return pending == 0 and await _activation_events(pool) >= 1

        await eventually(announced, "the scheduled rate is announced")
        assert await _activation_events(pool) == 1
        rows = await pool.fetch(
            "select aggregate_key from outbox where event_type = 'retail.pricing.v1.PriceChanged'"
        )
        assert sorted({r["aggregate_key"] for r in rows}) == ["A"]
        assert await net_at(web_two, None) == Decimal("9.09")  # "now" is past the change on both
    finally:
        await clients.close()
        await pool.close()
