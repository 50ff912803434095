"""pytest plugin (loaded from the workspace pytest settings): infrastructure fixtures for every test suite.

- `postgres_server` (session): DATABASE_URL, else 127.0.0.1:5432, else an embedded Postgres.
- `database` / `database_url` (per test): a fresh, empty database dropped after the test.
- `nats_server` (per test): a nats-server with JetStream on a free port with its own store.
- `otlp_receiver` (per test): an OTLP/gRPC receiver collecting the spans and metrics sent to it.
- `start_service` (per test): factory running `python -m <module>` as a separate process on an ephemeral
  port, returning a ServiceProcess once its health is SERVING (killed after the test).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

import pytest
import pytest_asyncio

from retail_common.testing.nats import NatsServer
from retail_common.testing.otlp import OtlpReceiver
from retail_common.testing.postgres import PostgresServer, TestDatabase, locate_postgres
from retail_common.testing.process import ServiceProcess


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = asyncio.run(locate_postgres())
    yield server
    if server.embedded is not None:
        server.embedded.cleanup()


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


StartService = Callable[..., Awaitable[ServiceProcess]]


@pytest_asyncio.fixture
async def start_service() -> AsyncIterator[StartService]:
    """Factory: `await start_service("pkg.module", {"DATABASE_URL": ...})` runs the service as a separate
    process on an ephemeral port and returns once it is SERVING; every process is killed afterwards."""
    started: list[ServiceProcess] = []

    async def start(
        module: str, env: Mapping[str, str], *, wait: bool = True, within: float = 60.0
    ) -> ServiceProcess:
        process = ServiceProcess(module, env)
        started.append(process)
        process.start()
        if wait:
            await process.wait_serving(within)
        return process

    yield start
    for process in started:
        process.kill()
