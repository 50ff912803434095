"""One trace across four processes: test client -> probe (gRPC + DB write + outbox row) -> the other probe
replica's relay (PRODUCER span) -> consumer process (CONSUMER span), exported to a real OTLP receiver."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from retail.testing.v1 import probe_pb2, probe_pb2_grpc
from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.messaging.testing import migrate_messaging
from retail_common.testing import NatsServer, PostgresServer, TestDatabase
from retail_common.testing.otlp import OtlpReceiver, ReceivedSpan
from retail_common.testing.pytest_plugin import StartService

PROCS = Path(__file__).with_name("procs.py")
_spec = importlib.util.spec_from_file_location("pipeline_procs", PROCS)
assert _spec is not None
assert _spec.loader is not None
procs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(procs)


async def test_one_trace_from_grpc_call_through_relay_to_consumer(
    start_service: StartService,
    database: TestDatabase,
    postgres_server: PostgresServer,
    nats_server: NatsServer,
    otlp_receiver: OtlpReceiver,
    tmp_path: Path,
) -> None:
    telemetry_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }

    def probe_env(name: str) -> dict[str, str]:
        return {
            "DATABASE_URL": database.dsn,
            "NATS_URL": nats_server.url,
            "OTEL_SERVICE_NAME": name,
            **telemetry_env,
        }

    # Two replicas of the probe on one database: the first takes the relay lease, the second serves the
    # call, so the publish happens in a different process from the one that wrote the outbox row.
    relaying = await start_service("retail_common.testing.probe", probe_env("probe-relaying"))
    holder = await _wait_lease_holder(database.dsn)
    assert f":{relaying.pid}:" in holder
    serving = await start_service("retail_common.testing.probe", probe_env("probe-serving"))

    consumer_db = await postgres_server.create_database("cons")
    consumer = procs.Proc(
        "consumer",
        ["consumer", "--dsn", consumer_db.dsn, "--nats", nats_server.url],
        tmp_path,
        env={"OTEL_SERVICE_NAME": "consumer", **telemetry_env},
    )
    try:
        await migrate_messaging(consumer_db.dsn)
        conn = await asyncpg.connect(consumer_db.dsn)
        await conn.execute(procs.CONSUMER_SCHEMA)
        await conn.close()
        consumer.start()

        pool = await create_pool(database.dsn, min_size=1, max_size=1)
        try:
            key = (await CredentialStore(pool).create("tracer", PrincipalKind.SERVICE)).key
        finally:
            await pool.close()
        provider = TracerProvider(resource=Resource.create({"service.name": "test-client"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_receiver.endpoint, insecure=True))
        )
        async with grpc.aio.insecure_channel(
            serving.address,
            interceptors=aio_client_interceptors(tracer_provider=provider),  # type: ignore[no-untyped-call]
        ) as channel:
            response = await probe_pb2_grpc.ProbeServiceStub(channel).RecordAmount(
                probe_pb2.RecordAmountRequest(request_id="r-1", account_id="acc-1", amount=5),
                metadata=[("authorization", f"Bearer {key.get_secret_value()}")],
                timeout=10,
            )
        provider.shutdown()
        assert response.version == 1

        def complete(spans: Sequence[ReceivedSpan]) -> bool:
            return any(s.kind == "CONSUMER" and s.service_name == "consumer" for s in spans) and any(
                s.kind == "PRODUCER" for s in spans
            )

        spans = await asyncio.to_thread(otlp_receiver.wait_for, complete, 30.0)
    finally:
        consumer.stop()
        print(consumer.tail(5))
        await consumer_db.drop()

    client = next(s for s in spans if s.service_name == "test-client" and s.kind == "CLIENT")
    trace = [s for s in spans if s.trace_id == client.trace_id]
    server = next(s for s in trace if s.kind == "SERVER")
    producer = next(s for s in trace if s.kind == "PRODUCER")
    consumed = next(s for s in trace if s.kind == "CONSUMER")
    assert server.service_name == "probe-serving"
    assert server.parent_span_id == client.span_id
    # The relay ran in the other replica and continued the trace stored in the outbox row: its PRODUCER
    # span is a child of the server span that was current when the row was written.
    assert producer.service_name == "probe-relaying"
    assert producer.parent_span_id == server.span_id
    assert producer.attributes["messaging.system"] == "nats"
    assert producer.attributes["messaging.destination.name"] == "retail.testing.v1.amount_recorded"
    assert producer.attributes["messaging.message.id"] == response.event_id
    # The consumer (a third process) continued the context from the message headers.
    assert consumed.service_name == "consumer"
    assert consumed.parent_span_id == producer.span_id
    assert consumed.attributes["messaging.message.id"] == response.event_id
    assert consumed.attributes["retail.inbox.outcome"] == "applied"
    # The consumer's own DB work (asyncpg spans) hangs below its CONSUMER span.
    assert any(s.parent_span_id == consumed.span_id and s.service_name == "consumer" for s in trace)


async def _wait_lease_holder(dsn: str) -> str:
    for _ in range(200):
        conn = await asyncpg.connect(dsn)
        try:
            if await conn.fetchval("select to_regclass('relay_leases')") is not None:
                holder = await conn.fetchval("select holder from relay_leases where expires_at > now()")
                if holder:
                    return str(holder)
        finally:
            await conn.close()
        await asyncio.sleep(0.1)
    raise AssertionError("no relay took the lease")
