"""`run_service(spec)`: the one bootstrap call that turns a ServiceSpec into a running service.

Order (DESIGN.md §9): settings -> logging + telemetry -> migrations (or refuse to start on a pending
one) -> pool -> gRPC server (interceptors, health, reflection, servicers) -> background tasks, NATS
(connected in the background) and the DB health watcher -> serve. SIGTERM/SIGINT: health NOT_SERVING,
stop accepting and let in-flight calls finish (grace), cancel background tasks, drain NATS, close
the pool, flush telemetry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import grpc
from google.protobuf.descriptor import ServiceDescriptor
from nats.js import JetStreamContext
from opentelemetry.metrics import Meter

from retail.operations.v1.event_operations_service_pb2_grpc import (
    add_EventOperationsServiceServicer_to_server,
)
from retail_common._nats_link import NatsLink
from retail_common.auth import (
    AUTH_MIGRATIONS,
    CredentialCache,
    CredentialStore,
    MethodPolicy,
    full_method_name,
)
from retail_common.clock import Clock, SystemClock
from retail_common.config import ConfigError, ServiceSettings, load_settings
from retail_common.db import (
    AUDIT_MIGRATIONS,
    IDEMPOTENCY_MIGRATIONS,
    MigrationSource,
    create_pool,
    migrate,
    pending_migrations,
)
from retail_common.grpcx import (
    HealthReporter,
    build_server,
    connect,
    enable_reflection,
    interceptor_chain,
)
from retail_common.grpcx.event_operations import (
    EVENT_OPERATIONS_POLICIES,
    EVENT_OPERATIONS_SERVICE,
    EventOperationsServicer,
)
from retail_common.grpcx.request_log import RequestLogPolicy
from retail_common.messaging import MESSAGING_MIGRATIONS, StreamSpec, ensure_streams, suite_streams
from retail_common.telemetry import ServerSpans, configure_logging, meter, setup_telemetry

__all__ = [
    "RUNTIME_MIGRATIONS",
    "RUNTIME_POLICIES",
    "RUNTIME_SERVICES",
    "ServiceContext",
    "ServiceSpec",
    "StartupError",
    "run_service",
    "serve",
]

logger = logging.getLogger("retail_common.service")

S = TypeVar("S", bound=ServiceSettings)

# Tables the shared runtime itself owns in every service's database, applied before the service's own.
RUNTIME_MIGRATIONS: tuple[MigrationSource, ...] = (
    AUDIT_MIGRATIONS,
    AUTH_MIGRATIONS,
    IDEMPOTENCY_MIGRATIONS,
    MESSAGING_MIGRATIONS,
)

# gRPC services the runtime itself serves in every service (registered by `serve`), and their policies.
RUNTIME_SERVICES: tuple[ServiceDescriptor, ...] = (EVENT_OPERATIONS_SERVICE,)
RUNTIME_POLICIES: Mapping[str, MethodPolicy] = EVENT_OPERATIONS_POLICIES


class StartupError(Exception):
    """The service cannot start as configured (pending migrations with MIGRATE_ON_START=false, ...)."""


@dataclass
class ServiceContext(Generic[S]):
    """What servicers and background tasks get: settings, pool, clock, NATS, health, metrics."""

    name: str
    settings: S
    pool: asyncpg.Pool[asyncpg.Record]
    clock: Clock
    nats: NatsLink
    health: HealthReporter
    credentials: CredentialStore
    meter: Meter

    def channel(self, target: str, *, default_timeout: float = 10.0) -> grpc.aio.Channel:
        """A channel to another service of the suite, carrying this service's credential."""
        return connect(
            target,
            credential=self.settings.service_credential,
            default_timeout=default_timeout,
            max_message_bytes=self.settings.grpc_max_message_bytes,
        )

    async def jetstream(self, streams: Sequence[StreamSpec] | None = None) -> JetStreamContext:
        """JetStream once NATS is up and `streams` (default: the suite's) exist.

        Retries while NATS is down or restarting, so a background task that needs JetStream waits
        instead of ending (which would stop the whole service).
        """
        wanted = suite_streams(replicas=self.settings.stream_replicas) if streams is None else streams
        while True:
            js = (await self.nats.connected()).jetstream()
            try:
                await ensure_streams(js, wanted)
                return js
            except Exception as exc:
                logger.warning("%s: cannot ensure streams yet: %s", self.name, exc)
                await asyncio.sleep(1.0)


Register = Callable[[ServiceContext[S], grpc.aio.Server], None]
Background = Callable[[ServiceContext[S]], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    """A service described once; `run_service` does everything else.

    `services`: descriptors of the gRPC services `register` adds (reflection, health entries and the
    policy completeness check use them). `policies`: full method name -> MethodPolicy, usually built
    with auth.service_policies; the runtime's own (RUNTIME_POLICIES) are merged in, so whoever grants
    credentials the roles that spec.policies name grants theirs too. `background`: long-running
    coroutines (relay, consumers); cancelled at shutdown; one returning or failing early stops the
    service (so the orchestrator restarts it).
    """

    name: str
    settings_cls: type[S]
    services: Sequence[ServiceDescriptor]
    policies: Mapping[str, MethodPolicy]
    register: Register[S]
    migrations: Sequence[MigrationSource] = ()
    background: Sequence[Background[S]] = ()
    clock: Clock = field(default_factory=SystemClock)
    error_domain: str | None = None  # ErrorInfo.domain; default: the first service's proto package
    db_check_interval: float = 1.0

    def __post_init__(self) -> None:
        clashes = sorted(m for m, p in self.policies.items() if RUNTIME_POLICIES.get(m, p) != p)
        if clashes:
            raise ValueError(f"{self.name}: policies for runtime methods {clashes} differ from the runtime's")
        object.__setattr__(self, "policies", {**self.policies, **RUNTIME_POLICIES})

    @property
    def domain(self) -> str:
        return self.error_domain or self.services[0].file.package

    def check_policies(self) -> None:
        services = [*self.services, *RUNTIME_SERVICES]
        methods = {full_method_name(s, m.name) for s in services for m in s.methods}
        missing = sorted(methods - set(self.policies))
        if missing:
            raise StartupError(f"no access policy for {missing}: every method needs one")


async def _database_reachable(pool: asyncpg.Pool[asyncpg.Record], limit: float) -> bool:
    try:
        async with asyncio.timeout(limit):
            await pool.fetchval("SELECT 1")
    except Exception:
        return False
    return True


async def _watch_database(
    pool: asyncpg.Pool[asyncpg.Record], health: HealthReporter, interval: float
) -> None:
    """Overall health follows a cheap query: NOT_SERVING while the DB is unreachable, back when it returns."""
    while True:
        reachable = await _database_reachable(pool, limit=max(2.0, interval))
        if reachable != health.is_serving():
            logger.log(logging.INFO if reachable else logging.ERROR, "database %s",
                       "reachable: SERVING" if reachable else "unreachable: NOT_SERVING")  # fmt: skip
            await health.set_serving(reachable)
        await asyncio.sleep(interval)


def _write_port_file(path: str, port: int) -> None:
    # Write-then-rename so a reader never sees a half-written number.
    target = Path(path)
    temporary = target.with_suffix(target.suffix + ".tmp")
    temporary.write_text(str(port))
    os.replace(temporary, target)


async def _prepare_database(spec: ServiceSpec[S], settings: S) -> None:
    sources = [*RUNTIME_MIGRATIONS, *spec.migrations]
    if settings.migrate_on_start:
        for applied in await migrate(settings.database_url, sources):
            logger.info("applied migration %s %04d_%s", applied.source, applied.version, applied.name)
        return
    pending = await pending_migrations(settings.database_url, sources)
    if pending:
        names = ", ".join(f"{m.source}/{m.version:04d}_{m.name}" for m in pending)
        raise StartupError(f"MIGRATE_ON_START is false and migrations are pending: {names}")


async def serve(spec: ServiceSpec[S], settings: S, *, stop: asyncio.Event | None = None) -> None:
    """Run the service until `stop` is set or SIGTERM/SIGINT arrives (telemetry set up by the caller)."""
    spec.check_policies()
    await _prepare_database(spec, settings)
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    names = [service.full_name for service in (*spec.services, *RUNTIME_SERVICES)]
    health = HealthReporter(names)
    await health.start()
    nats_link = NatsLink(
        [url.strip() for url in settings.nats_url.split(",")], name=spec.name, on_change=health.set_eventing
    )
    credentials = CredentialStore(pool, spec.clock)
    # Resolves each call's key from memory while its LISTEN connection is up (auth/_cache.py).
    credential_cache = CredentialCache(
        credentials, settings.database_url, clock=spec.clock, application_name=f"{spec.name}:auth-listener"
    )
    context = ServiceContext(
        name=spec.name,
        settings=settings,
        pool=pool,
        clock=spec.clock,
        nats=nats_link,
        health=health,
        credentials=credentials,
        meter=meter(f"retail.{spec.name}"),
    )
    interceptors = interceptor_chain(
        resolve=credential_cache.resolve,
        policies=spec.policies,
        error_domain=spec.domain,
        tracing=ServerSpans(),
        log_policy=RequestLogPolicy(
            ok_sample_rate=settings.request_log_sample_rate, slow_ms=settings.request_log_slow_ms
        ),
    )
    server = build_server(
        interceptors=interceptors, health=health, max_message_bytes=settings.grpc_max_message_bytes
    )
    spec.register(context, server)
    add_EventOperationsServiceServicer_to_server(EventOperationsServicer(pool, nats_link.connected), server)
    enable_reflection(server, names)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    tasks: list[asyncio.Task[None]] = []
    failed = False
    try:
        port = server.add_insecure_port(settings.grpc_listen)
        await credential_cache.start()
        await server.start()
        tasks.append(
            asyncio.create_task(_watch_database(pool, health, spec.db_check_interval), name="db-health")
        )
        tasks.append(asyncio.create_task(nats_link.run(), name="nats"))
        tasks += [asyncio.create_task(job(context), name=job.__name__) for job in spec.background]
        if settings.grpc_port_file:
            _write_port_file(settings.grpc_port_file, port)
        logger.info("%s serving gRPC on port %d", spec.name, port)
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if stopping not in done:
            failed = True
            for task in done:
                exc = task.exception()
                logger.error("task %s ended unexpectedly; shutting down", task.get_name(), exc_info=exc)
        stopping.cancel()
    finally:
        logger.info("%s shutting down", spec.name)
        await health.shutdown()
        await server.stop(settings.shutdown_grace_seconds)  # stops accepting; in-flight calls finish
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await credential_cache.close()
        await nats_link.close()
        await pool.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        logger.info("%s stopped", spec.name)
    if failed:
        raise StartupError("a background task ended unexpectedly")


def run_loop(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run `main` on the configured event loop; uvloop where it is installed, else asyncio's own."""
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # not built for this platform: the standard loop runs the same code
            logger.warning("uvloop is not installed: running on asyncio's event loop")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def run_service(spec: ServiceSpec[S]) -> None:
    """Entry point of `python -m <service>`: exit 0 after a clean shutdown, 1 on failure, 2 on bad config."""
    try:
        settings = load_settings(spec.settings_cls)
    except ConfigError as exc:
        print(f"{spec.name}: {exc}", file=sys.stderr)
        sys.exit(2)
    telemetry = setup_telemetry(spec.name)
    # Logs name the service as traces do (OTEL_SERVICE_NAME wins over spec.name in both).
    configure_logging(settings.log_level, telemetry.service_name)
    try:
        run_loop(serve(spec, settings), settings.event_loop)
    except Exception:
        logger.exception("%s failed", spec.name)
        sys.exit(1)
    finally:
        telemetry.shutdown()
