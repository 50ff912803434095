"""Telemetry across a process boundary: a child process exports to a real OTLP receiver."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from retail_common.testing.otlp import OtlpReceiver, ReceivedSpan

PROBE = textwrap.dedent(
    """
    import asyncio, logging, sys

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio
    from opentelemetry import trace

    from retail_common.db import create_pool
    from retail_common.telemetry import (
        client_interceptors, configure_logging, meter, server_interceptor, setup_telemetry,
    )

    SECRET_KEY = "rk_abc123_s3cr3tvalue"


    async def db_in_span(dsn):
        log = logging.getLogger("probe")
        pool = await create_pool(dsn, min_size=1, max_size=1)
        counter = meter("probe").create_counter("probe.checkouts")
        with trace.get_tracer("probe").start_as_current_span("checkout"):
            await pool.fetchval("select 41 + 1")
            counter.add(1, {"outcome": "ok"})
            log.info(
                "checkout done with key %s",
                SECRET_KEY,
                extra={
                    "authorization": "Bearer " + SECRET_KEY, "order": 7, "nested": {"password": "hunter2"}
                },
            )
        await pool.close()


    async def grpc_roundtrip(dsn):
        pool = await create_pool(dsn, min_size=1, max_size=1)

        async def echo(request, context):
            await pool.fetchval("select 1")
            return request

        server = grpc.aio.server(interceptors=[server_interceptor()])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "probe.Echo", {"Say": grpc.unary_unary_rpc_method_handler(echo)}),))
        health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=client_interceptors()
        ) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert await channel.unary_unary("/probe.Echo/Say")(b"hi") == b"hi"
        await server.stop(None)
        await pool.close()


    telemetry = setup_telemetry("fallback-name")
    assert setup_telemetry("another-name") is telemetry  # idempotent
    configure_logging("INFO", telemetry.service_name)
    scenario, dsn = sys.argv[1], sys.argv[2]
    asyncio.run({"db": db_in_span, "grpc": grpc_roundtrip}[scenario](dsn))
    print(telemetry.service_name)
    telemetry.shutdown()
    """
)


def run_probe(tmp_path: Path, scenario: str, dsn: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, str(script), scenario, dsn],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def json_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def one(spans: list[ReceivedSpan], **match: Any) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, spans)
    return found[0]


def test_span_and_db_child_span_reach_the_collector_and_logs_carry_the_trace_id(
    tmp_path: Path, database_url: str, otlp_receiver: OtlpReceiver
) -> None:
    result = run_probe(
        tmp_path,
        "db",
        database_url,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
        OTEL_SERVICE_NAME="pricing-probe",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
    )

    spans = otlp_receiver.wait_for(lambda got: any(s.name == "checkout" for s in got))
    checkout = one(spans, name="checkout")
    db = [s for s in spans if s.parent_span_id == checkout.span_id]
    assert len(db) == 1
    assert db[0].trace_id == checkout.trace_id
    assert db[0].kind == "CLIENT"
    assert db[0].attributes.get("db.system") == "postgresql"
    assert "select 41 + 1" in str(db[0].attributes.get("db.statement"))
    assert {s.service_name for s in spans} == {"pricing-probe"}  # OTEL_SERVICE_NAME beats the default
    assert result.stdout.strip() == "pricing-probe"

    (line,) = [e for e in json_lines(result.stderr) if e["message"].startswith("checkout done")]
    assert line["trace_id"] == checkout.trace_id
    assert line["span_id"] == checkout.span_id
    assert (line["level"], line["logger"], line["service"], line["order"]) == (
        "INFO",
        "probe",
        "pricing-probe",
        7,
    )
    assert line["message"] == "checkout done with key rk_abc123_[REDACTED]"
    assert line["authorization"] == "[REDACTED]"
    assert line["nested"] == {"password": "[REDACTED]"}
    assert "s3cr3tvalue" not in result.stderr
    assert "hunter2" not in result.stderr

    # Metrics go to the same receiver, flushed by shutdown().
    checkouts = [m for m in otlp_receiver.metrics() if m.name == "probe.checkouts"]
    assert checkouts[-1].service_name == "pricing-probe"
    assert checkouts[-1].points == [({"outcome": "ok"}, 1.0)]  # cumulative: the last export has the total


def test_grpc_calls_are_traced_across_client_server_and_db_but_health_checks_are_not(
    tmp_path: Path, database_url: str, otlp_receiver: OtlpReceiver
) -> None:
    result = run_probe(tmp_path, "grpc", database_url, OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint)

    spans = otlp_receiver.wait_for(lambda got: any(s.kind == "SERVER" for s in got))
    client = one(spans, kind="CLIENT", name="/probe.Echo/Say")
    server = one(spans, kind="SERVER", name="/probe.Echo/Say")
    assert server.trace_id == client.trace_id
    assert server.parent_span_id == client.span_id  # context crossed the wire as traceparent
    db = one(spans, parent_span_id=server.span_id)
    assert db.trace_id == client.trace_id
    assert not [s for s in spans if "grpc.health" in s.name]
    assert {s.service_name for s in spans} == {"fallback-name"}  # no OTEL_SERVICE_NAME: the default
    assert result.stdout.strip() == "fallback-name"


def run_setup(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    script = "from retail_common.telemetry import setup_telemetry\n" + code
    return subprocess.run(
        [sys.executable, "-c", script],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_an_endpoint_there_is_no_exporter_but_trace_ids_exist() -> None:
    result = run_setup(
        "from opentelemetry import trace\n"
        "t = setup_telemetry('svc')\n"
        "with trace.get_tracer('x').start_as_current_span('s') as s:\n"
        "    processors = t.tracer_provider._active_span_processor._span_processors\n"
        "    print(s.get_span_context().is_valid, processors)\n"
        "t.shutdown()\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True ()"


def test_sampler_comes_from_the_standard_variables() -> None:
    result = run_setup(
        "from opentelemetry import trace\n"
        "t = setup_telemetry('svc')\n"
        "with trace.get_tracer('x').start_as_current_span('s') as s:\n"
        "    print(s.get_span_context().trace_flags.sampled, type(t.tracer_provider.sampler).__name__)\n",
        OTEL_TRACES_SAMPLER="always_off",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "StaticSampler"]


UNEXPORTED = (
    "from opentelemetry import trace\n"
    "from opentelemetry.propagate import extract\n"
    "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
    "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
    "t = setup_telemetry('svc')\n"
    "tracer = trace.get_tracer('x')\n"
    "remote = extract({'traceparent': '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'})\n"
    "with tracer.start_as_current_span('root') as root:\n"
    "    with tracer.start_as_current_span('child') as child:\n"
    "        pass\n"
    "    ids = root.get_span_context()\n"
    "    print(root.is_recording(), ids.is_valid, ids.trace_flags.sampled)\n"
    "    print(child.get_span_context().trace_id == root.get_span_context().trace_id,\n"
    "          child.get_span_context().span_id != root.get_span_context().span_id)\n"
    "continued = tracer.start_span('continued', context=remote)\n"
    "print(format(continued.get_span_context().trace_id, '032x'))\n"
    "exporter = InMemorySpanExporter()\n"
    "t.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
    "with tracer.start_as_current_span('exported') as span:\n"
    "    print(span.is_recording())\n"
    "print([s.name for s in exporter.get_finished_spans()])\n"
)


def test_without_an_exporter_spans_keep_ids_and_context_but_are_not_recorded() -> None:
    result = run_setup(UNEXPORTED)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "False True True"  # not recorded; valid ids; sampled as the default sampler says
    assert lines[1] == "True True"  # the child is in the root's trace with its own span id
    assert lines[2] == "0af7651916cd43dd8448eb211c80319c"  # a caller's trace continues
    # once a processor is attached, the tracer handed out before records and exports
    assert lines[3:] == ["True", "['exported']"]


def test_without_an_exporter_the_sampler_still_decides_the_propagated_flag() -> None:
    result = run_setup(UNEXPORTED, OTEL_TRACES_SAMPLER="always_off")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "False True False"


def test_sdk_disabled_leaves_the_no_op_api() -> None:
    result = run_setup(
        "t = setup_telemetry('svc')\nprint(t.enabled, t.service_name)\n", OTEL_SDK_DISABLED="true"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False svc"


def test_prometheus_metrics_are_served_on_the_configured_port() -> None:
    from retail_common.testing.ports import free_port

    port = free_port()
    result = run_setup(
        "import urllib.request\n"
        "from retail_common.telemetry import meter\n"
        "t = setup_telemetry('svc')\n"
        "meter('probe').create_counter('probe_hits').add(3)\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())\n"
        "t.shutdown()\n",
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
    )
    assert result.returncode == 0, result.stderr
    assert "probe_hits_total" in result.stdout


@pytest.mark.parametrize("variable", ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"])
def test_unsupported_exporter_fails_fast_naming_the_variable(variable: str) -> None:
    result = run_setup("setup_telemetry('svc')\n", **{variable: "zipkin"})
    assert result.returncode != 0
    assert f"TelemetryConfigError: {variable}='zipkin'" in result.stderr
