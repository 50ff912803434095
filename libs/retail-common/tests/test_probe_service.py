"""Issue 2's runtime "Must show", through the probe service running as a separate process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from retail.testing.v1 import probe_pb2, probe_pb2_grpc
from retail_common.auth import CredentialStore, parse_key
from retail_common.context import PrincipalKind
from retail_common.errors import parse_error
from retail_common.grpcx import EVENTING, connect
from retail_common.testing.probe import ADMIN_ROLE

PROBE_MODULE = "retail_common.testing.probe"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Poll until check() holds (generous bound; no timing is asserted)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def probe(start_service, database_url, nats_server):
    return await start_service(PROBE_MODULE, {"DATABASE_URL": database_url, "NATS_URL": nats_server.url})


@pytest.fixture
async def pool(probe, database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def credentials(pool):
    return CredentialStore(pool)


@pytest.fixture
async def channel_key(credentials) -> SecretStr:
    return (await credentials.create("web-shop", PrincipalKind.CHANNEL)).key


def stub(probe, key: SecretStr | None) -> tuple[grpc.aio.Channel, probe_pb2_grpc.ProbeServiceStub]:
    channel = connect(probe.address, credential=key, default_timeout=10.0, tracing=False)
    return channel, probe_pb2_grpc.ProbeServiceStub(channel)


async def health_status(probe, service: str = ""):
    async with grpc.aio.insecure_channel(probe.address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        except grpc.aio.AioRpcError:
            return None
        return response.status


async def test_reflection_lists_the_probe_service(probe):
    async with grpc.aio.insecure_channel(probe.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in reflection.ServerReflectionInfo(iter([request]), timeout=10)]
    names = {service.name for service in responses[0].list_services_response.service}
    assert "retail.testing.v1.ProbeService" in names
    assert "grpc.health.v1.Health" in names


async def test_health_follows_the_database(probe, postgres_server, database):
    assert await health_status(probe) == SERVING
    assert await health_status(probe, "retail.testing.v1.ProbeService") == SERVING
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        # Really unreachable: no new connections, and the service's existing ones are cut.
        await admin.execute(f'ALTER DATABASE "{database.name}" WITH ALLOW_CONNECTIONS false')

        async def not_serving() -> bool:
            # Cut again on every poll: a connection still in its start-up when the first cut ran
            # would otherwise survive and keep the database reachable.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database.name
            )
            # A database outage must degrade health, never take the service down.
            assert probe.returncode is None, "probe exited during the outage:\n" + probe.log_text()[-4000:]
            return await health_status(probe) == NOT_SERVING

        await eventually(not_serving, "overall health NOT_SERVING while the DB is unreachable")
        assert await health_status(probe, "retail.testing.v1.ProbeService") == NOT_SERVING
    finally:
        await admin.execute(f'ALTER DATABASE "{database.name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()

    async def serving() -> bool:
        return await health_status(probe) == SERVING

    await eventually(serving, "overall health SERVING again once the DB is back")


async def test_eventing_entry_follows_nats(probe, nats_server):
    async def eventing_is(status) -> bool:
        return await health_status(probe, EVENTING) == status

    await eventually(lambda: eventing_is(SERVING), "eventing SERVING with NATS up")
    nats_server.kill()
    await eventually(lambda: eventing_is(NOT_SERVING), "eventing NOT_SERVING after kill -9 of NATS")
    assert await health_status(probe) == SERVING  # a NATS outage does not pull the pod
    nats_server.start()
    await eventually(lambda: eventing_is(SERVING), "eventing SERVING after NATS restarts")


async def test_bad_request_is_invalid_argument_naming_the_field(probe, channel_key):
    channel, probe_stub = stub(probe, channel_key)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await probe_stub.Echo(probe_pb2.EchoRequest(message=""))
    error = parse_error(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["message"]
    assert (error.reason, error.domain) == ("INVALID_FIELD", "retail.testing.v1")


async def test_unexpected_exception_is_internal_without_its_message(probe, channel_key):
    secret_detail = f"do-not-leak-{uuid.uuid4().hex}"
    channel, probe_stub = stub(probe, channel_key)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await probe_stub.Crash(probe_pb2.CrashRequest(secret_detail=secret_detail))
    error = parse_error(caught.value)
    assert error.code == grpc.StatusCode.INTERNAL
    assert secret_detail not in error.message
    assert secret_detail not in str(caught.value.trailing_metadata())
    assert secret_detail not in caught.value.debug_error_string()
    assert error.reason == "INTERNAL"
    trace_id = error.metadata["trace_id"]
    assert trace_id in error.message
    # The exception is logged server-side under the same trace id.
    await eventually(
        lambda: asyncio.sleep(0, trace_id in probe.log_text() and secret_detail in probe.log_text()),
        "exception logged with its trace id",
    )


async def test_expired_deadline_stops_the_work(probe, channel_key, pool):
    channel, probe_stub = stub(probe, channel_key)
    async with channel:
        done = await probe_stub.Echo(probe_pb2.EchoRequest(message="on-time"))
        assert done.message == "on-time"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await probe_stub.Echo(probe_pb2.EchoRequest(message="too-late", delay_ms=2000), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(3)  # well past the handler's 2 s delay: had it kept running, its row would exist
    echoed = [row["message"] for row in await pool.fetch("SELECT message FROM probe_echoes")]
    assert echoed == ["on-time"]


async def test_authentication_and_authorization(probe, credentials):
    channel_cred = await credentials.create("web-shop", PrincipalKind.CHANNEL, ["probe.admin"])
    operator = await credentials.create("alice", PrincipalKind.OPERATOR, ["ops.viewer"])
    admin = await credentials.create("root", PrincipalKind.OPERATOR, [ADMIN_ROLE])
    revoked = await credentials.create("old-shop", PrincipalKind.CHANNEL)
    assert await credentials.revoke(revoked.key_id)
    good = channel_cred.key.get_secret_value()
    wrong = SecretStr(good[:-4] + ("xxxx" if not good.endswith("xxxx") else "yyyy"))

    async def code_of(key: SecretStr | None, method: str) -> grpc.StatusCode:
        channel, probe_stub = stub(probe, key)
        async with channel:
            try:
                request = probe_pb2.WhoAmIRequest() if method == "WhoAmI" else probe_pb2.AdminOnlyRequest()
                await getattr(probe_stub, method)(request)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert await code_of(None, "WhoAmI") == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(wrong, "WhoAmI") == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(SecretStr("not-a-key"), "WhoAmI") == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(revoked.key, "WhoAmI") == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(channel_cred.key, "AdminOnly") == grpc.StatusCode.PERMISSION_DENIED  # wrong kind
    assert await code_of(operator.key, "AdminOnly") == grpc.StatusCode.PERMISSION_DENIED  # missing role
    assert await code_of(admin.key, "AdminOnly") == grpc.StatusCode.OK

    channel, probe_stub = stub(probe, operator.key)
    async with channel:
        me = await probe_stub.WhoAmI(probe_pb2.WhoAmIRequest())
    assert (me.principal_id, list(me.roles)) == ("alice", ["ops.viewer"])

    # Revocation (here from another process) takes effect once its NOTIFY reaches the service's
    # credential cache: polled within 10 s, far below the cache's 60 s max age (the key was cached
    # moments ago), so only the notification can explain the refusal.
    assert await credentials.revoke(operator.key_id)

    async def operator_refused() -> bool:
        return await code_of(operator.key, "WhoAmI") == grpc.StatusCode.UNAUTHENTICATED

    await eventually(operator_refused, "revoked key refused after the notification", within=10.0)

    await probe.terminate()  # flush every log line before scanning
    log = probe.log_text()
    assert "/retail.testing.v1.ProbeService/WhoAmI" in log  # the request log did capture these calls
    for issued in (channel_cred, operator, admin, revoked):
        key = issued.key.get_secret_value()
        assert key not in log
        assert parse_key(key).secret.get_secret_value() not in log
    assert wrong.get_secret_value() not in log


async def test_cached_keys_do_not_read_the_credentials_table(probe, credentials, pool, database_url):
    cached = await credentials.create("web-shop", PrincipalKind.CHANNEL)
    fresh = await credentials.create("new-shop", PrincipalKind.CHANNEL)

    async def listener_up() -> bool:
        count = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'probe:auth-listener'"
            " AND datname = current_database() AND state = 'idle' AND query <> ''"  # LISTEN was its first
        )
        return bool(count)

    await eventually(listener_up, "the credential cache's LISTEN connection is up")
    channel, probe_stub = stub(probe, cached.key)
    async with channel:
        await probe_stub.WhoAmI(probe_pb2.WhoAmIRequest())  # loads and caches the key
        locker = await asyncpg.connect(database_url)
        try:
            async with locker.transaction():
                # Any read of auth_credentials now blocks until this transaction ends.
                await locker.execute("LOCK TABLE auth_credentials IN ACCESS EXCLUSIVE MODE")
                for _ in range(20):
                    me = await probe_stub.WhoAmI(probe_pb2.WhoAmIRequest(), timeout=10)
                    assert me.principal_id == "web-shop"
                # An uncached key does need the table, so the lock does bite.
                fresh_channel, fresh_stub = stub(probe, fresh.key)
                async with fresh_channel:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await fresh_stub.WhoAmI(probe_pb2.WhoAmIRequest(), timeout=1)
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            await locker.close()
        assert (await probe_stub.WhoAmI(probe_pb2.WhoAmIRequest())).principal_id == "web-shop"


async def test_sigterm_finishes_the_in_flight_call_and_exits_cleanly(probe, channel_key, pool):
    channel, probe_stub = stub(probe, channel_key)
    async with channel:

        async def slow_echo() -> probe_pb2.EchoResponse:
            return await probe_stub.Echo(
                probe_pb2.EchoRequest(message="finish-me", delay_ms=1500), timeout=30
            )

        in_flight = asyncio.create_task(slow_echo())
        await asyncio.sleep(0.5)  # let the call reach the handler (it sleeps 1.5 s there)
        exit_code = await probe.terminate()
        response = await in_flight
    assert exit_code == 0
    assert response.message == "finish-me"
    assert await pool.fetchval("SELECT count(*) FROM probe_echoes WHERE message = 'finish-me'") == 1
    assert "probe stopped" in probe.log_text()
