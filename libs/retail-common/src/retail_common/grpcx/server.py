"""Assemble a grpc.aio server: interceptor chain, bounded message sizes, health and reflection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from retail_common.auth.policy import MethodPolicy
from retail_common.grpcx.health import HealthReporter
from retail_common.grpcx.interceptors import Resolver
from retail_common.grpcx.request_log import RequestLogPolicy
from retail_common.grpcx.runtime import RuntimeInterceptor
from retail_common.telemetry.server_spans import ServerSpans

__all__ = ["build_server", "enable_reflection", "interceptor_chain"]


def interceptor_chain(
    *,
    resolve: Resolver,
    policies: Mapping[str, MethodPolicy],
    error_domain: str,
    outer: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    tracing: ServerSpans | None = None,
    log_policy: RequestLogPolicy | None = None,
) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """`outer` first, then the runtime's one interceptor: server span (when `tracing`), call context and
    request log, error mapping, deadline, auth (grpcx/runtime.py)."""
    runtime = RuntimeInterceptor(
        resolve=resolve,
        policies=policies,
        error_domain=error_domain,
        tracing=tracing,
        log_policy=log_policy,
    )
    return [*outer, runtime]


def build_server(
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]],
    health: HealthReporter,
    max_message_bytes: int,
) -> grpc.aio.Server:
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    return server


def enable_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Reflection for the given services plus health and reflection themselves (grpcurl works)."""
    names = [
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(names, server)
