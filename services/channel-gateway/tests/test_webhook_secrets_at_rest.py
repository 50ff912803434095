"""Webhook signing secrets sealed at rest, against a gateway process: the stored bytes are not the
secret, deliveries still carry signatures the fake marketplace verifies, and a row stored in clear
before encryption (legacy) is re-sealed when it is read. The sweep at start is tested in-process."""

from __future__ import annotations

from retail.channel.v1 import changes_pb2
from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail_channel_gateway.delivery import WebhookTransport
from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.domain.secret_box import MAGIC, SecretBox
from retail_channel_gateway.testing import FakeMarketplace
from retail_channel_gateway.testing.harness import Clients, price_changed, publish, register, webhook_channel
from retail_channel_gateway.webhook_secrets import WebhookSecrets
from retail_common.db import create_pool

KEY = bytes(range(32))


async def _stored(pool, channel_id: str) -> bytes:
    return bytes(await pool.fetchval("select webhook_secret from channels where channel_id = $1", channel_id))


async def test_secrets_are_sealed_at_rest_and_signatures_still_verify(
    start_service, database_url, nats_server
) -> None:
    gateway = await start_service("retail_channel_gateway", {
        "DATABASE_URL": database_url, "NATS_URL": nats_server.url, "ALLOW_HTTP_WEBHOOKS": "true",
        "DELIVERY_POLL_SECONDS": "0.02", "OTEL_SDK_DISABLED": "true", "DB_POOL_MAX": "3",
    })  # fmt: skip
    pool = await create_pool(database_url, min_size=1, max_size=2)
    clients = Clients(pool, gateway.address)
    web_market, old_market = FakeMarketplace(b""), FakeMarketplace(b"legacy-secret-in-clear")
    try:
        operator = await clients.operator()
        _, secret = await register(operator, webhook_channel("web", await web_market.start()), ["S1"])
        web_market.secret = secret.encode()
        stored = await _stored(pool, "web")
        assert stored.startswith(MAGIC)
        assert secret.encode() not in stored
        # the copy kept for idempotent retries holds it sealed too, and a retry still shows it
        kept = await pool.fetch("select response from request_idempotency where response is not null")
        assert kept
        assert not any(secret.encode() in bytes(row["response"]) for row in kept)
        retried = await operator.CreateChannel(
            ops.CreateChannelRequest(request_id="c-web", channel=webhook_channel("web", web_market.url))
        )
        assert retried.webhook_signing_secret == secret
        # a channel whose secret was stored in clear before encryption at rest
        await register(operator, webhook_channel("old", await old_market.start()), ["S1"])
        await pool.execute(
            "update channels set webhook_secret = $1 where channel_id = 'old'", b"legacy-secret-in-clear"
        )

        await publish(nats_server.url, [price_changed("S1", 1)])
        await web_market.wait_until(lambda: any(r.entity_key == "price/S1" for r in web_market.received))
        await old_market.wait_until(lambda: any(r.entity_key == "price/S1" for r in old_market.received))
        assert web_market.violations == []
        assert old_market.violations == []
        resealed = await _stored(pool, "old")
        assert resealed.startswith(MAGIC)  # re-sealed when the delivery read it
        assert b"legacy-secret-in-clear" not in resealed

        # a rotated secret is sealed too, and the next delivery is signed with it
        rotated = await operator.RotateWebhookSecret(
            ops.RotateWebhookSecretRequest(request_id="rot", channel_id="web")
        )
        web_market.secret = rotated.webhook_signing_secret.encode()
        rotation = ops.RotateWebhookSecretRequest(request_id="rot", channel_id="web")
        assert (
            await operator.RotateWebhookSecret(rotation)
        ).webhook_signing_secret == rotated.webhook_signing_secret
        assert rotated.webhook_signing_secret.encode() not in await _stored(pool, "web")
        await publish(nats_server.url, [price_changed("S1", 2)])
        await web_market.wait_until(lambda: any(r.version == 2 for r in web_market.received))
        assert web_market.violations == []
    finally:
        await web_market.close()
        await old_market.close()
        await clients.close()
        await pool.close()


async def test_the_sweep_seals_clear_rows_and_reseals_previous_key_rows(pool) -> None:
    old_box, box = SecretBox("k1", {"k1": KEY}), SecretBox("k2", {"k2": KEY[::-1], "k1": KEY})
    rows = [
        ("clear", b"in-clear"),
        ("old", old_box.seal("old", b"under-k1")),
        ("new", box.seal("new", b"k2")),
    ]
    for channel_id, value in rows:
        await pool.execute(
            "insert into channels (channel_id, display_name, kind, delivery, mode, webhook_secret)"
            " values ($1, $1, 'MARKETPLACE', '{}', 'webhook', $2)",
            channel_id,
            value,
        )
    secrets = WebhookSecrets(pool, box)
    assert await secrets.reseal_all() == 2
    assert await secrets.reseal_all() == 0  # nothing left to do
    for channel_id, clear in (("clear", b"in-clear"), ("old", b"under-k1"), ("new", b"k2")):
        stored = await _stored(pool, channel_id)
        assert box.open(channel_id, stored) == (clear, False)
        assert await secrets.read(channel_id) == clear


async def test_a_secret_that_cannot_be_opened_fails_the_delivery_without_stopping_the_worker(pool) -> None:
    sealed = SecretBox("k1", {"k1": KEY}).seal("web", b"s")
    await pool.execute(
        "insert into channels (channel_id, display_name, kind, delivery, mode, webhook_secret)"
        " values ('web', 'web', 'MARKETPLACE', '{}', 'webhook', $1)",
        sealed,
    )
    dropped_too_early = WebhookSecrets(pool, SecretBox("k2", {"k2": KEY[::-1]}))
    transport = WebhookTransport(dropped_too_early.read, wall_clock=lambda: 0.0)
    try:
        settings = DeliverySettings(mode=DeliveryMode.WEBHOOK, webhook_url="http://127.0.0.1:9/never")
        outcome = await transport.deliver("web", settings, [changes_pb2.ChannelChange(entity_key="price/A")])
    finally:
        await transport.close()
    assert not outcome.ok
    assert "key id 'k1'" in outcome.error
