"""The gateway as a separate process (real Postgres, real nats-server): registry, credentials and
scoping, validation, change streams, and webhook delivery of domain events to the fake marketplace."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from retail.channel.v1 import (
    channel_gateway_service_pb2 as gw,
)
from retail.channel.v1 import (
    channel_gateway_service_pb2_grpc,
    channel_pb2,
)
from retail.channel.v1 import (
    channel_operations_service_pb2 as ops,
)
from retail_channel_gateway.testing import FakeMarketplace
from retail_channel_gateway.testing.harness import (
    Clients,
    availability,
    eventually,
    price_changed,
    publish,
    refused,
    register,
    secret_of,
    stream_channel,
    webhook_channel,
)
from retail_common.db import create_pool

MODULE = "retail_channel_gateway"


@pytest.fixture
async def gateway(start_service, database_url, nats_server):
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "ALLOW_HTTP_WEBHOOKS": "true",
        "PRICING_TARGET": "127.0.0.1:1",  # nothing listens: façade calls must become UNAVAILABLE
        "INVENTORY_RESERVATION_TARGET": "127.0.0.1:1",
        "FACADE_TIMEOUT_SECONDS": "0.5",
        "DELIVERY_LEASE_SECONDS": "3",
        "DELIVERY_POLL_SECONDS": "0.02",
        "REGISTRY_CACHE_SECONDS": "0",
        "CHANGE_LOG_SWEEP_SECONDS": "0.2",
        "STREAM_POLL_SECONDS": "0.02",
        "DB_POOL_MAX": "4",
    }
    return await start_service(MODULE, env)


@pytest.fixture
async def clients(gateway, database_url):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    c = Clients(pool, gateway.address)
    yield c
    await c.close()
    await pool.close()


# ------------------------------------------------------------------------------------------------ auth


async def test_credentials_and_scoping_refuse_with_the_right_codes_and_keys_stay_out_of_logs(
    gateway, clients
) -> None:
    operator = await clients.operator()
    web_key, _ = await register(operator, webhook_channel("web", "http://127.0.0.1:1/x"), ["A", "B"])
    app_key, _ = await register(operator, webhook_channel("app", "http://127.0.0.1:1/x"), ["A"])
    web = clients.gateway(web_key)
    offers = gw.GetOffersRequest(location_id="s1", skus=["A"], currency_code="EUR")

    # valid key, own channel, listed SKU: passes scoping; pricing is down -> UNAVAILABLE (no made-up price)
    assert (await refused(web.GetOffers(offers))).code is grpc.StatusCode.UNAVAILABLE
    # no key, wrong key
    no_key = channel_gateway_service_pb2_grpc.ChannelGatewayServiceStub(clients._channel(None))
    assert (await refused(no_key.GetOffers(offers))).code is grpc.StatusCode.UNAUTHENTICATED
    forged = web_key[:-4] + ("AAAA" if not web_key.endswith("AAAA") else "BBBB")
    assert (await refused(clients.gateway(forged).GetOffers(offers))).code is grpc.StatusCode.UNAUTHENTICATED
    # another channel's data
    other = gw.GetOffersRequest(channel_id="app", location_id="s1", skus=["A"], currency_code="EUR")
    assert (await refused(web.GetOffers(other))).code is grpc.StatusCode.PERMISSION_DENIED
    # SKU outside the assortment, location not served
    outside = await refused(
        web.GetOffers(gw.GetOffersRequest(location_id="s1", skus=["Z"], currency_code="EUR"))
    )
    assert (outside.code, outside.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SKU_NOT_IN_ASSORTMENT")
    far = await refused(web.GetOffers(gw.GetOffersRequest(location_id="s9", skus=["A"], currency_code="EUR")))
    assert far.code is grpc.StatusCode.PERMISSION_DENIED
    # a channel cannot use operator RPCs; an operator without the role cannot mutate
    as_ops = clients.operations(web_key)
    denied = await refused(as_ops.ListChannels(ops.ListChannelsRequest()))
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED
    viewer = await clients.operator(roles=("channel.viewer",), name="vic")
    assert len((await viewer.ListChannels(ops.ListChannelsRequest())).channels) == 2
    create = ops.CreateChannelRequest(request_id="v1", channel=webhook_channel("x", "http://127.0.0.1:1/x"))
    assert (await refused(viewer.CreateChannel(create))).code is grpc.StatusCode.PERMISSION_DENIED
    nobody = await clients.operator(roles=(), name="nora")
    assert (await refused(nobody.GetChannel(ops.GetChannelRequest(channel_id="web")))).code is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # revoked key
    listed = await operator.ListChannelCredentials(ops.ListChannelCredentialsRequest(channel_id="app"))
    [credential] = listed.credentials
    revoke = ops.RevokeChannelCredentialRequest(request_id="r1", key_id=credential.key_id)
    await operator.RevokeChannelCredential(revoke)
    app = clients.gateway(app_key)
    assert (await refused(app.GetOffers(offers))).code is grpc.StatusCode.UNAUTHENTICATED
    # the keys' secrets never reach the log
    log = gateway.log_text()
    for key in (web_key, app_key):
        secret = secret_of(key)
        assert secret not in log


async def test_bad_input_names_the_field_and_changes_nothing(gateway, clients) -> None:
    operator = await clients.operator()
    bad = webhook_channel("no spaces allowed", "ftp://x", batch_size=5000)
    bad.kind = channel_pb2.CHANNEL_KIND_UNSPECIFIED
    error = await refused(operator.CreateChannel(ops.CreateChannelRequest(request_id="b1", channel=bad)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert set(error.fields) == {
        "channel.channel_id", "channel.kind", "channel.delivery.webhook.url", "channel.delivery.batch_size"
    }  # fmt: skip
    assert (await operator.ListChannels(ops.ListChannelsRequest())).channels == []
    key, _ = await register(operator, webhook_channel("web", "http://127.0.0.1:1/x"), ["A"])
    web = clients.gateway(key)
    quote = gw.QuoteCartRequest(location_id="s1", currency_code="eur")
    error = await refused(web.QuoteCart(quote))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert set(error.fields) == {"currency_code", "lines"}
    audit = await operator.ListAuditRecords(ops.ListAuditRecordsRequest())
    assert {r.request_id for r in audit.records} == {"c-web", "a-web", "k-web"}
    assert sorted(r.action.rsplit("/", 1)[-1] for r in audit.records) == [
        "CreateChannel", "CreateChannelCredential", "UpdateAssortment"]  # fmt: skip


# ---------------------------------------------------------------------------------------- change stream


async def read(stream, n: int) -> list:
    """Read changes until n arrived (the stream stays open afterwards)."""
    out = []
    async for response in stream:
        out.extend(response.changes)
        if len(out) >= n:
            return out
    return out


async def test_stream_changes_resumes_without_gap_or_duplicate_then_too_old_cursor_and_resync(
    gateway, clients, nats_server
) -> None:
    operator = await clients.operator()
    key, _ = await register(operator, stream_channel("pos"), [f"S{i}" for i in range(10)])
    pos = clients.gateway(key)
    events = [availability(f"S{i}", "s1", v, {"pos": v}) for v in (1, 2, 3) for i in range(10)]
    events.append(availability("S1", "s9", 1, {"pos": 1}))  # a location pos does not serve
    await publish(nats_server.url, events)

    first = pos.StreamChanges(gw.StreamChangesRequest(batch_size=7))
    got = await read(first, 12)
    first.cancel()  # disconnect mid-stream
    resumed = pos.StreamChanges(gw.StreamChangesRequest(cursor=got[11].cursor, batch_size=5))
    rest = await read(resumed, 30 - 12)
    resumed.cancel()
    changes = got[:12] + rest
    seen = [(c.entity_key, c.version) for c in changes]
    assert len(seen) == 30
    assert len(set(seen)) == 30  # no duplicate
    assert set(seen) == {(f"availability/S{i}/s1", v) for i in range(10) for v in (1, 2, 3)}  # no gap
    for i in range(10):  # per entity in version order
        versions = [c.version for c in changes if c.entity_key == f"availability/S{i}/s1"]
        assert versions == [1, 2, 3]
    assert changes[-1].availability.available_to_sell == 3

    acked = await pos.AckChanges(gw.AckChangesRequest(cursor=changes[-1].cursor))
    assert acked.acknowledged_entities == 10

    # the gateway prunes the log past its retention: an old cursor is OUT_OF_RANGE
    current = (await operator.GetChannel(ops.GetChannelRequest(channel_id="pos"))).channel
    current.delivery.change_stream.retention.CopyFrom(Duration(seconds=1))
    await operator.UpdateChannel(ops.UpdateChannelRequest(request_id="ret", channel=current))

    async def pruned() -> bool:
        try:
            stream = pos.StreamChanges(gw.StreamChangesRequest(cursor=changes[0].cursor))
            async for _ in stream:
                stream.cancel()
                return False
        except grpc.aio.AioRpcError as exc:
            return exc.code() is grpc.StatusCode.OUT_OF_RANGE
        return False

    await eventually(pruned, "old cursor refused with OUT_OF_RANGE")
    resync = await pos.RequestResync(gw.RequestResyncRequest(request_id="rs1"))
    assert resync.entities == 10
    again = await pos.RequestResync(gw.RequestResyncRequest(request_id="rs1"))  # idempotent
    assert again == resync
    audit = await operator.ListAuditRecords(
        ops.ListAuditRecordsRequest(entity_type="retail.channel.v1.Channel")
    )
    resyncs = [r for r in audit.records if r.action.endswith("/RequestResync")]
    assert [(r.principal_id, r.entity_key, r.request_id) for r in resyncs] == [("pos", "pos", "rs1")]
    full = pos.StreamChanges(gw.StreamChangesRequest(cursor=resync.cursor))
    state = await read(full, 10)
    full.cancel()
    assert sorted((c.entity_key, c.version, c.resync) for c in state) == [
        (f"availability/S{i}/s1", 3, True) for i in range(10)
    ]


# ---------------------------------------------------------------------------------------------- webhook


async def test_domain_events_reach_the_marketplace_signed_in_order_exactly_once(
    gateway, clients, nats_server
) -> None:
    operator = await clients.operator()
    marketplace = FakeMarketplace(b"")
    url = await marketplace.start()
    try:
        _, secret = await register(operator, webhook_channel("mkt", url), [f"P{i}" for i in range(5)])
        marketplace.secret = secret.encode()
        events = [price_changed(f"P{i}", v) for v in (1, 2, 3, 4) for i in range(5)]
        events += [price_changed("UNLISTED", 1)]
        await publish(nats_server.url, events)
        await marketplace.wait_until(lambda: marketplace.applied == {f"price/P{i}": 4 for i in range(5)})
        assert marketplace.violations == []
        assert marketplace.refusals == {}
        health = (await operator.GetChannelHealth(ops.GetChannelHealthRequest(channel_id="mkt"))).health

        async def drained() -> bool:
            h = (await operator.GetChannelHealth(ops.GetChannelHealthRequest(channel_id="mkt"))).health
            return h.backlog == 0 and h.last_success_time.seconds > 0

        await eventually(drained, "backlog drained")
        health = (await operator.GetChannelHealth(ops.GetChannelHealthRequest(channel_id="mkt"))).health
        assert health.breaker_state == 1  # CLOSED
        assert health.owner != ""
        assert secret not in gateway.log_text()
    finally:
        await marketplace.close()


async def test_rotated_key_overlaps_then_expires_and_a_channel_sees_only_its_own_stream(
    gateway, clients
) -> None:
    operator = await clients.operator()
    old_key, _ = await register(operator, stream_channel("pos"), ["A"])
    await register(operator, stream_channel("kiosk"), ["A"])
    [old] = (
        await operator.ListChannelCredentials(ops.ListChannelCredentialsRequest(channel_id="pos"))
    ).credentials
    long_overlap = ops.RotateChannelCredentialRequest(
        request_id="rot1", key_id=old.key_id, overlap=Duration(seconds=3600)
    )
    rotated = await operator.RotateChannelCredential(long_overlap)
    new_key = rotated.issued.api_key
    assert rotated.issued.credential.channel_id == "pos"
    assert new_key != old_key
    ack = gw.AckChangesRequest(cursor="")
    for key in (old_key, new_key):  # both work during the overlap (reaching validation: cursor required)
        error = await refused(clients.gateway(key).AckChanges(ack))
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["cursor"])
    # rotating the new key with no overlap retires it at once; the replacement works
    listed = await operator.ListChannelCredentials(ops.ListChannelCredentialsRequest(channel_id="pos"))
    assert len(listed.credentials) == 2
    current = next(c for c in listed.credentials if c.key_id == new_key.split("_")[1])
    assert next(c for c in listed.credentials if c.key_id == old.key_id).replaced_by == current.key_id
    instant = ops.RotateChannelCredentialRequest(request_id="rot2", key_id=current.key_id, overlap=Duration())
    newest = (await operator.RotateChannelCredential(instant)).issued.api_key
    gone = await refused(clients.gateway(new_key).AckChanges(ack))
    assert gone.code is grpc.StatusCode.UNAUTHENTICATED
    pos = clients.gateway(newest)
    error = await refused(pos.AckChanges(ack))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    # another channel's stream, even with a well-formed cursor of its own
    other = await refused(pos.StreamChanges(gw.StreamChangesRequest(channel_id="kiosk")).read())
    assert other.code is grpc.StatusCode.PERMISSION_DENIED
    log = gateway.log_text()
    for key in (old_key, new_key, newest):
        assert secret_of(key) not in log


async def test_update_channel_checks_etag_and_needs_a_secret_before_switching_to_webhooks(
    gateway, clients
) -> None:
    operator = await clients.operator()
    await register(operator, stream_channel("pos"), ["A"])
    current = (await operator.GetChannel(ops.GetChannelRequest(channel_id="pos"))).channel
    assert current.etag == "1"
    switched = channel_pb2.Channel()
    switched.CopyFrom(current)
    switched.delivery.webhook.url = "http://127.0.0.1:1/hook"
    refused_switch = await refused(
        operator.UpdateChannel(ops.UpdateChannelRequest(request_id="u1", channel=switched))
    )
    assert refused_switch.code is grpc.StatusCode.FAILED_PRECONDITION
    rotated = await operator.RotateWebhookSecret(
        ops.RotateWebhookSecretRequest(request_id="w1", channel_id="pos")
    )
    assert rotated.webhook_signing_secret
    updated = (
        await operator.UpdateChannel(ops.UpdateChannelRequest(request_id="u2", channel=switched))
    ).channel
    assert updated.delivery.WhichOneof("mode") == "webhook"
    assert (updated.etag, updated.delivery.webhook.signing_key_id) == ("2", rotated.signing_key_id)
    stale = await refused(operator.UpdateChannel(ops.UpdateChannelRequest(request_id="u3", channel=switched)))
    assert (stale.code, stale.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    retried = await operator.UpdateChannel(ops.UpdateChannelRequest(request_id="u2", channel=switched))
    assert retried.channel == updated  # same request_id: the first result, nothing applied twice
