"""The runtime's one interceptor in-process: server spans (attributes, parent, status, exceptions), the
request log policy (failed and slow calls always, OK calls sampled), and the reused wrapped handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import SecretStr

from retail.testing.v1 import probe_pb2, probe_pb2_grpc
from retail_common.auth import authenticated
from retail_common.context import Principal, PrincipalKind, current_call
from retail_common.errors import NotFound
from retail_common.grpcx import HealthReporter, RequestLogPolicy, build_server, connect, interceptor_chain
from retail_common.grpcx.request_log import log_call
from retail_common.telemetry import ServerSpans

KEY = SecretStr("rk_0123456789abcdef_runtime-secret")
PROBE = "/retail.testing.v1.ProbeService/"
PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


class Probe(probe_pb2_grpc.ProbeServiceServicer):
    def __init__(self) -> None:
        self.trace_ids: list[str | None] = []

    async def WhoAmI(self, request: Any, context: Any) -> probe_pb2.WhoAmIResponse:  # noqa: N802
        call = current_call()
        assert call is not None
        assert call.principal is not None
        self.trace_ids.append(call.trace_id)
        return probe_pb2.WhoAmIResponse(principal_id=call.principal.id)

    async def GetAccount(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise NotFound("account", request.account_id)

    async def Crash(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise RuntimeError(request.secret_detail)


async def _settled(done: Callable[[], bool]) -> None:
    """An aborted call's status reaches the client before the server's handler has unwound to its span
    end and log line: wait for them (bounded; the assertion that follows says what was missing)."""
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)


async def resolve(key: str) -> Principal | None:
    return Principal("shop", PrincipalKind.CHANNEL) if key == KEY.get_secret_value() else None


@pytest.fixture
async def traced(request: pytest.FixtureRequest) -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    policy: RequestLogPolicy = getattr(request, "param", RequestLogPolicy())
    servicer = Probe()
    server = build_server(
        interceptors=interceptor_chain(
            resolve=resolve,
            policies={PROBE + m: authenticated() for m in ("WhoAmI", "GetAccount", "Crash")},
            error_domain="retail.testing.v1",
            tracing=ServerSpans(provider),
            log_policy=policy,
        ),
        health=HealthReporter(["retail.testing.v1.ProbeService"]),
        max_message_bytes=64 * 1024,
    )
    probe_pb2_grpc.add_ProbeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with connect(f"127.0.0.1:{port}", credential=KEY, tracing=False) as channel:
        yield probe_pb2_grpc.ProbeServiceStub(channel), exporter, servicer
    await server.stop(None)


async def test_server_span_continues_the_callers_trace_with_the_rpc_attributes(traced: Any) -> None:
    stub, exporter, servicer = traced
    traceparent = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
    await stub.WhoAmI(probe_pb2.WhoAmIRequest(), metadata=(("traceparent", traceparent),))
    await stub.WhoAmI(probe_pb2.WhoAmIRequest())  # no caller context: a new trace (the handler is reused)
    continued, fresh = exporter.get_finished_spans()
    assert continued.name == PROBE + "WhoAmI"
    assert continued.kind.name == "SERVER"
    assert format(continued.context.trace_id, "032x") == PARENT_TRACE
    assert continued.parent is not None
    assert format(continued.parent.span_id, "016x") == PARENT_SPAN
    attributes = dict(continued.attributes or {})
    assert attributes["rpc.system"] == "grpc"
    assert attributes["rpc.service"] == "retail.testing.v1.ProbeService"
    assert attributes["rpc.method"] == "WhoAmI"
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["net.peer.ip"] == "127.0.0.1"
    assert attributes["net.peer.name"] == "localhost"
    assert str(attributes["rpc.user_agent"]).startswith("grpc-python")
    assert continued.status.status_code == StatusCode.UNSET
    assert fresh.parent is None
    assert fresh.context.trace_id != continued.context.trace_id
    # the call context (request log, audit) carries the span's trace id
    assert servicer.trace_ids == [PARENT_TRACE, format(fresh.context.trace_id, "032x")]


async def test_domain_errors_are_answers_and_unexpected_exceptions_are_recorded(traced: Any) -> None:
    stub, exporter, _ = traced
    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await stub.GetAccount(probe_pb2.GetAccountRequest(account_id="a1"))
    with pytest.raises(grpc.aio.AioRpcError) as crashed:
        await stub.Crash(probe_pb2.CrashRequest(secret_detail="s3cret"))
    await _settled(lambda: len(exporter.get_finished_spans()) == 2)
    assert (not_found.value.code(), crashed.value.code()) == (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INTERNAL,
    )
    assert "s3cret" not in (crashed.value.details() or "")
    answered, failed = exporter.get_finished_spans()
    assert answered.attributes is not None
    assert answered.attributes["rpc.grpc.status_code"] == 5
    assert answered.status.status_code == StatusCode.UNSET  # a client-side code, as the OTel library does
    assert not answered.events
    assert failed.attributes is not None
    assert failed.attributes["rpc.grpc.status_code"] == 13
    assert failed.status.status_code == StatusCode.ERROR
    (event,) = failed.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"


async def test_unauthenticated_calls_get_a_span_too(traced: Any) -> None:
    stub, exporter, _ = traced
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.WhoAmI(probe_pb2.WhoAmIRequest(), metadata=(("authorization", "Bearer rk_nope_nope"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await _settled(lambda: len(exporter.get_finished_spans()) == 1)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == 16


def _rpc_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "rpc_method")]


@pytest.mark.parametrize("traced", [RequestLogPolicy(ok_sample_rate=0.0)], indirect=True)
async def test_with_sampling_off_only_failed_calls_are_logged(
    traced: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stub, _, _ = traced
    caplog.set_level(logging.INFO, logger="retail_common.grpcx")
    for _ in range(3):
        await stub.WhoAmI(probe_pb2.WhoAmIRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetAccount(probe_pb2.GetAccountRequest(account_id="a1"))
    await _settled(lambda: bool(_rpc_records(caplog)))
    (record,) = _rpc_records(caplog)
    assert (record.rpc_method, record.rpc_code, record.principal_id) == (  # type: ignore[attr-defined]
        PROBE + "GetAccount",
        "NOT_FOUND",
        "shop",
    )


async def test_by_default_every_call_is_logged(traced: Any, caplog: pytest.LogCaptureFixture) -> None:
    stub, _, _ = traced
    caplog.set_level(logging.INFO, logger="retail_common.grpcx")
    for _ in range(3):
        await stub.WhoAmI(probe_pb2.WhoAmIRequest())
    records = _rpc_records(caplog)
    assert [r.rpc_code for r in records] == ["OK"] * 3  # type: ignore[attr-defined]
    assert not any(hasattr(r, "log_sample_rate") for r in records)


def test_policy_keeps_failed_and_slow_calls_and_draws_for_the_rest() -> None:
    draws = iter([0.05, 0.5])
    policy = RequestLogPolicy(ok_sample_rate=0.1, slow_ms=200.0, draw=lambda: next(draws))
    assert policy.keeps(grpc.StatusCode.INTERNAL, 1.0)  # failed: always, no draw taken
    assert policy.keeps(grpc.StatusCode.OK, 250.0)  # slow: always, no draw taken
    assert policy.keeps(grpc.StatusCode.OK, 1.0)  # draw 0.05 < 0.1
    assert not policy.keeps(grpc.StatusCode.OK, 1.0)  # draw 0.5
    assert RequestLogPolicy().keeps(grpc.StatusCode.OK, 0.0)
    assert not RequestLogPolicy(ok_sample_rate=0.0).keeps(grpc.StatusCode.OK, 0.0)
    with pytest.raises(ValueError, match="ok_sample_rate"):
        RequestLogPolicy(ok_sample_rate=1.5)


def test_sampled_lines_carry_the_rate_and_slow_ones_do_not(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="retail_common.grpcx")
    policy = RequestLogPolicy(ok_sample_rate=0.25, slow_ms=100.0, draw=lambda: 0.0)
    log_call("/a.B/Fast", grpc.StatusCode.OK, 1.0, None, policy)
    log_call("/a.B/Slow", grpc.StatusCode.OK, 150.0, None, policy)
    log_call("/a.B/Failed", grpc.StatusCode.INTERNAL, 1.0, None, policy)
    fast, slow, failed = _rpc_records(caplog)
    assert fast.log_sample_rate == 0.25  # type: ignore[attr-defined]
    assert not hasattr(slow, "log_sample_rate")
    assert not hasattr(failed, "log_sample_rate")
    assert fast.getMessage() == "rpc /a.B/Fast OK 1.0ms"
