"""SERVER spans for grpc.aio calls: the spans opentelemetry-instrumentation-grpc makes, cheaper per call.

Same span name (the full method), kind, parent (the caller's W3C context from metadata, through the
global propagator), attributes (rpc.system, rpc.service, rpc.method, rpc.grpc.status_code,
net.peer.ip/port/name, rpc.user_agent) and status rule (ERROR for the server-side codes UNKNOWN,
DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS). What it leaves out is the library's
per-call overhead, which cost more than the span itself on a small RPC (bench/runtime_overhead.py):
two dict copies of the metadata, the propagator run on every call even without a traceparent, the
peer string parsed on every call, a wrapt proxy around the ServicerContext (every context method call
went through it) and one more interceptor layer. Here the metadata is scanned once by the caller
(`grpcx.runtime`), method attributes are built once per method, peers are parsed once per peer, and
the per-call attributes are only computed when the span records. The status code comes from the
runtime's own outcome (the code it logs), so no context wrapper is needed; an unexpected exception is
recorded on the span as itself (the library recorded the AbortError that replaced it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = [
    "ServerSpans",
    "method_attributes",
    "outcome_code",
    "scan_metadata",
    "server_span",
    "traced_method",
]

_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# Kubernetes probes hit Health/Check every few seconds; tracing them would bury real calls.

_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_MAX_PEERS = 4096  # parsed peer strings kept (one per client connection); cleared past that


def traced_method(method: str) -> bool:
    return not method.startswith(_UNTRACED_PREFIXES)


def method_attributes(method: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {"rpc.system": "grpc"}
    if method:
        service, _, name = method.lstrip("/").partition("/")
        attributes["rpc.method"] = name
        attributes["rpc.service"] = service
    return attributes


def _peer_attributes(peer: str) -> dict[str, str]:
    # ipv4:127.0.0.1:57284, ipv6:[::1]:57284, ipv4:10.2.1.1:57284,127.0.0.1:57284; unix: has none
    if peer.startswith("unix:"):
        return {}
    try:
        ip, port = peer.split(",")[0].split(":", 1)[1].rsplit(":", 1)
    except (IndexError, ValueError):
        return {}
    ip = unquote(ip)
    attributes = {"net.peer.ip": ip, "net.peer.port": port}
    if ip in ("[::1]", "127.0.0.1"):
        attributes["net.peer.name"] = "localhost"
    return attributes


class ServerSpans:
    """Starts and ends SERVER spans; the tracer follows the global provider (a no-op until one is set)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("retail_common.grpcx", tracer_provider=tracer_provider)
        self._peers: dict[str, dict[str, str]] = {}
        self._textmap: object = None
        self._fields: frozenset[str] = frozenset()

    def propagation_fields(self) -> frozenset[str]:
        """Metadata keys the global propagator reads (traceparent, tracestate, baggage by default)."""
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:  # set once at start-up in practice; fields is a fresh set
            self._fields = frozenset(textmap.fields)
            self._textmap = textmap
        return self._fields

    def start(
        self,
        method: str,
        attributes: Mapping[str, Any],
        carrier: Mapping[str, str] | None,
        user_agent: str | None,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> tuple[Span, object]:
        """Start the span as the current one; `carrier`: the propagation fields present in metadata."""
        parent = propagate.extract(carrier) if carrier else None
        span = self._tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        if span.is_recording():
            peer = context.peer()
            extra = self._peers.get(peer)
            if extra is None:
                if len(self._peers) >= _MAX_PEERS:
                    self._peers.clear()
                extra = self._peers[peer] = _peer_attributes(peer)
            if extra:
                span.set_attributes(extra)
            if user_agent is not None:
                span.set_attribute("rpc.user_agent", user_agent)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    @staticmethod
    def finish(
        span: Span, token: object, code: grpc.StatusCode, details: str | None, error: BaseException | None
    ) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in _ERROR_CODES:
                span.set_status(Status(StatusCode.ERROR, f"{code}:{details or ''}"))
            if error is not None:
                span.record_exception(error)
        span.end()


def scan_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None, fields: frozenset[str]
) -> tuple[str | None, str | None, dict[str, str] | None]:
    """One pass over the invocation metadata: (authorization, user-agent, propagation carrier)."""
    authorization = user_agent = None
    carrier: dict[str, str] | None = None
    for key, value in metadata or ():
        if key == "authorization":
            if authorization is None and isinstance(value, str):
                authorization = value
        elif key == "user-agent":
            if isinstance(value, str):
                user_agent = value
        elif key in fields and isinstance(value, str):
            if carrier is None:
                carrier = {}
            carrier[key] = value
    return authorization, user_agent, carrier


def outcome_code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with, as the request log and the span report it."""
    if error is None or isinstance(error, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


@asynccontextmanager
async def server_span(
    spans: ServerSpans, method: str, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[None]:
    """A SERVER span around any kind of call (the runtime inlines the same steps for unary calls)."""
    if not traced_method(method):
        yield
        return
    _, user_agent, carrier = scan_metadata(context.invocation_metadata(), spans.propagation_fields())
    span, token = spans.start(method, method_attributes(method), carrier, user_agent, context)
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        code = outcome_code(context, error)
        unexpected = None if isinstance(error, grpc.aio.AbortError | asyncio.CancelledError) else error
        spans.finish(span, token, code, context.details(), unexpected)
