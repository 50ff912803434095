"""OpenTelemetry set up once per process, from the standard OTEL_* environment variables only.

The SDK reads most variables itself (service name and resource attributes, sampler, OTLP endpoint,
headers, timeouts, export intervals); this module only decides which exporters to attach:
- traces: OTEL_TRACES_EXPORTER = otlp (default) | console | none. "otlp" exports only when an
  OTLP endpoint is configured, so a dev process without a collector keeps a real TracerProvider
  (trace ids in logs, context propagation) without retrying a connection to nowhere.
- metrics: OTEL_METRICS_EXPORTER = otlp (default, same endpoint rule) | prometheus | console | none;
  prometheus is served on OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT.
- OTEL_SDK_DISABLED=true leaves the no-op API in place.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from opentelemetry import metrics, trace
from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_PROMETHEUS_HOST,
    OTEL_EXPORTER_PROMETHEUS_PORT,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from retail_common.telemetry._unexported import UnexportedTracerProvider

__all__ = ["Telemetry", "TelemetryConfigError", "setup_telemetry"]

_lock = threading.Lock()
_handle: Telemetry | None = None


class TelemetryConfigError(ValueError):
    """An OTEL_* variable has a value this service does not support (fail fast at start)."""


@dataclass
class Telemetry:
    """The process's telemetry; `shutdown()` flushes pending spans and metrics (call it last)."""

    service_name: str
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    _prometheus: WSGIServer | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Each provider's shutdown exports what is pending (a final metric collection included).
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self._prometheus is not None:
            self._prometheus.shutdown()
            self._prometheus.server_close()


def _choices(variable: str, allowed: set[str]) -> set[str]:
    raw = os.environ.get(variable, "otlp")
    chosen = {part.strip().lower() for part in raw.split(",") if part.strip()}
    unknown = chosen - allowed
    if unknown:
        raise TelemetryConfigError(
            f"{variable}={raw!r}: unsupported {sorted(unknown)}, use {sorted(allowed)}"
        )
    return chosen - {"none"}


def _has_endpoint(signal_variable: str) -> bool:
    return bool(os.environ.get(signal_variable) or os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT))


def _resource(default_service_name: str | None) -> Resource:
    resource = Resource.create()
    # Resource.create already applied OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES; only fill the gap.
    named = str(resource.attributes.get(SERVICE_NAME, ""))
    if default_service_name and named.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    return resource


def _span_exporters() -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    chosen = _choices(OTEL_TRACES_EXPORTER, {"otlp", "console", "none"})
    if "otlp" in chosen and _has_endpoint(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())  # endpoint, headers, TLS, timeout: from env
    if "console" in chosen:
        exporters.append(ConsoleSpanExporter())
    return exporters


def _metric_readers() -> tuple[list[MetricReader], WSGIServer | None]:
    readers: list[MetricReader] = []
    server: WSGIServer | None = None
    chosen = _choices(OTEL_METRICS_EXPORTER, {"otlp", "prometheus", "console", "none"})
    if "otlp" in chosen and _has_endpoint(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))  # interval from env
    if "console" in chosen:
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    if "prometheus" in chosen:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        readers.append(PrometheusMetricReader())
        host = os.environ.get(OTEL_EXPORTER_PROMETHEUS_HOST, "localhost")
        port = int(os.environ.get(OTEL_EXPORTER_PROMETHEUS_PORT, "9464"))
        server, _ = start_http_server(port, addr=host)
    return readers, server


def setup_telemetry(service_name: str | None = None) -> Telemetry:
    """Configure tracing, metrics and asyncpg instrumentation for this process; idempotent.

    `service_name` is only the fallback when neither OTEL_SERVICE_NAME nor a service.name in
    OTEL_RESOURCE_ATTRIBUTES is set. A second call returns the first call's handle unchanged.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        resource = _resource(service_name)
        name = str(resource.attributes.get(SERVICE_NAME))
        if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
            _handle = Telemetry(service_name=name)
            return _handle

        exporters = _span_exporters()
        # Without an exporter, spans keep their ids and context but are not recorded (_unexported.py).
        provider_class = TracerProvider if exporters else UnexportedTracerProvider
        tracer_provider = provider_class(resource=resource)  # sampler: OTEL_TRACES_SAMPLER(_ARG)
        for exporter in exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        readers, prometheus = _metric_readers()
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        # Query parameters stay out of spans (capture_parameters defaults to False): they may hold PII.
        AsyncPGInstrumentor().instrument(  # type: ignore[no-untyped-call]
            tracer_provider=tracer_provider
        )
        _handle = Telemetry(name, tracer_provider, meter_provider, prometheus)
        return _handle
