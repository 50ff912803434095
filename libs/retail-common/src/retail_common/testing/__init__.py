"""Test helpers: real Postgres databases and real nats-server processes, started by the harness."""

from retail_common.testing.nats import NatsServer
from retail_common.testing.postgres import PostgresServer, TestDatabase

__all__ = ["NatsServer", "PostgresServer", "TestDatabase"]
