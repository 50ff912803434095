"""The whole suite for end-to-end tests: the four services as separate processes on ports chosen for the
test, each with its own database on the test Postgres, one NATS, and the credentials `make run` issues
(two operators holding every role, one service key per service). A service killed with -9 restarts on
the same port, so the others (and the scenario) reconnect to it as they would to a rescheduled pod."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from retail_common.auth import AUTH_MIGRATIONS, CredentialStore, MethodPolicy, generate_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool, migrate
from retail_common.service import ServiceSpec
from retail_common.testing.nats import NatsServer
from retail_common.testing.ports import free_port
from retail_common.testing.postgres import PostgresServer, TestDatabase
from retail_common.testing.process import ServiceProcess

__all__ = ["SERVICES", "Suite", "start_suite"]

# (name, module), in dependency order: promotion calls pricing and inventory; the gateway all three.
SERVICES = (
    ("pricing", "retail_pricing"),
    ("inventory-reservation", "retail_inventory"),
    ("promotion", "retail_promotion"),
    ("channel-gateway", "retail_channel_gateway"),
)


def _env_prefix(name: str) -> str:
    return name.upper().replace("-", "_")


def _roles(policies: Iterable[MethodPolicy], kind: PrincipalKind) -> set[str]:
    return {
        role for policy in policies if policy.kinds is None or kind in policy.kinds for role in policy.roles
    }


@dataclass
class Suite:
    processes: dict[str, ServiceProcess]
    databases: list[TestDatabase]
    nats: NatsServer
    operator: SecretStr
    approver: SecretStr
    restarts: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def targets(self) -> dict[str, str]:
        return {name: process.address for name, process in self.processes.items()}

    async def crash_and_restart(self, name: str, down_for: float = 1.0) -> None:
        """kill -9 one service (or "nats"), then bring it back after `down_for` seconds, in the
        background: the scenario keeps running into the outage and must ride it out."""
        if name == "nats":
            self.nats.kill()
        else:
            self.processes[name].kill()

        async def back() -> None:
            await asyncio.sleep(down_for)
            if name == "nats":
                await asyncio.to_thread(self.nats.start)
            else:
                self.processes[name].start()
                await self.processes[name].wait_serving(120)

        self.restarts.append(asyncio.create_task(back()))

    async def settle_restarts(self) -> None:
        for task in self.restarts:
            await task

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(p.log_text().splitlines()[-40:])
            for name, p in self.processes.items()
        )

    async def close(self) -> None:
        for task in self.restarts:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(Exception):
                await process.terminate(within=20)
            process.kill()
        for db in self.databases:
            with contextlib.suppress(Exception):
                await db.drop()


async def _register(dsn: str, module: str, operator: SecretStr, approver: SecretStr,
                    services: Mapping[str, SecretStr]) -> None:  # fmt: skip
    await migrate(dsn, [AUTH_MIGRATIONS])
    spec: ServiceSpec[Any] = importlib.import_module(f"{module}.service").SPEC
    policies = list(spec.policies.values())
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        store = CredentialStore(pool)
        roles = _roles(policies, PrincipalKind.OPERATOR)
        await store.register(operator, "dev-operator", PrincipalKind.OPERATOR, roles)
        await store.register(approver, "dev-approver", PrincipalKind.OPERATOR, roles)
        for caller, key in services.items():
            await store.register(key, caller, PrincipalKind.SERVICE, _roles(policies, PrincipalKind.SERVICE))
    finally:
        await pool.close()


async def start_suite(
    postgres: PostgresServer, nats: NatsServer, workdir: Path, extra_env: Mapping[str, str] | None = None
) -> Suite:
    operator, approver = generate_key()[1], generate_key()[1]
    service_keys = {name: generate_key()[1] for name, _ in SERVICES}
    databases = [await postgres.create_database("e2e") for _ in SERVICES]
    suite = Suite({}, databases, nats, operator, approver)
    try:
        for (name, module), db in zip(SERVICES, databases, strict=True):
            others = {n: k for n, k in service_keys.items() if n != name}
            await _register(db.dsn, module, operator, approver, others)
        for (name, module), db in zip(SERVICES, databases, strict=True):
            env = {
                "DATABASE_URL": db.dsn,
                "NATS_URL": nats.url,
                "SERVICE_CREDENTIAL": service_keys[name].get_secret_value(),
                "OTEL_SERVICE_NAME": name,
                "DB_POOL_MAX": "4",  # the test Postgres (100 connections) is shared with other suites
                "ALLOW_HTTP_WEBHOOKS": "true",
                "DELIVERY_LEASE_SECONDS": "5",  # a crashed gateway's channels are taken over quickly
                **{f"{_env_prefix(n)}_TARGET": p.address for n, p in suite.processes.items()},
                **(extra_env or {}),
            }
            process = ServiceProcess(
                module, env, workdir=str(workdir / name), listen=f"127.0.0.1:{free_port()}"
            )
            suite.processes[name] = process
            process.start()
            await process.wait_serving(120)
    except BaseException:
        await suite.close()
        raise
    return suite
