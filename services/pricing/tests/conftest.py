"""Fixtures of the pricing tests: a migrated database, handler dependencies, an acting operator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio

from retail.pricing.v1 import change_sets_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.clock import ManualClock
from retail_common.context import CallContext, Principal, PrincipalKind, set_call
from retail_common.db import create_pool, migrate
from retail_common.messaging import OutboxWriter
from retail_common.service import RUNTIME_MIGRATIONS
from retail_pricing.catalog import Catalog
from retail_pricing.handlers import change_sets, price_lists, products
from retail_pricing.handlers.common import Deps
from retail_pricing.schema import PRICING_MIGRATIONS
from retail_pricing.testing import price_list, product

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database_url, [*RUNTIME_MIGRATIONS, PRICING_MIGRATIONS])
    p = await create_pool(database_url, min_size=1, max_size=10)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def deps(pool: asyncpg.Pool, clock: ManualClock) -> Deps:
    return Deps(pool=pool, clock=clock, catalog=Catalog(pool), writer=OutboxWriter(clock))


class Acting:
    """Switch the principal of the 'current call' (as the auth interceptor would set it)."""

    def as_(self, principal_id: str) -> None:
        set_call(
            CallContext(
                method="/retail.pricing.v1.PricingService/test",
                principal=Principal(principal_id, PrincipalKind.OPERATOR, frozenset({"pricing.admin"})),
            )
        )


@pytest.fixture
def acting() -> Iterator[Acting]:
    a = Acting()
    a.as_("alice")
    yield a
    set_call(None)


@pytest.fixture
async def seeded(deps: Deps, acting: Acting) -> None:
    """An active SKU "A", an inactive "OFF" and the EUR list "base" (the import tests' catalogue)."""
    await products.batch_upsert_products(
        deps,
        pb.BatchUpsertProductsRequest(request_id="p", products=[product("A"), product("OFF", active=False)]),
    )
    await price_lists.create_price_list(
        deps, pb.CreatePriceListRequest(request_id="l", price_list=price_list("base"))
    )


async def approve(
    deps: Deps, acting: Acting, request_id: str, *items: change_sets_pb2.ChangeSetItem
) -> pb.ApproveChangeSetResponse:
    """A change set of `items` created and submitted by alice, approved by bob; alice acts again after."""
    acting.as_("alice")
    created = await change_sets.create_change_set(
        deps,
        pb.CreateChangeSetRequest(
            request_id=f"{request_id}-c", change_set=change_sets_pb2.ChangeSet(items=list(items))
        ),
    )
    submitted = await change_sets.submit_change_set(
        deps,
        pb.SubmitChangeSetRequest(
            request_id=f"{request_id}-s",
            change_set_id=created.change_set.change_set_id,
            etag=created.change_set.etag,
        ),
    )
    acting.as_("bob")
    try:
        return await change_sets.approve_change_set(
            deps,
            pb.ApproveChangeSetRequest(
                request_id=f"{request_id}-a",
                change_set_id=submitted.change_set.change_set_id,
                etag=submitted.change_set.etag,
            ),
        )
    finally:
        acting.as_("alice")


@contextlib.asynccontextmanager
async def rolled_back(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction that is rolled back afterwards, whatever the block did."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            yield conn
        finally:
            await transaction.rollback()
