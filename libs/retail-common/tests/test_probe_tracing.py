"""A call from this process to the probe in another yields one trace: client span, server span, DB span."""

from __future__ import annotations

import asyncio

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


def _is_db_span(span) -> bool:
    return span.service_name == "probe" and span.kind == "CLIENT" and "asyncpg" in span.scope


async def test_one_trace_spans_client_server_and_database(
    start_service, database_url, nats_server, otlp_receiver
):
    probe = await start_service(
        "retail_common.testing.probe",
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_server.url,
            "OTEL_SERVICE_NAME": "probe",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    )
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        key = (await CredentialStore(pool).create("tracer", PrincipalKind.SERVICE)).key
    finally:
        await pool.close()

    # The caller's own SDK, local to this test (the global provider stays untouched for other tests).
    provider = TracerProvider(resource=Resource.create({"service.name": "test-client"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_receiver.endpoint, insecure=True))
    )
    async with grpc.aio.insecure_channel(
        probe.address, interceptors=aio_client_interceptors(tracer_provider=provider)
    ) as channel:
        await probe_pb2_grpc.ProbeServiceStub(channel).RecordAmount(
            probe_pb2.RecordAmountRequest(request_id="r-1", account_id="acc-1", amount=5),
            metadata=[("authorization", f"Bearer {key.get_secret_value()}")],
            timeout=10,
        )
    provider.shutdown()
    assert await probe.terminate() == 0  # flushes the probe's spans

    def complete(spans) -> bool:
        clients = [s for s in spans if s.service_name == "test-client" and s.kind == "CLIENT"]
        if not clients:
            return False
        trace = [s for s in spans if s.trace_id == clients[0].trace_id]
        return any(s.service_name == "probe" and s.kind == "SERVER" for s in trace) and any(
            _is_db_span(s) for s in trace
        )

    spans = await asyncio.to_thread(otlp_receiver.wait_for, complete, 30.0)
    client = next(s for s in spans if s.service_name == "test-client" and s.kind == "CLIENT")
    trace = [s for s in spans if s.trace_id == client.trace_id]
    server = next(s for s in trace if s.kind == "SERVER")
    assert server.name == "/retail.testing.v1.ProbeService/RecordAmount"
    assert server.parent_span_id == client.span_id
    db_spans = [s for s in trace if _is_db_span(s)]
    assert db_spans, [(s.name, s.kind, s.scope) for s in trace]
    assert all(s.parent_span_id for s in db_spans)  # children within the server's trace, not roots
