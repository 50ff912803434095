"""ChannelOperationsService: thin adapter (validate, call repositories in one transaction, audit)."""

# gRPC method names are the contract's.
# ruff: noqa: N802

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from retail.channel.v1 import channel_operations_service_pb2 as pb
from retail.channel.v1 import channel_operations_service_pb2_grpc as pb_grpc
from retail.channel.v1 import credentials_pb2
from retail_channel_gateway.access import ADMIN_ROLE, VIEWER_ROLE, caller, require_operator_role
from retail_channel_gateway.convert import (
    channel_proto,
    check_channel_id,
    dead_letter_proto,
    health_proto,
    kind_name,
    settings_from_proto,
    ts,
    validate_channel,
)
from retail_channel_gateway.domain.policy import DeliveryMode
from retail_channel_gateway.paging import decode_token, encode_token, page_size
from retail_channel_gateway.projector import Projector
from retail_channel_gateway.reconcile import Reconciler
from retail_channel_gateway.registry_cache import RegistryCache
from retail_channel_gateway.repository import (
    ChannelRecord,
    ChannelRepository,
    LedgerRepository,
)
from retail_channel_gateway.webhook_secrets import WebhookSecrets
from retail_common.auth import CredentialInfo, IssuedCredential
from retail_common.clock import Clock
from retail_common.context import PrincipalKind
from retail_common.db import (
    Connection,
    append_audit,
    claim_request,
    request_fingerprint,
    store_response,
    transaction,
)
from retail_common.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
)
from retail_common.grpcx import audit_page
from retail_common.service import ServiceContext

__all__ = ["OperationsServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
M = TypeVar("M", bound=Message)
S = TypeVar("S", pb.CreateChannelResponse, pb.RotateWebhookSecretResponse)  # responses showing a secret
_SERVICE = "ChannelOperationsService"


def _request_id(value: str) -> None:
    if not 1 <= len(value) <= 128:
        raise InvalidArgument.field("request_id", "required, 1..128 characters")


def _channel_audit(record: ChannelRecord | None) -> dict[str, object] | None:
    if record is None:
        return None
    return {
        "channel_id": record.channel_id,
        "display_name": record.display_name,
        "kind": record.kind,
        "location_ids": list(record.location_ids),
        "mode": record.settings.mode,
        "active": record.active,
        "version": record.version,
    }


def _credential(info: CredentialInfo) -> credentials_pb2.ChannelCredential:
    return credentials_pb2.ChannelCredential(
        key_id=info.key_id,
        channel_id=info.principal.id,
        description=info.description,
        create_time=ts(info.created_at),
        expire_time=ts(info.expires_at),
        revoke_time=ts(info.revoked_at),
        replaced_by=info.replaced_by or "",
    )


def _issued(issued: IssuedCredential, description: str) -> credentials_pb2.IssuedChannelCredential:
    return credentials_pb2.IssuedChannelCredential(
        credential=credentials_pb2.ChannelCredential(
            key_id=issued.key_id, channel_id=issued.principal.id, description=description
        ),
        api_key=issued.key.get_secret_value(),
    )


class OperationsServicer(pb_grpc.ChannelOperationsServiceServicer):
    def __init__(
        self,
        ctx: ServiceContext[Any],
        projector: Projector,
        reconciler: Reconciler,
        *,
        allow_http_webhooks: bool,
        secrets: WebhookSecrets,
        registry: RegistryCache | None = None,
    ) -> None:
        self._ctx = ctx
        self._secrets = secrets
        self._registry = registry
        self._clock: Clock = ctx.clock
        self._channels = ChannelRepository()
        self._ledger = LedgerRepository()
        self._projector = projector
        self._reconciler = reconciler
        self._allow_http = allow_http_webhooks

    # ------------------------------------------------------------------------------------- helpers

    async def _idempotent(
        self,
        method: str,
        request: Message,
        request_id: str,
        response_type: type[M],
        work: Callable[[Connection], Awaitable[M]],
        *,
        kept: Callable[[M], M] | None = None,
        replayed: Callable[[M], M] | None = None,
    ) -> M:
        """Run `work` once per (caller, method, request_id); a retry gets the first response. `kept` maps
        the response to the copy stored for retries, `replayed` maps that copy back (sealed secrets)."""
        _request_id(request_id)
        scope = f"{caller().id}:{_SERVICE}.{method}"
        async with transaction(self._ctx.pool) as conn:
            fingerprint = request_fingerprint(request)
            stored = await claim_request(conn, scope=scope, request_id=request_id, fingerprint=fingerprint)
            if stored is not None:
                first = response_type.FromString(stored)
                return first if replayed is None else replayed(first)
            response = await work(conn)
            keep = response if kept is None else kept(response)
            await store_response(conn, scope=scope, request_id=request_id, response=keep)
        if self._registry is not None:
            self._registry.clear()  # read-your-writes here; other replicas hear the NOTIFY
        return response

    @staticmethod
    def _with_secret(response: S, secret: str) -> S:
        """A copy of a response that shows a webhook secret, with `secret` in its place (none: as is)."""
        if not response.webhook_signing_secret:
            return response
        out = type(response)()
        out.CopyFrom(response)
        out.webhook_signing_secret = secret
        return out

    async def _existing(self, conn: Connection, channel_id: str) -> ChannelRecord:
        bad = check_channel_id(channel_id)
        if bad:
            raise InvalidArgument(bad)
        record = await self._channels.get(conn, channel_id)
        if record is None:
            raise NotFound("retail.channel.v1.Channel", channel_id)
        return record

    async def _audit(
        self, request_id: str, conn: Connection, action: str, entity: str, key: str, before: Any, after: Any
    ) -> None:
        await append_audit(
            conn,
            request_id=request_id or None,
            action=f"/retail.channel.v1.{_SERVICE}/{action}",
            entity_type=entity,
            entity_key=key,
            before=before,
            after=after,
        )

    # ------------------------------------------------------------------------------------ registry

    async def CreateChannel(
        self, request: pb.CreateChannelRequest, context: Context
    ) -> pb.CreateChannelResponse:
        require_operator_role(ADMIN_ROLE)
        validate_channel(request.channel, allow_http=self._allow_http)
        _request_id(request.request_id)
        channel = request.channel
        settings = settings_from_proto(channel.delivery, channel.currency_code)
        webhook = channel.delivery.WhichOneof("mode") == "webhook"

        async def work(conn: Connection) -> pb.CreateChannelResponse:
            secret = secrets.token_urlsafe(32) if webhook else ""
            record = await self._channels.create(
                conn,
                channel_id=channel.channel_id,
                display_name=channel.display_name,
                kind=kind_name(channel),
                location_ids=list(channel.location_ids),
                settings=settings,
                active=channel.active,
                webhook_secret=self._secrets.seal(channel.channel_id, secret) if webhook else None,
                signing_key_id=f"whk_{secrets.token_hex(6)}" if webhook else None,
            )
            if record is None:
                raise AlreadyExists("retail.channel.v1.Channel", channel.channel_id)
            await self._audit(
                request.request_id,
                conn,
                "CreateChannel",
                "retail.channel.v1.Channel",
                record.channel_id,
                None,
                _channel_audit(record),
            )
            return pb.CreateChannelResponse(channel=channel_proto(record), webhook_signing_secret=secret)

        response = await self._idempotent(
            "CreateChannel",
            request,
            request.request_id,
            pb.CreateChannelResponse,
            work,
            kept=lambda r: self._with_secret(
                r, self._secrets.seal_text(channel.channel_id, r.webhook_signing_secret)
            ),
            replayed=lambda r: self._with_secret(
                r, self._secrets.open_text(channel.channel_id, r.webhook_signing_secret)
            ),
        )
        self._projector.invalidate()
        return response

    async def UpdateChannel(
        self, request: pb.UpdateChannelRequest, context: Context
    ) -> pb.UpdateChannelResponse:
        require_operator_role(ADMIN_ROLE)
        validate_channel(request.channel, allow_http=self._allow_http)
        if not request.channel.etag.isdigit():
            raise InvalidArgument.field("channel.etag", "required: the etag of the channel as read")
        _request_id(request.request_id)
        channel = request.channel

        async def work(conn: Connection) -> pb.UpdateChannelResponse:
            before = await self._existing(conn, channel.channel_id)
            settings = settings_from_proto(channel.delivery, channel.currency_code)
            if settings.mode == DeliveryMode.WEBHOOK and not await self._channels.webhook_secret(
                conn, channel.channel_id
            ):
                raise FailedPrecondition(
                    [
                        PreconditionViolation(
                            "WEBHOOK_SECRET",
                            channel.channel_id,
                            "call RotateWebhookSecret before switching to webhooks",
                        )
                    ]
                )
            record = await self._channels.update(
                conn,
                channel_id=channel.channel_id,
                expected_version=int(channel.etag),
                display_name=channel.display_name,
                kind=kind_name(channel),
                location_ids=list(channel.location_ids),
                settings=settings,
                active=channel.active,
            )
            if record is None:
                from retail_common.errors import Aborted

                raise Aborted(f"etag {channel.etag} is stale; re-read the channel")
            await self._audit(
                request.request_id,
                conn,
                "UpdateChannel",
                "retail.channel.v1.Channel",
                record.channel_id,
                _channel_audit(before),
                _channel_audit(record),
            )
            return pb.UpdateChannelResponse(channel=channel_proto(record))

        response = await self._idempotent(
            "UpdateChannel", request, request.request_id, pb.UpdateChannelResponse, work
        )
        self._projector.invalidate()
        return response

    async def GetChannel(self, request: pb.GetChannelRequest, context: Context) -> pb.GetChannelResponse:
        require_operator_role(ADMIN_ROLE, VIEWER_ROLE)
        async with self._ctx.pool.acquire() as conn:
            return pb.GetChannelResponse(
                channel=channel_proto(await self._existing(conn, request.channel_id))
            )

    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: Context
    ) -> pb.ListChannelsResponse:
        require_operator_role(ADMIN_ROLE, VIEWER_ROLE)
        size = page_size(request.page_size)
        after = decode_token(request.page_token, "channels", "")
        async with self._ctx.pool.acquire() as conn:
            records = await self._channels.list_page(conn, after=after, limit=size + 1)
        token = encode_token("channels", "", records[size - 1].channel_id) if len(records) > size else ""
        return pb.ListChannelsResponse(
            channels=[channel_proto(r) for r in records[:size]], next_page_token=token
        )

    async def UpdateAssortment(
        self, request: pb.UpdateAssortmentRequest, context: Context
    ) -> pb.UpdateAssortmentResponse:
        require_operator_role(ADMIN_ROLE)
        bad: list[FieldViolation] = []
        if len(request.add_skus) + len(request.remove_skus) > 10_000:
            bad.append(FieldViolation("add_skus", "add_skus and remove_skus together at most 10,000"))
        for name in ("add_skus", "remove_skus"):
            for i, sku in enumerate(getattr(request, name)):
                if not 1 <= len(sku) <= 128:
                    bad.append(FieldViolation(f"{name}[{i}]", "must be 1..128 characters"))
        if bad:
            raise InvalidArgument(bad)

        async def work(conn: Connection) -> pb.UpdateAssortmentResponse:
            await self._existing(conn, request.channel_id)
            added, removed = await self._channels.update_assortment(
                conn, request.channel_id, list(request.add_skus), list(request.remove_skus)
            )
            record = await self._channels.get(conn, request.channel_id)
            assert record is not None
            await self._audit(
                request.request_id,
                conn,
                "UpdateAssortment",
                "retail.channel.v1.Assortment",
                request.channel_id,
                None,
                {"added": added, "removed": removed},
            )
            return pb.UpdateAssortmentResponse(
                added=added, removed=removed, assortment_size=record.assortment_size
            )

        return await self._idempotent(
            "UpdateAssortment", request, request.request_id, pb.UpdateAssortmentResponse, work
        )

    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: Context
    ) -> pb.RotateWebhookSecretResponse:
        require_operator_role(ADMIN_ROLE)

        async def work(conn: Connection) -> pb.RotateWebhookSecretResponse:
            # Any mode: a channel about to switch to webhooks gets its secret first (see UpdateChannel).
            await self._existing(conn, request.channel_id)
            secret, key_id = secrets.token_urlsafe(32), f"whk_{secrets.token_hex(6)}"
            sealed = self._secrets.seal(request.channel_id, secret)
            await self._channels.set_webhook_secret(conn, request.channel_id, sealed, key_id)
            await self._audit(
                request.request_id,
                conn,
                "RotateWebhookSecret",
                "retail.channel.v1.WebhookSecret",
                request.channel_id,
                None,
                {"signing_key_id": key_id},
            )
            return pb.RotateWebhookSecretResponse(signing_key_id=key_id, webhook_signing_secret=secret)

        channel_id = request.channel_id
        return await self._idempotent(
            "RotateWebhookSecret",
            request,
            request.request_id,
            pb.RotateWebhookSecretResponse,
            work,
            kept=lambda r: self._with_secret(
                r, self._secrets.seal_text(channel_id, r.webhook_signing_secret)
            ),
            replayed=lambda r: self._with_secret(
                r, self._secrets.open_text(channel_id, r.webhook_signing_secret)
            ),
        )

    # --------------------------------------------------------------------------------- credentials

    async def CreateChannelCredential(
        self, request: pb.CreateChannelCredentialRequest, context: Context
    ) -> pb.CreateChannelCredentialResponse:
        require_operator_role(ADMIN_ROLE)
        if len(request.description) > 200:
            raise InvalidArgument.field("description", "at most 200 characters")

        async def work(conn: Connection) -> pb.CreateChannelCredentialResponse:
            await self._existing(conn, request.channel_id)
            issued = await self._ctx.credentials.create(
                request.channel_id, PrincipalKind.CHANNEL, description=request.description
            )
            await self._audit(
                request.request_id,
                conn,
                "CreateChannelCredential",
                "retail.channel.v1.ChannelCredential",
                issued.key_id,
                None,
                {"channel_id": request.channel_id},
            )
            return pb.CreateChannelCredentialResponse(issued=_issued(issued, request.description))

        # Not stored for replay: the response holds the plaintext key, which is shown once only.
        _request_id(request.request_id)
        async with transaction(self._ctx.pool) as conn:
            return await work(conn)

    async def _channel_key(self, key_id: str) -> CredentialInfo:
        for info in await self._ctx.credentials.list_credentials():
            if info.key_id == key_id and info.principal.kind is PrincipalKind.CHANNEL:
                return info
        raise NotFound("retail.channel.v1.ChannelCredential", key_id)

    async def RotateChannelCredential(
        self, request: pb.RotateChannelCredentialRequest, context: Context
    ) -> pb.RotateChannelCredentialResponse:
        require_operator_role(ADMIN_ROLE)
        _request_id(request.request_id)
        overlap = request.overlap.ToTimedelta()
        if not timedelta(0) <= overlap <= timedelta(days=30):
            raise InvalidArgument.field("overlap", "must be 0..30 days")
        info = await self._channel_key(request.key_id)
        try:
            issued = await self._ctx.credentials.rotate(request.key_id, overlap)
        except LookupError:
            raise NotFound("retail.channel.v1.ChannelCredential", request.key_id) from None
        async with transaction(self._ctx.pool) as conn:
            await self._audit(
                request.request_id,
                conn,
                "RotateChannelCredential",
                "retail.channel.v1.ChannelCredential",
                request.key_id,
                None,
                {"replaced_by": issued.key_id},
            )
        return pb.RotateChannelCredentialResponse(issued=_issued(issued, info.description))

    async def RevokeChannelCredential(
        self, request: pb.RevokeChannelCredentialRequest, context: Context
    ) -> pb.RevokeChannelCredentialResponse:
        require_operator_role(ADMIN_ROLE)
        _request_id(request.request_id)
        await self._channel_key(request.key_id)
        await self._ctx.credentials.revoke(request.key_id)
        async with transaction(self._ctx.pool) as conn:
            await self._audit(
                request.request_id,
                conn,
                "RevokeChannelCredential",
                "retail.channel.v1.ChannelCredential",
                request.key_id,
                None,
                {"revoked": True},
            )
        return pb.RevokeChannelCredentialResponse(
            credential=_credential(await self._channel_key(request.key_id))
        )

    async def ListChannelCredentials(
        self, request: pb.ListChannelCredentialsRequest, context: Context
    ) -> pb.ListChannelCredentialsResponse:
        require_operator_role(ADMIN_ROLE, VIEWER_ROLE)
        async with self._ctx.pool.acquire() as conn:
            await self._existing(conn, request.channel_id)
        infos = await self._ctx.credentials.list_credentials(request.channel_id)
        return pb.ListChannelCredentialsResponse(
            credentials=[_credential(i) for i in infos if i.principal.kind is PrincipalKind.CHANNEL]
        )

    # ---------------------------------------------------------------------------------- operations

    async def GetChannelHealth(
        self, request: pb.GetChannelHealthRequest, context: Context
    ) -> pb.GetChannelHealthResponse:
        require_operator_role(ADMIN_ROLE, VIEWER_ROLE)
        now = self._clock.now()
        async with self._ctx.pool.acquire() as conn:
            await self._existing(conn, request.channel_id)
            health = await self._ledger.health(conn, request.channel_id, now)
        assert health is not None
        return pb.GetChannelHealthResponse(health=health_proto(request.channel_id, health, now))

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersResponse:
        require_operator_role(ADMIN_ROLE, VIEWER_ROLE)
        size = page_size(request.page_size)
        binding = f"{request.channel_id}:{request.include_replayed}"
        after = decode_token(request.page_token, "dead_letters", binding)
        async with self._ctx.pool.acquire() as conn:
            await self._existing(conn, request.channel_id)
            rows = await self._ledger.list_dead_letters(
                conn,
                request.channel_id,
                before_id=int(after) if after else None,
                limit=size + 1,
                include_replayed=request.include_replayed,
            )
        token = encode_token("dead_letters", binding, str(rows[size - 1].id)) if len(rows) > size else ""
        return pb.ListDeadLettersResponse(
            dead_letters=[dead_letter_proto(r) for r in rows[:size]], next_page_token=token
        )

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Context
    ) -> pb.ReplayDeadLettersResponse:
        require_operator_role(ADMIN_ROLE)
        if len(request.dead_letter_ids) > 10_000:
            raise InvalidArgument.field("dead_letter_ids", "at most 10,000")

        async def work(conn: Connection) -> pb.ReplayDeadLettersResponse:
            await self._existing(conn, request.channel_id)
            ids = list(request.dead_letter_ids) or None
            count = await self._ledger.replay_dead_letters(conn, request.channel_id, ids, self._clock.now())
            await self._audit(
                request.request_id,
                conn,
                "ReplayDeadLetters",
                "retail.channel.v1.DeliveryDeadLetter",
                request.channel_id,
                None,
                {"replayed": count, "ids": ids},
            )
            return pb.ReplayDeadLettersResponse(replayed=count)

        return await self._idempotent(
            "ReplayDeadLetters", request, request.request_id, pb.ReplayDeadLettersResponse, work
        )

    async def ListDeliveryLedger(
        self, request: pb.ListDeliveryLedgerRequest, context: Context
    ) -> pb.ListDeliveryLedgerResponse:
        from retail.channel.v1 import channel_pb2, health_pb2

        require_operator_role(ADMIN_ROLE, VIEWER_ROLE)
        size = page_size(request.page_size)
        binding = f"{request.channel_id}:{request.only_pending}"
        after = decode_token(request.page_token, "ledger", binding)
        async with self._ctx.pool.acquire() as conn:
            await self._existing(conn, request.channel_id)
            rows = await self._ledger.ledger_entries(
                conn, request.channel_id, after=after, limit=size + 1, only_pending=request.only_pending
            )
        entries = [
            health_pb2.DeliveryLedgerEntry(
                channel_id=request.channel_id,
                entity_key=str(r["entity_key"]),
                kind=channel_pb2.ChangeKind.Value(f"CHANGE_KIND_{r['kind']}"),
                projected_version=int(r["projected_version"]),  # type: ignore[call-overload]
                delivered_version=int(r["delivered_version"]),  # type: ignore[call-overload]
                acknowledged_version=int(r["acknowledged_version"]),  # type: ignore[call-overload]
                update_time=ts(r["updated_at"]),  # type: ignore[arg-type]
            )
            for r in rows[:size]
        ]
        token = encode_token("ledger", binding, str(rows[size - 1]["entity_key"])) if len(rows) > size else ""
        return pb.ListDeliveryLedgerResponse(entries=entries, next_page_token=token)

    async def ReconcileChannel(
        self, request: pb.ReconcileChannelRequest, context: Context
    ) -> pb.ReconcileChannelResponse:
        require_operator_role(ADMIN_ROLE)

        async def work(conn: Connection) -> pb.ReconcileChannelResponse:
            record = await self._existing(conn, request.channel_id)
            counts = await self._reconciler.reconcile(conn, record)
            after = {"checked": counts.checked, "drifted": counts.drifted, "repushed": counts.repushed}
            await self._audit(
                request.request_id,
                conn,
                "ReconcileChannel",
                "retail.channel.v1.Channel",
                request.channel_id,
                None,
                after,
            )
            return pb.ReconcileChannelResponse(**after)

        return await self._idempotent(
            "ReconcileChannel", request, request.request_id, pb.ReconcileChannelResponse, work
        )

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        require_operator_role(ADMIN_ROLE, VIEWER_ROLE)
        async with self._ctx.pool.acquire() as conn:
            out, token = await audit_page(
                conn,
                entity_type=request.entity_type,
                entity_key=request.entity_key,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return pb.ListAuditRecordsResponse(records=out, next_page_token=token)
