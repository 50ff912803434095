"""The four services as separate processes for a benchmark: fresh databases on the local Postgres, a
nats-server of the bench's own, per-service keys, an operator and an approver.

Keys follow `make run` (scripts/run_suite.py): the operator and the approver hold every operator role
the callee's policies name, each service's key every service role, registered in every other service's
database before it starts. `settled()` waits until every outbox is relayed and every JetStream consumer
has taken and acked everything, so a measurement starts from a quiet suite.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Iterable

import asyncpg
import grpc
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from pydantic import SecretStr

from retail_common.auth import AUTH_MIGRATIONS, CredentialStore, MethodPolicy, generate_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool, migrate
from retail_common.grpcx import connect
from retail_common.testing import NatsServer
from retail_common.testing.postgres import TestDatabase, locate_postgres
from retail_common.testing.process import ServiceProcess

__all__ = ["APPROVER", "OPERATOR", "Suite"]

OPERATOR, APPROVER = "bench-operator", "bench-approver"

# name, module, the <NAME>_TARGET variables its dependants get; dependency order
_SERVICES = (
    ("pricing", "retail_pricing"),
    ("inventory", "retail_inventory"),
    ("promotion", "retail_promotion"),
    ("gateway", "retail_channel_gateway"),
)
_TARGETS = {"pricing": "PRICING", "inventory": "INVENTORY_RESERVATION", "promotion": "PROMOTION"}


def _roles(policies: Iterable[MethodPolicy], kind: PrincipalKind) -> set[str]:
    return {
        role for policy in policies if policy.kinds is None or kind in policy.kinds for role in policy.roles
    }


class Suite:
    """`extra_env[name]` adds settings to one service (e.g. DB_POOL_MAX)."""

    def __init__(self, extra_env: dict[str, dict[str, str]] | None = None) -> None:
        self.nats = NatsServer()
        self.extra_env = extra_env or {}
        self.dbs: dict[str, TestDatabase] = {}
        self.processes: dict[str, ServiceProcess] = {}
        self.keys = {name: generate_key()[1] for name in (OPERATOR, APPROVER, *(n for n, _ in _SERVICES))}
        self._channels: list[grpc.aio.Channel] = []
        self.pools: dict[str, asyncpg.Pool[asyncpg.Record]] = {}
        self.nc: NatsClient | None = None

    @property
    def js(self) -> JetStreamContext:
        assert self.nc is not None, "start() first"
        return self.nc.jetstream()

    async def start(self) -> None:
        server = await locate_postgres()
        for name, _ in _SERVICES:
            self.dbs[name] = await server.create_database(f"bfan_{name}")
        self.nats.start()
        for name, module in _SERVICES:
            await self._register_keys(name, module)
        common = {"NATS_URL": self.nats.url, "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
        targets: dict[str, str] = {}
        for name, module in _SERVICES:
            env = {
                **common,
                **targets,
                "DATABASE_URL": self.dbs[name].dsn,
                "SERVICE_CREDENTIAL": self.keys[name].get_secret_value(),
                "OTEL_SERVICE_NAME": name,
                **self.extra_env.get(name, {}),
            }
            process = ServiceProcess(module, env)
            process.start()
            self.processes[name] = process
            await process.wait_serving(180)
            if name in _TARGETS:
                targets[f"{_TARGETS[name]}_TARGET"] = process.address
        for name in self.dbs:  # small pools: the server allows 100 connections for everyone
            self.pools[name] = await create_pool(self.dbs[name].dsn, min_size=1, max_size=2)
        self.nc = await nats.connect(self.nats.url)

    async def _register_keys(self, callee: str, module: str) -> None:
        dsn = self.dbs[callee].dsn
        await migrate(dsn, [AUTH_MIGRATIONS])
        policies = list(importlib.import_module(f"{module}.service").SPEC.policies.values())
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            store = CredentialStore(pool)
            operator_roles = _roles(policies, PrincipalKind.OPERATOR)
            for who in (OPERATOR, APPROVER):
                await store.register(self.keys[who], who, PrincipalKind.OPERATOR, operator_roles)
            service_roles = _roles(policies, PrincipalKind.SERVICE)
            for caller, _ in _SERVICES:
                if caller != callee:
                    await store.register(self.keys[caller], caller, PrincipalKind.SERVICE, service_roles)
        finally:
            await pool.close()

    def channel(
        self, service: str, who: str = OPERATOR, credential: SecretStr | None = None
    ) -> grpc.aio.Channel:
        """A client channel to `service` as `who` (or with `credential`), closed by close()."""
        key = credential if credential is not None else self.keys[who]
        channel = connect(self.processes[service].address, credential=key, default_timeout=900, tracing=False)
        self._channels.append(channel)
        return channel

    def auth(self, who: str = OPERATOR) -> tuple[tuple[str, str], ...]:
        """Metadata for client-streaming calls: connect() adds the key to unary calls only."""
        return (("authorization", f"Bearer {self.keys[who].get_secret_value()}"),)

    async def unpublished(self) -> dict[str, int]:
        """Outbox rows not yet relayed, per service."""
        return {
            name: int(await pool.fetchval("select count(*) from outbox where published_at is null"))
            for name, pool in self.pools.items()
        }

    async def consumers_pending(self) -> dict[str, int]:
        """Messages not yet delivered or not yet acked, per durable consumer with any."""
        out: dict[str, int] = {}
        for stream in await self.js.streams_info():
            name = stream.config.name or ""
            for info in await self.js.consumers_info(name):
                waiting = (info.num_pending or 0) + (info.num_ack_pending or 0)
                if waiting:
                    out[f"{name}/{info.name}"] = waiting
        return out

    async def settled(self, within: float = 3600, quiet_checks: int = 3) -> float:
        """Wait until every outbox is relayed and every consumer is caught up, `quiet_checks` times in a
        row (a consumer's handler may publish more). Returns the seconds waited."""
        started = time.monotonic()
        quiet = 0
        while quiet < quiet_checks:
            busy = {k: v for k, v in (await self.unpublished()).items() if v}
            busy |= await self.consumers_pending()
            quiet = 0 if busy else quiet + 1
            if time.monotonic() - started > within:
                raise TimeoutError(f"suite not settled within {within}s: {busy}")
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
        if self.nc is not None:
            await self.nc.close()
        for pool in self.pools.values():
            await pool.close()
        for process in reversed(list(self.processes.values())):
            await process.terminate()
        self.nats.close()
        for db in self.dbs.values():
            await db.drop()

    def log_tails(self) -> dict[str, str]:
        return {name: p.log_text()[-2000:] for name, p in self.processes.items()}
