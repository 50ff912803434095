"""Migration 0003: pricing's own `idempotency_keys` rows move to the shared `request_idempotency`."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime

import asyncpg
import pytest

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.clock import ManualClock
from retail_common.db import IDEMPOTENCY_MIGRATIONS, MigrationSource, create_pool, migrate
from retail_common.errors import InvalidArgument
from retail_common.messaging import OutboxWriter
from retail_common.service import RUNTIME_MIGRATIONS
from retail_pricing.catalog import Catalog
from retail_pricing.handlers import price_lists as pl
from retail_pricing.handlers import products as products_h
from retail_pricing.handlers.common import IDEMPOTENCY_SCOPE, Deps
from retail_pricing.schema import PRICING_MIGRATIONS
from retail_pricing.testing import price_list, product

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
