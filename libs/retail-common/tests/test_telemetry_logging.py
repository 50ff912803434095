"""JSON log lines and redaction, in process (no global telemetry state touched)."""

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from retail_common.context import CallContext, Principal, PrincipalKind, set_call
from retail_common.telemetry import JsonFormatter, RedactingFilter, redact_text


@pytest.fixture
def emit() -> Iterator[Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("svc"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.telemetry.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    def log(msg: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        stream.seek(0)
        stream.truncate()
        logger.info(msg, *args, **kwargs)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        parsed: dict[str, Any] = json.loads(lines[0])
        return parsed

    yield log
    logger.removeHandler(handler)


def test_one_json_object_per_line_with_trace_context(emit: Any) -> None:
    tracer = TracerProvider().get_tracer("t")  # local provider: no global state
    with tracer.start_as_current_span("op") as span:
        line = emit("hello %s", "world", extra={"sku": "A-1", "qty": 2})
    ctx = span.get_span_context()
    assert line["message"] == "hello world"
    assert (line["level"], line["logger"], line["service"]) == ("INFO", "test.telemetry.logging", "svc")
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert (line["sku"], line["qty"]) == ("A-1", 2)
    assert line["timestamp"].endswith("+00:00")


def test_outside_a_span_there_are_no_trace_ids_and_call_context_is_included(emit: Any) -> None:
    set_call(CallContext("/svc/Do", Principal("web", PrincipalKind.CHANNEL), request_id="r-1"))
    try:
        line = emit("x")
    finally:
        set_call(None)
    assert "trace_id" not in line
    assert (line["rpc_method"], line["request_id"], line["principal"]) == ("/svc/Do", "r-1", "web")


def test_api_key_secrets_and_sensitive_fields_never_reach_the_line(emit: Any) -> None:
    line = emit(
        "auth failed for %s (password=hunter2)",
        "rk_abc123_s3cr3tvalue",
        extra={
            "authorization": "Bearer rk_abc123_s3cr3tvalue",
            "client_secret": "xyz",
            "headers": {"X-Api-Token": "t0k", "accept": "json"},
            "dsn": "postgresql://app:pa55word@db:5432/pricing",
            "keys": ["rk_k9_other-secret_1"],
        },
    )
    raw = json.dumps(line)
    for secret in ("s3cr3tvalue", "hunter2", "xyz", "t0k", "pa55word", "other-secret"):
        assert secret not in raw
    assert line["message"] == "auth failed for rk_abc123_[REDACTED] (password=[REDACTED])"
    assert line["authorization"] == "[REDACTED]"
    assert line["headers"] == {"X-Api-Token": "[REDACTED]", "accept": "json"}
    assert line["dsn"] == "postgresql://app:[REDACTED]@db:5432/pricing"
    assert line["keys"] == ["rk_k9_[REDACTED]"]


def test_exception_text_is_redacted(emit: Any) -> None:
    try:
        raise ValueError("bad key rk_abc123_s3cr3tvalue")
    except ValueError:
        line = emit("failed", exc_info=True)
    assert "s3cr3tvalue" not in line["exception"]
    assert "ValueError: bad key rk_abc123_[REDACTED]" in line["exception"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("network_id_abc is fine", "network_id_abc is fine"),  # not a key: no boundary before rk_
        ("key=rk_A1_b-c_d", "key=rk_A1_[REDACTED]"),
        ('{"token": "abc"}', '{"token": "[REDACTED]"}'),
        ("Authorization: Bearer abc.def", "Authorization: [REDACTED]"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
