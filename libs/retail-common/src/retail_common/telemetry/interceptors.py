"""gRPC (grpc.aio) tracing interceptors, with health checks and reflection left untraced.

Kubernetes probes hit Health/Check every few seconds; tracing them would bury real calls.
"""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor, filters

__all__ = ["client_interceptors", "server_interceptor"]


def _traced() -> Any:
    return filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection.")))


def server_interceptor() -> grpc.aio.ServerInterceptor[Any, Any]:
    """Server spans (SERVER kind) continuing the caller's W3C trace context from metadata."""
    interceptor: grpc.aio.ServerInterceptor[Any, Any] = aio_server_interceptor(filter_=_traced())  # type: ignore[no-untyped-call]
    return interceptor


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Client spans (CLIENT kind) that inject W3C trace context into outgoing metadata."""
    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(filter_=_traced())  # type: ignore[no-untyped-call]
    return interceptors
