"""Structured JSON logs on stderr, one object per line, carrying the current trace and span ids."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

from retail_common.context import current_call
from retail_common.telemetry.redaction import redact_text, redact_value

__all__ = ["JsonFormatter", "RedactingFilter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_MARK = "_retail_json_handler"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    """Scrubs credentials from the message, its arguments, `extra` fields and exception text.

    Attached to the handler (not a logger) so it sees records propagated from every logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        extras = _extras(record)
        for key, value in extras.items():
            redacted = redact_value(value, key)
            if redacted is not value:  # most values are clean: no attribute write, no dict change
                setattr(record, key, redacted)
                extras[key] = redacted
        record._retail_extras = extras  # the formatter's copy (a leading "_" keeps it out of extras)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service_name,
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        call = current_call()
        if call is not None:
            entry["rpc_method"] = call.method
            if call.request_id:
                entry["request_id"] = call.request_id
            if call.principal is not None:
                entry["principal"] = call.principal.id
        extras = getattr(record, "_retail_extras", None)
        for key, value in (extras if extras is not None else _extras(record)).items():
            entry.setdefault(key, value)  # the fixed fields above win over a clashing extra
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: int | str = "INFO", service_name: str | None = None, *, stream: TextIO | None = None
) -> logging.Handler:
    """Route all logging to one JSON handler on stderr (idempotent: replaces its previous handler).

    service_name defaults to OTEL_SERVICE_NAME so logs and traces name the service the same way.
    """
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "unknown_service"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(name))
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
