"""A test-only service built on run_service alone (`python -m retail_common.testing.probe`).

Its tests start it as a separate process and check the runtime's promises through it: reflection,
health, errors, deadlines, auth, graceful shutdown and tracing.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from retail.testing.v1 import probe_pb2, probe_pb2_grpc
from retail_common.auth import MethodPolicy, authenticated, service_policies
from retail_common.config import ServiceSettings
from retail_common.context import PrincipalKind
from retail_common.db import MigrationSource
from retail_common.messaging import OutboxRelay
from retail_common.messaging.testing import DEADLETTER_STREAM, TESTING_STREAM
from retail_common.service import ServiceContext, ServiceSpec
from retail_common.testing.probe.servicer import ProbeServicer

__all__ = ["ADMIN_ROLE", "PROBE_MIGRATIONS", "SPEC", "ProbeServicer"]

ADMIN_ROLE = "probe.admin"
PROBE_SERVICE = probe_pb2.DESCRIPTOR.services_by_name["ProbeService"]
PROBE_MIGRATIONS = MigrationSource("retail.testing.probe", Path(__file__).parent / "migrations")


async def _relay(ctx: ServiceContext[ServiceSettings]) -> None:
    """The probe's outbox relay (one active per database through the lease; replicas stand by)."""
    js = await ctx.jetstream([TESTING_STREAM, DEADLETTER_STREAM])
    await OutboxRelay(ctx.pool, js, lease_name="probe", lease_ttl=5.0).run()


def _register(ctx: ServiceContext[ServiceSettings], server: grpc.aio.Server) -> None:
    probe_pb2_grpc.add_ProbeServiceServicer_to_server(ProbeServicer(ctx), server)


SPEC: ServiceSpec[ServiceSettings] = ServiceSpec(
    name="probe",
    settings_cls=ServiceSettings,
    services=[PROBE_SERVICE],
    policies=service_policies(
        PROBE_SERVICE,
        {
            "Echo": authenticated(),
            "Crash": authenticated(),
            "RecordAmount": authenticated(),
            "GetAccount": authenticated(),
            "WhoAmI": authenticated(),
            "AdminOnly": MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[ADMIN_ROLE]),
        },
    ),
    register=_register,
    migrations=[PROBE_MIGRATIONS],
    background=[_relay],
)
