"""The gateway's spec: settings, policies, servicers, migrations and background jobs (outbox relay,
domain-event consumers, delivery engine, change-log retention)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import grpc
from nats.js import JetStreamContext
from pydantic import Field, SecretStr, field_validator, model_validator

from retail.channel.v1 import (
    channel_gateway_service_pb2,
    channel_gateway_service_pb2_grpc,
    channel_operations_service_pb2,
    channel_operations_service_pb2_grpc,
)
from retail_channel_gateway.access import ADMIN_ROLE
from retail_channel_gateway.consumers import domain_consumers
from retail_channel_gateway.delivery import DeliveryEngine, NatsTransport, WebhookTransport
from retail_channel_gateway.delivery.composer import PriceComposer
from retail_channel_gateway.delivery.metrics import DeliveryMetrics
from retail_channel_gateway.domain.policy import DeliveryMode
from retail_channel_gateway.domain.secret_box import SecretBox, check_key_id, parse_key, parse_keyring
from retail_channel_gateway.events import EventWriter
from retail_channel_gateway.facade import Facade, NoPromotions, PromotionSource
from retail_channel_gateway.offer_cache import OfferCache
from retail_channel_gateway.offer_invalidation import run_offer_invalidation
from retail_channel_gateway.projector import Projector
from retail_channel_gateway.promotions import PromotionClient
from retail_channel_gateway.reconcile import Reconciler
from retail_channel_gateway.registry_cache import RegistryCache
from retail_channel_gateway.repository import MIGRATIONS, ChannelRepository, LedgerRepository
from retail_channel_gateway.servicer_gateway import GatewayServicer
from retail_channel_gateway.servicer_operations import OperationsServicer
from retail_channel_gateway.webhook_secrets import WebhookSecrets
from retail_common.auth import MethodPolicy, service_policies
from retail_common.config import ServiceSettings
from retail_common.context import PrincipalKind
from retail_common.db import prune_requests, transaction
from retail_common.messaging import OutboxRelay, OutboxWriter
from retail_common.service import ServiceContext, ServiceSpec

__all__ = ["SPEC", "GatewaySettings"]

logger = logging.getLogger("retail_channel_gateway")
GATEWAY = channel_gateway_service_pb2.DESCRIPTOR.services_by_name["ChannelGatewayService"]
OPERATIONS = channel_operations_service_pb2.DESCRIPTOR.services_by_name["ChannelOperationsService"]


class GatewaySettings(ServiceSettings):
    pricing_target: str = Field(default="127.0.0.1:50061", description="pricing service host:port")
    inventory_reservation_target: str = Field(default="127.0.0.1:50062", description="inventory host:port")
    promotion_target: str = Field(default="", description="promotion service host:port; empty = none")
    facade_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    allow_http_webhooks: bool = Field(default=False, description="accept http:// webhook URLs (development)")
    delivery_lease_seconds: float = Field(default=30.0, ge=1, le=600)
    delivery_poll_seconds: float = Field(default=0.05, gt=0, le=5)
    registry_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    change_log_sweep_seconds: float = Field(default=60.0, gt=0, le=3600)
    stream_poll_seconds: float = Field(default=0.1, gt=0, le=5)
    consumer_batch: int = Field(default=200, ge=1, le=1000)
    # A pull fetch waits up to this long for a full batch while messages trickle in: it bounds the
    # projection latency added at low event rates (price changes), at the cost of more pull requests.
    consumer_fetch_seconds: float = Field(default=0.1, gt=0, le=5)
    # Per-replica GetOffers component cache (offer_cache.py): the TTL bounds staleness should an
    # invalidating event be missed; 0 turns the cache off (every offer asks the three services).
    offer_cache_ttl_seconds: float = Field(default=30.0, ge=0, le=3600)
    offer_cache_max_entries: int = Field(default=100_000, ge=100, le=10_000_000)
    # Per-replica cache of channel records and assortment membership for façade checks
    # (registry_cache.py), invalidated by NOTIFY; the max age is a backstop. 0 = always ask the DB.
    registry_check_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    # Webhook signing secrets are sealed at rest (domain/secret_box.py). Required: without a key the
    # gateway does not start (dev: scripts/run_suite.py generates one; tests: ServiceProcess passes one).
    webhook_secrets_key: SecretStr = Field(
        description="base64 of 32 random bytes: AES-256-GCM key sealing webhook signing secrets at rest"
    )
    webhook_secrets_key_id: str = Field(
        default="k1", description="id of WEBHOOK_SECRETS_KEY (stored with each secret)"
    )
    webhook_secrets_previous_keys: SecretStr = Field(
        default=SecretStr(""), description="earlier keys still readable, as <id>:<base64>,<id>:<base64>"
    )

    @field_validator("webhook_secrets_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        parse_key(value.get_secret_value())
        return value

    @field_validator("webhook_secrets_key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        return check_key_id(value)

    @field_validator("webhook_secrets_previous_keys")
    @classmethod
    def _previous(cls, value: SecretStr) -> SecretStr:
        parse_keyring(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _distinct_ids(self) -> GatewaySettings:
        if self.webhook_secrets_key_id in parse_keyring(
            self.webhook_secrets_previous_keys.get_secret_value()
        ):
            raise ValueError("WEBHOOK_SECRETS_KEY_ID is also listed in WEBHOOK_SECRETS_PREVIOUS_KEYS")
        return self

    def secret_box(self) -> SecretBox:
        keys = parse_keyring(self.webhook_secrets_previous_keys.get_secret_value())
        keys[self.webhook_secrets_key_id] = parse_key(self.webhook_secrets_key.get_secret_value())
        return SecretBox(self.webhook_secrets_key_id, keys)


_PROJECTORS: dict[int, Projector] = {}
_OFFER_CACHES: dict[int, OfferCache] = {}  # one per service context: the façade's, fed by its job
_REGISTRY_CACHES: dict[int, RegistryCache] = {}


def _registry_cache(ctx: ServiceContext[GatewaySettings]) -> RegistryCache:
    key = id(ctx)
    if key not in _REGISTRY_CACHES:
        _REGISTRY_CACHES[key] = RegistryCache(
            ctx.pool,
            ctx.settings.database_url,
            ctx.clock,
            max_age_seconds=ctx.settings.registry_check_cache_seconds,
        )
    return _REGISTRY_CACHES[key]


def _offer_cache(ctx: ServiceContext[GatewaySettings]) -> OfferCache:
    key = id(ctx)
    if key not in _OFFER_CACHES:
        _OFFER_CACHES[key] = OfferCache(
            ctx.clock,
            ttl_seconds=ctx.settings.offer_cache_ttl_seconds,
            max_entries=ctx.settings.offer_cache_max_entries,
        )
    return _OFFER_CACHES[key]


def _projector(ctx: ServiceContext[GatewaySettings]) -> Projector:
    """One projector per service context, shared by consumers and the servicer (cache invalidation)."""
    key = id(ctx)
    if key not in _PROJECTORS:
        _PROJECTORS[key] = Projector(
            ctx.clock,
            registry_ttl=ctx.settings.registry_cache_seconds,
            events=EventWriter(OutboxWriter(ctx.clock)),
        )
    return _PROJECTORS[key]


def _promotions(ctx: ServiceContext[GatewaySettings]) -> PromotionSource:
    target = ctx.settings.promotion_target
    if not target:
        logger.warning("PROMOTION_TARGET not set: offers and quotes are composed without promotions")
        return NoPromotions()
    return PromotionClient(ctx.channel(target, default_timeout=ctx.settings.facade_timeout_seconds))


def _register(ctx: ServiceContext[GatewaySettings], server: grpc.aio.Server) -> None:
    settings = ctx.settings
    timeout = settings.facade_timeout_seconds
    facade = Facade(
        ctx.channel(settings.pricing_target, default_timeout=timeout),
        ctx.channel(settings.inventory_reservation_target, default_timeout=timeout),
        _promotions(ctx),
        timeout=timeout,
        cache=_offer_cache(ctx),
    )
    channel_gateway_service_pb2_grpc.add_ChannelGatewayServiceServicer_to_server(
        GatewayServicer(
            ctx,
            facade,
            EventWriter(OutboxWriter(ctx.clock)),
            _registry_cache(ctx),
            stream_poll=settings.stream_poll_seconds,
        ),
        server,
    )
    channel_operations_service_pb2_grpc.add_ChannelOperationsServiceServicer_to_server(
        OperationsServicer(
            ctx,
            _projector(ctx),
            Reconciler(
                ctx.channel(settings.inventory_reservation_target),
                ctx.clock,
                timeout,
                PriceComposer(
                    ctx.channel(settings.pricing_target, default_timeout=timeout), _promotions(ctx), timeout
                ),
            ),
            allow_http_webhooks=settings.allow_http_webhooks,
            registry=_registry_cache(ctx),
            secrets=WebhookSecrets(ctx.pool, settings.secret_box()),
        ),
        server,
    )


async def registry_cache_listener(ctx: ServiceContext[GatewaySettings]) -> None:
    await _registry_cache(ctx).run()


async def offer_cache_invalidation(ctx: ServiceContext[GatewaySettings]) -> None:
    cache = _offer_cache(ctx)
    if not cache.enabled:
        await asyncio.Event().wait()  # a background job must not end
    await run_offer_invalidation(cache, ctx.jetstream)


async def outbox_relay(ctx: ServiceContext[GatewaySettings]) -> None:
    js = await ctx.jetstream()
    await OutboxRelay(ctx.pool, js, lease_name="retail-channel-gateway").run()


async def consume_domain_events(ctx: ServiceContext[GatewaySettings]) -> None:
    js = await ctx.jetstream()
    consumers = domain_consumers(
        ctx.pool,
        js,
        _projector(ctx),
        batch=ctx.settings.consumer_batch,
        fetch_timeout=ctx.settings.consumer_fetch_seconds,
    )
    await asyncio.gather(*(consumer.run() for consumer in consumers))


async def deliver(ctx: ServiceContext[GatewaySettings]) -> None:
    secret = WebhookSecrets(ctx.pool, ctx.settings.secret_box()).read

    def js() -> JetStreamContext | None:
        client = ctx.nats.client
        return None if client is None or not ctx.nats.is_connected else client.jetstream()

    webhook = WebhookTransport(secret, wall_clock=lambda: ctx.clock.now().timestamp())
    engine = DeliveryEngine(
        ctx.pool,
        transports={DeliveryMode.WEBHOOK: webhook, DeliveryMode.NATS: NatsTransport(js)},
        events=EventWriter(OutboxWriter(ctx.clock)),
        metrics=DeliveryMetrics(ctx.meter),
        clock=ctx.clock,
        lease_ttl=ctx.settings.delivery_lease_seconds,
        poll=ctx.settings.delivery_poll_seconds,
        composer=PriceComposer(
            ctx.channel(ctx.settings.pricing_target, default_timeout=ctx.settings.facade_timeout_seconds),
            _promotions(ctx),
            ctx.settings.facade_timeout_seconds,
        ),
    )
    try:
        await engine.run()
    finally:
        await webhook.close()


async def reseal_webhook_secrets(ctx: ServiceContext[GatewaySettings]) -> None:
    """Once at start: seal clear rows and re-seal previous-key rows under the current key."""
    secrets = WebhookSecrets(ctx.pool, ctx.settings.secret_box())
    while True:
        try:
            resealed = await secrets.reseal_all()
            break
        except Exception:  # the DB may be down for a while; keep trying
            logger.exception("webhook secret re-seal sweep failed")
            await asyncio.sleep(5)
    if resealed:
        logger.info(
            "re-sealed %d webhook secrets under key id %s", resealed, ctx.settings.webhook_secrets_key_id
        )
    await asyncio.Event().wait()  # a background job must not end


async def prune_change_logs(ctx: ServiceContext[GatewaySettings]) -> None:
    """Retention of change-stream logs, delivery stats and idempotency records (safe on every replica:
    idempotent deletes)."""
    channels, ledger = ChannelRepository(), LedgerRepository()
    while True:
        try:
            async with ctx.pool.acquire() as conn:
                records = [r for r in await channels.all(conn) if r.settings.mode == DeliveryMode.STREAM]
            for record in records:
                async with transaction(ctx.pool) as conn:
                    await ledger.prune_change_log(
                        conn, record.channel_id, ctx.clock.now() - record.settings.retention
                    )
            async with transaction(ctx.pool) as conn:
                await ledger.prune_housekeeping(conn, ctx.clock.now() - timedelta(days=2))
                await prune_requests(conn, older_than_seconds=timedelta(days=2).total_seconds())
        except Exception:  # the DB may be down for a while; keep trying
            logger.exception("change-log retention sweep failed")
        await asyncio.sleep(ctx.settings.change_log_sweep_seconds)


FACADE = MethodPolicy(kinds=[PrincipalKind.CHANNEL, PrincipalKind.OPERATOR])
ADMIN = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[ADMIN_ROLE])
READ = MethodPolicy(
    kinds=[PrincipalKind.OPERATOR]
)  # channel.admin or channel.viewer, checked in the servicer

SPEC: ServiceSpec[GatewaySettings] = ServiceSpec(
    name="channel-gateway",
    settings_cls=GatewaySettings,
    services=[GATEWAY, OPERATIONS],
    policies={
        **service_policies(GATEWAY, {name: FACADE for name in GATEWAY.methods_by_name}),
        **service_policies(
            OPERATIONS,
            {
                "CreateChannel": ADMIN,
                "UpdateChannel": ADMIN,
                "GetChannel": READ,
                "ListChannels": READ,
                "UpdateAssortment": ADMIN,
                "RotateWebhookSecret": ADMIN,
                "CreateChannelCredential": ADMIN,
                "RotateChannelCredential": ADMIN,
                "RevokeChannelCredential": ADMIN,
                "ListChannelCredentials": READ,
                "GetChannelHealth": READ,
                "ListDeadLetters": READ,
                "ReplayDeadLetters": ADMIN,
                "ListDeliveryLedger": READ,
                "ReconcileChannel": ADMIN,
                "ListAuditRecords": READ,
            },
        ),
    },
    register=_register,
    migrations=[MIGRATIONS],
    background=[
        outbox_relay,
        consume_domain_events,
        deliver,
        prune_change_logs,
        offer_cache_invalidation,
        registry_cache_listener,
        reseal_webhook_secrets,
    ],
)
