"""Fixtures of the inventory tests: a migrated database, a pool and the repository."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from retail_common.db import AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, create_pool, migrate
from retail_common.messaging import MESSAGING_MIGRATIONS, OutboxWriter
from retail_inventory.repository import MIGRATIONS, InventoryRepository


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database_url, [AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, MESSAGING_MIGRATIONS, MIGRATIONS])
    p = await create_pool(database_url, min_size=1, max_size=20)
    try:
        yield p
    finally:
        await p.close()


@pytest_asyncio.fixture
def repo() -> InventoryRepository:
    return InventoryRepository(OutboxWriter())
