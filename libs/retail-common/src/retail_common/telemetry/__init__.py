"""Traces, metrics and logs: OpenTelemetry from OTEL_* variables, gRPC/asyncpg instrumentation, JSON logs."""

from retail_common.telemetry._setup import Telemetry, TelemetryConfigError, setup_telemetry
from retail_common.telemetry.interceptors import client_interceptors, server_interceptor
from retail_common.telemetry.logs import JsonFormatter, RedactingFilter, configure_logging
from retail_common.telemetry.metrics import meter
from retail_common.telemetry.redaction import REDACTED, redact_text, redact_value
from retail_common.telemetry.server_spans import ServerSpans

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "ServerSpans",
    "Telemetry",
    "TelemetryConfigError",
    "client_interceptors",
    "configure_logging",
    "meter",
    "redact_text",
    "redact_value",
    "server_interceptor",
    "setup_telemetry",
]
