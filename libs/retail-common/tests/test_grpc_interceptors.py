"""The interceptor chain in-process: deadlines cancel work, default deny, client defaults, request log."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from pydantic import SecretStr

from retail.testing.v1 import probe_pb2, probe_pb2_grpc
from retail_common.auth import MethodPolicy, authenticated
from retail_common.context import Principal, PrincipalKind, current_call
from retail_common.errors import NotFound, parse_error
from retail_common.grpcx import HealthReporter, build_server, connect, interceptor_chain

GOOD_KEY = SecretStr("rk_0123456789abcdef_good-secret")


class FakeProbe(probe_pb2_grpc.ProbeServiceServicer):
    def __init__(self) -> None:
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.remaining: list[float | None] = []
        self.request_ids: list[str | None] = []

    async def Echo(self, request, context):  # noqa: N802
        self.remaining.append(context.time_remaining())
        try:
            await asyncio.sleep(request.delay_ms / 1000)
        except asyncio.CancelledError:
            self.cancelled.append(request.message)
            raise
        self.finished.append(request.message)
        return probe_pb2.EchoResponse(message=request.message)

    async def RecordAmount(self, request, context):  # noqa: N802
        call = current_call()
        self.request_ids.append(call.request_id)
        assert call.principal is not None  # auth added the principal without dropping the request id
        return probe_pb2.RecordAmountResponse()

    async def GetAccount(self, request, context):  # noqa: N802
        raise NotFound("account", request.account_id)

    async def WhoAmI(self, request, context):  # noqa: N802
        principal = current_call().principal
        return probe_pb2.WhoAmIResponse(principal_id=principal.id)


async def resolve(key: str) -> Principal | None:
    return Principal("shop", PrincipalKind.CHANNEL) if key == GOOD_KEY.get_secret_value() else None


@pytest.fixture
async def served():
    servicer = FakeProbe()
    policies = {
        "/retail.testing.v1.ProbeService/Echo": authenticated(),
        "/retail.testing.v1.ProbeService/GetAccount": authenticated(),
        "/retail.testing.v1.ProbeService/RecordAmount": authenticated(),
        "/test.Stream/Count": authenticated(),
        # WhoAmI deliberately unlisted: denied by default.
    }
    health = HealthReporter(["retail.testing.v1.ProbeService"])
    server = build_server(
        interceptors=interceptor_chain(resolve=resolve, policies=policies, error_domain="retail.testing.v1"),
        health=health,
        max_message_bytes=64 * 1024,
    )
    probe_pb2_grpc.add_ProbeServiceServicer_to_server(servicer, server)

    async def count(request: bytes, context):
        # A server-streaming method: the client defaults must reach streaming calls too.
        servicer.remaining.append(context.time_remaining())
        for i in range(3):
            yield bytes([i])

    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Stream", {"Count": grpc.unary_stream_rpc_method_handler(count)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


async def test_expired_deadline_cancels_the_handler(served):
    servicer, address = served
    async with connect(address, credential=GOOD_KEY, tracing=False) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await probe_pb2_grpc.ProbeServiceStub(channel).Echo(
                probe_pb2.EchoRequest(message="slow", delay_ms=3000), timeout=0.2
            )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(100):
        if servicer.cancelled:
            break
        await asyncio.sleep(0.05)
    assert servicer.cancelled == ["slow"]
    assert servicer.finished == []


async def test_client_adds_credential_and_default_deadline(served):
    servicer, address = served
    async with connect(address, credential=GOOD_KEY, default_timeout=7.0, tracing=False) as channel:
        await probe_pb2_grpc.ProbeServiceStub(channel).Echo(probe_pb2.EchoRequest(message="hi"))
    assert servicer.remaining[0] is not None
    assert 0 < servicer.remaining[0] < 8  # the 7 s default, give or take clock granularity


async def test_client_defaults_also_apply_to_streaming_calls(served):
    servicer, address = served
    async with connect(address, credential=GOOD_KEY, default_timeout=7.0, tracing=False) as channel:
        call = channel.unary_stream("/test.Stream/Count")(b"")
        assert [item async for item in call] == [b"\x00", b"\x01", b"\x02"]
    assert servicer.remaining[0] is not None
    assert 0 < servicer.remaining[0] < 8  # the 7 s default, give or take clock granularity


async def test_a_requests_request_id_joins_the_call_context(served):
    servicer, address = served
    async with connect(address, credential=GOOD_KEY, tracing=False) as channel:
        stub = probe_pb2_grpc.ProbeServiceStub(channel)
        await stub.RecordAmount(probe_pb2.RecordAmountRequest(request_id="req-42"))
        await stub.RecordAmount(probe_pb2.RecordAmountRequest())
    # audit records and log lines read it from the context (retail_common.db.append_audit defaults to it)
    assert servicer.request_ids == ["req-42", None]


async def test_unlisted_method_is_denied_after_authentication(served):
    _, address = served
    for key, code in ((GOOD_KEY, grpc.StatusCode.PERMISSION_DENIED), (None, grpc.StatusCode.UNAUTHENTICATED)):
        async with connect(address, credential=key, tracing=False) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await probe_pb2_grpc.ProbeServiceStub(channel).WhoAmI(probe_pb2.WhoAmIRequest())
        assert caught.value.code() == code


async def test_domain_error_mapped_and_request_logged_without_metadata(served, caplog):
    _, address = served
    caplog.set_level(logging.INFO, logger="retail_common.grpcx")
    async with connect(address, credential=GOOD_KEY, tracing=False) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await probe_pb2_grpc.ProbeServiceStub(channel).GetAccount(
                probe_pb2.GetAccountRequest(account_id="a1")
            )
    error = parse_error(caught.value)
    assert (error.code, error.reason, error.resource) == (
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
        ("account", "a1"),
    )
    records = [r for r in caplog.records if getattr(r, "rpc_method", "").endswith("/GetAccount")]
    assert len(records) == 1
    assert (records[0].rpc_code, records[0].principal_id) == ("NOT_FOUND", "shop")
    assert GOOD_KEY.get_secret_value() not in caplog.text


async def test_oversized_request_is_refused(served):
    _, address = served
    async with connect(address, credential=GOOD_KEY, tracing=False) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await probe_pb2_grpc.ProbeServiceStub(channel).Echo(probe_pb2.EchoRequest(message="x" * 100_000))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_method_policy_equality_is_by_value():
    assert MethodPolicy(roles=["a"]) == MethodPolicy(roles=("a",))
