"""Fixtures of the gateway tests: a migrated database and a pool (real Postgres, per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from retail_channel_gateway.repository import MIGRATIONS
from retail_common.db import create_pool, migrate
from retail_common.service import RUNTIME_MIGRATIONS


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database_url, [*RUNTIME_MIGRATIONS, MIGRATIONS])
    p = await create_pool(database_url, min_size=1, max_size=10)
    try:
        yield p
    finally:
        await p.close()
