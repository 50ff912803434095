"""Migration 0003: pricing's own `idempotency_keys` rows move to the shared `request_idempotency`.
Migration 0004: current tax rates become effective-dated history rows."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from google.type import decimal_pb2

from retail.pricing.v1 import price_lists_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.clock import ManualClock
from retail_common.db import IDEMPOTENCY_MIGRATIONS, MigrationSource, create_pool, migrate
from retail_common.errors import InvalidArgument
from retail_common.messaging import OutboxWriter
from retail_common.service import RUNTIME_MIGRATIONS
from retail_pricing.catalog import Catalog
from retail_pricing.handlers import price_lists as pl
from retail_pricing.handlers import products as products_h
from retail_pricing.handlers import tax_rates as tax_h
from retail_pricing.handlers.common import IDEMPOTENCY_SCOPE, Deps
from retail_pricing.repository import tax_rates as tax_repo
from retail_pricing.schema import PRICING_MIGRATIONS
from retail_pricing.testing import price_list, product, ts

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def old_hash(method: str, payload: bytes) -> str:
    """The digest pricing stored before the switch (repository/idempotency.request_hash)."""
    return hashlib.sha256(method.encode() + b"\0" + payload).hexdigest()


async def test_old_keys_are_copied_and_still_replay_and_refuse_reuse(database_url, tmp_path, acting):
    for f in PRICING_MIGRATIONS.files():
        if f.version < 3:
            shutil.copy(f.path, tmp_path / f.path.name)
    await migrate(database_url, [IDEMPOTENCY_MIGRATIONS, MigrationSource(PRICING_MIGRATIONS.name, tmp_path)])

    create = pb.CreatePriceListRequest(request_id="k-create", price_list=price_list("base"))
    create_response = pb.CreatePriceListResponse(price_list=price_list("recorded-before"))
    stream = [
        pb.ImportProductsRequest(request_id="k-import", products=[product("A")]),
        pb.ImportProductsRequest(products=[product("B")]),
    ]
    stream_digest = hashlib.sha256(
        b"".join(m.SerializeToString(deterministic=True) for m in stream)
    ).hexdigest()
    import_response = pb.ImportProductsResponse(received_count=41, changed_count=40)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "insert into idempotency_keys (request_id, method, request_hash, response)"
            " values ($1, $2, $3, $4)",
            [
                (
                    "k-create",
                    "CreatePriceList",
                    old_hash("CreatePriceList", create.SerializeToString(deterministic=True)),
                    create_response.SerializeToString(deterministic=True),
                ),
                ("k-import", "ImportProducts", stream_digest, import_response.SerializeToString()),
            ],
        )
        await migrate(database_url, [*RUNTIME_MIGRATIONS, PRICING_MIGRATIONS])
        assert await conn.fetchval("select to_regclass('idempotency_keys')") is None
        rows = await conn.fetch(
            "select scope, request_id, fingerprint from request_idempotency order by request_id"
        )
        assert [(r["scope"], r["request_id"], r["fingerprint"]) for r in rows] == [
            (
                IDEMPOTENCY_SCOPE,
                "k-create",
                old_hash("CreatePriceList", create.SerializeToString(deterministic=True)),
            ),
            (IDEMPOTENCY_SCOPE, "k-import", f"ImportProducts:{stream_digest}"),
        ]
    finally:
        await conn.close()

    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        clock = ManualClock(START)
        deps = Deps(pool=pool, clock=clock, catalog=Catalog(pool), writer=OutboxWriter(clock))
        # retries of keys recorded before the migration get their first response, without running again
        assert await pl.create_price_list(deps, create) == create_response

        async def replayed():
            for m in stream:
                yield m

        assert await products_h.import_products(deps, replayed()) == import_response
        assert await pool.fetchval("select count(*) from price_lists") == 0
        assert await pool.fetchval("select count(*) from products") == 0
        # the same key for a different request, or in another method, is refused naming request_id
        for call in (
            pl.create_price_list(
                deps, pb.CreatePriceListRequest(request_id="k-create", price_list=price_list("other"))
            ),
            pl.create_price_list(
                deps, pb.CreatePriceListRequest(request_id="k-import", price_list=price_list("base"))
            ),
        ):
            with pytest.raises(InvalidArgument) as caught:
                await call
            assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
            assert [v.field for v in caught.value.violations] == ["request_id"]
    finally:
        await pool.close()


async def test_existing_tax_rates_become_history_rows_effective_since_always(database_url, tmp_path, acting):
    """Migration 0004: each current rate becomes a history row effective since -infinity (the rate the
    service applied at every instant before), already announced; scheduling works on top of it.
    Migration 0005: a rate 0004's schema held as scheduled keeps its pending activation."""

    async def migrate_up_to(version: int) -> None:
        for f in PRICING_MIGRATIONS.files():
            if f.version <= version:
                shutil.copy(f.path, tmp_path / f.path.name)
        await migrate(database_url, [*RUNTIME_MIGRATIONS, MigrationSource(PRICING_MIGRATIONS.name, tmp_path)])

    await migrate_up_to(3)
    set_at = datetime(2025, 6, 1, tzinfo=UTC)
    scheduled_at = START + timedelta(hours=1)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "insert into tax_rates (region_id, tax_class, rate, version, updated_at)"
            " values ($1, $2, $3, $4, $5)",
            [("", "standard", Decimal("0.19"), 3, set_at), ("R1", "standard", Decimal("0.10"), 1, set_at)],
        )
        await migrate_up_to(4)
        rows = await conn.fetch(
            "select region_id, effective_at = '-infinity' as always, announced_at from tax_rates order by 1"
        )
        assert [(r["region_id"], r["always"], r["announced_at"]) for r in rows] == [
            ("", True, set_at),
            ("R1", True, set_at),
        ]
        await conn.execute(  # scheduled under 0004's schema: not announced yet
            "insert into tax_rates (region_id, tax_class, rate, version, updated_at, effective_at)"
            " values ('R2', 'standard', 0.05, 1, $1, $2)",
            set_at,
            scheduled_at,
        )
        await migrate(database_url, [*RUNTIME_MIGRATIONS, PRICING_MIGRATIONS])
        pending = await conn.fetch("select region_id, effective_at, announced_at from tax_rate_activations")
        assert [tuple(r) for r in pending] == [("R2", scheduled_at, None)]
    finally:
        await conn.close()

    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        clock = ManualClock(START)
        deps = Deps(pool=pool, clock=clock, catalog=Catalog(pool), writer=OutboxWriter(clock))
        async with pool.acquire() as c:
            rates = await tax_repo.load_tax_rates(c)
            assert await tax_repo.next_rate_due_at(c) == scheduled_at  # the old rows are not pending
        # Instants before the rows' update time keep the rate the service applied there before.
        assert rates.rate("R1", "standard", set_at - timedelta(days=3650)) == Decimal("0.10")
        assert rates.rate("R2", "standard", set_at - timedelta(days=3650)) == Decimal("0.19")
        listed = await tax_h.list_tax_rates(deps, pb.ListTaxRatesRequest())
        listed.tax_rates.pop()  # R2's scheduled rate
        assert [
            (r.region_id, r.HasField("effective_time"), r.update_time.ToDatetime(UTC))
            for r in listed.tax_rates
        ] == [
            ("", False, set_at),
            ("R1", False, set_at),
        ]
        change = START + timedelta(days=1)
        await tax_h.set_tax_rate(
            deps,
            pb.SetTaxRateRequest(
                request_id="t",
                tax_rate=price_lists_pb2.TaxRate(
                    tax_class="standard", rate=decimal_pb2.Decimal(value="0.21"), effective_time=ts(change)
                ),
            ),
        )
        async with pool.acquire() as c:
            rates = await tax_repo.load_tax_rates(c)
            assert await tax_repo.next_rate_due_at(c) == scheduled_at
            pending = await c.fetchval("select count(*) from tax_rate_activations where announced_at is null")
            assert pending == 2
        assert [rates.rate("", "standard", at) for at in (START, change)] == [
            Decimal("0.19"),
            Decimal("0.21"),
        ]
        assert rates.rate("R1", "standard", change) == Decimal("0.10")
    finally:
        await pool.close()
