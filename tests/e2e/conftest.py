"""Fixtures of the end-to-end tests: the whole suite as four processes, torn down with their databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from retail_common.testing.nats import NatsServer
from retail_common.testing.postgres import PostgresServer
from tests.e2e.suite import Suite, start_suite


@pytest_asyncio.fixture
async def suite(
    postgres_server: PostgresServer, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[Suite]:
    started = await start_suite(postgres_server, nats_server, tmp_path)
    try:
        yield started
    finally:
        await started.close()
