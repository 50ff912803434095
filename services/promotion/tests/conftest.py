"""Fixtures of the promotion tests: a migrated database, a pool and the repositories."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from retail_common.db import AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, create_pool, migrate
from retail_common.messaging import MESSAGING_MIGRATIONS, OutboxWriter
from retail_promotion.repository import MIGRATIONS, CampaignRepository, RedemptionRepository


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database_url, [AUDIT_MIGRATIONS, IDEMPOTENCY_MIGRATIONS, MESSAGING_MIGRATIONS, MIGRATIONS])
    p = await create_pool(database_url, min_size=1, max_size=8)  # the test Postgres is shared
    try:
        yield p
    finally:
        await p.close()


@pytest_asyncio.fixture
def campaigns() -> CampaignRepository:
    return CampaignRepository(OutboxWriter())


@pytest_asyncio.fixture
def redemptions() -> RedemptionRepository:
    return RedemptionRepository()
