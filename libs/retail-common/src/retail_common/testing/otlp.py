"""A real OTLP/gRPC receiver for tests: processes under test export to it like to a collector.

It runs a synchronous gRPC server on its own threads, so it works whatever event loop (or none)
the test uses, and it records every span and metric it is sent, flattened for assertions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = ["OtlpReceiver", "ReceivedMetric", "ReceivedSpan"]


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    name: str
    kind: str  # "SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER"
    service_name: str
    attributes: dict[str, Any]
    scope: str
    status_code: str  # "UNSET", "OK", "ERROR"
    links: tuple[tuple[str, str], ...] = ()  # (trace_id, span_id) of each link


@dataclass(frozen=True)
class ReceivedMetric:
    name: str
    service_name: str
    scope: str
    # Each data point's attributes and value (sum/gauge value, or histogram count).
    points: list[tuple[dict[str, Any], float]] = field(default_factory=list)


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    return None if kind is None else getattr(v, kind)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _kind(span: Span) -> str:
    return Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_")


class OtlpReceiver:
    """OTLP trace + metrics receiver on a free 127.0.0.1 port (export to `.endpoint`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetric] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-recv"))
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.trace.v1.TraceService",
                    {
                        "Export": grpc.unary_unary_rpc_method_handler(
                            self._export_traces,
                            request_deserializer=trace_pb.ExportTraceServiceRequest.FromString,
                            response_serializer=trace_pb.ExportTraceServiceResponse.SerializeToString,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.metrics.v1.MetricsService",
                    {
                        "Export": grpc.unary_unary_rpc_method_handler(
                            self._export_metrics,
                            request_deserializer=metrics_pb.ExportMetricsServiceRequest.FromString,
                            response_serializer=metrics_pb.ExportMetricsServiceResponse.SerializeToString,
                        )
                    },
                ),
            )
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server.start()

    def _export_traces(
        self, request: trace_pb.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_pb.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=_kind(span),
                            service_name=service,
                            attributes=_attributes(span.attributes),
                            scope=scope_spans.scope.name,
                            status_code=span.status.StatusCode.Name(span.status.code).removeprefix(
                                "STATUS_CODE_"
                            ),
                            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        )
                    )
        with self._lock:
            self._spans.extend(received)
        return trace_pb.ExportTraceServiceResponse()

    def _export_metrics(
        self, request: metrics_pb.ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> metrics_pb.ExportMetricsServiceResponse:
        received = []
        for resource_metrics in request.resource_metrics:
            service = str(_attributes(resource_metrics.resource.attributes).get("service.name", ""))
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    data = metric.WhichOneof("data")
                    points: list[tuple[dict[str, Any], float]] = []
                    if data in ("sum", "gauge"):
                        for p in getattr(metric, data).data_points:
                            value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                            points.append((_attributes(p.attributes), float(value)))
                    elif data in ("histogram", "exponential_histogram"):
                        for h in getattr(metric, data).data_points:
                            points.append((_attributes(h.attributes), float(h.count)))
                    received.append(ReceivedMetric(metric.name, service, scope_metrics.scope.name, points))
        with self._lock:
            self._metrics.extend(received)
        return metrics_pb.ExportMetricsServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def metrics(self) -> list[ReceivedMetric]:
        with self._lock:
            return list(self._metrics)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """Poll until `predicate(all spans so far)` holds; return those spans (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() >= deadline:
                names = sorted({f"{s.service_name}:{s.name}" for s in spans})
                raise TimeoutError(f"spans never matched within {timeout}s; received {names}")
            time.sleep(0.05)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._metrics.clear()

    def stop(self) -> None:
        self._server.stop(grace=None).wait()

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
