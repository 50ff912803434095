"""pytest plugin (loaded from the workspace pytest settings): infrastructure fixtures for every test suite.

- `postgres_server` (session): DATABASE_URL, else 127.0.0.1:5432, else an embedded pgserver.
- `database` / `database_url` (per test): a fresh, empty database dropped after the test.
- `nats_server` (per test): a nats-server with JetStream on a free port with its own store.
- `otlp_receiver` (per test): an OTLP/gRPC receiver collecting the spans and metrics sent to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from retail_common.testing.nats import NatsServer
from retail_common.testing.otlp import OtlpReceiver
from retail_common.testing.postgres import PostgresServer, TestDatabase, locate_postgres


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    return asyncio.run(locate_postgres())


@pytest_asyncio.fixture
async def database(postgres_server: PostgresServer) -> AsyncIterator[TestDatabase]:
    db = await postgres_server.create_database()
    try:
        yield db
    finally:
        await db.drop()


@pytest.fixture
def database_url(database: TestDatabase) -> str:
    return database.dsn


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/gRPC trace+metrics receiver; point OTEL_EXPORTER_OTLP_ENDPOINT at `.endpoint`."""
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()
