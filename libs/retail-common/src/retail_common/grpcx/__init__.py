"""gRPC server and client pieces every service uses (assembled by retail_common.service.run_service)."""

from retail_common.grpcx.audit import audit_page, audit_record_proto
from retail_common.grpcx.client import connect
from retail_common.grpcx.health import EVENTING, OVERALL, HealthReporter
from retail_common.grpcx.interceptors import (
    AuthInterceptor,
    CallContextInterceptor,
    DeadlineInterceptor,
    ErrorInterceptor,
    Resolver,
    current_trace_id,
)
from retail_common.grpcx.request_log import RequestLogPolicy
from retail_common.grpcx.runtime import RuntimeInterceptor
from retail_common.grpcx.server import build_server, enable_reflection, interceptor_chain

__all__ = [
    "EVENTING",
    "OVERALL",
    "AuthInterceptor",
    "CallContextInterceptor",
    "DeadlineInterceptor",
    "ErrorInterceptor",
    "HealthReporter",
    "RequestLogPolicy",
    "Resolver",
    "RuntimeInterceptor",
    "audit_page",
    "audit_record_proto",
    "build_server",
    "connect",
    "current_trace_id",
    "enable_reflection",
    "interceptor_chain",
]
