"""gRPC adapter of retail.promotion.v1.PromotionService: validate the request (INVALID_ARGUMENT naming
fields, before anything changes), call the application layer / repository in one transaction with an
audit record per mutation, convert to protos. No business rules here."""

# Method names are the RPC names grpc dispatches to.
# ruff: noqa: N802

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

import asyncpg
import grpc
from google.protobuf.message import Message

from retail.promotion.v1 import campaign_pb2, evaluation_pb2, events_pb2, promotion_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2 as pb
from retail_common.clock import Clock
from retail_common.context import Principal, PrincipalKind, current_call
from retail_common.db import (
    Connection,
    append_audit,
    claim_request,
    request_fingerprint,
    store_response,
    stored_response,
    transaction,
)
from retail_common.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    Unauthenticated,
)
from retail_common.grpcx import audit_page
from retail_promotion import events, views
from retail_promotion.campaigning import CampaignFacts
from retail_promotion.consumers import RuleState, apply_rule_state
from retail_promotion.convert import evaluation_to_proto, money_to_proto
from retail_promotion.dependencies import RegisteredRule
from retail_promotion.domain.lifecycle import (
    Action,
    CampaignState,
    SelfApprovalError,
    TransitionError,
    next_state,
)
from retail_promotion.evaluating import CartInput, Evaluator
from retail_promotion.repository import CampaignRepository, RedemptionRepository
from retail_promotion.repository.guardrails import record_registered_rule
from retail_promotion.repository.ledger import ensure_targets, targets
from retail_promotion.repository.redemptions import StoredRedemption
from retail_promotion.validation import Checks, campaign_violations, cart_violations

__all__ = ["APPROVER_ROLE", "OPERATOR_ROLE", "PromotionServicer"]

OPERATOR_ROLE = "promotion.operator"
APPROVER_ROLE = "promotion.approver"
CAMPAIGN = "retail.promotion.v1.Campaign"
REDEMPTION = "retail.promotion.v1.Redemption"
Context = grpc.aio.ServicerContext[Any, Any]
M = TypeVar("M", bound=Message)
T = TypeVar("T")
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_STATES = {s.value: s for s in CampaignState}


def _principal() -> Principal:
    call = current_call()
    if call is None or call.principal is None:
        raise Unauthenticated()
    return call.principal


def _acting_channel(channel_id: str) -> None:
    principal = _principal()
    if principal.kind is PrincipalKind.CHANNEL and principal.id != channel_id:
        raise PermissionDenied(f"channel {principal.id} may not act for channel {channel_id}")


def _print(request: Message, *clear: str) -> str:
    """The digest of the whole request but `clear` (request_id included, so `ignore=()` by default):
    for one key that compares like the runtime's default, and it is what the keys copied from this
    service's old `idempotency` table (migration 0005) and redemption rows were stored with."""
    return request_fingerprint(request, ignore=clear)


def _state(campaign: campaign_pb2.Campaign) -> CampaignState:
    return _STATES[campaign_pb2.CampaignState.Name(campaign.state).removeprefix("CAMPAIGN_STATE_")]


def _page_size(value: int, checks: Checks) -> int:
    if value < 0:
        checks.add("page_size", "must not be negative")
    return min(value or 50, 1000)


def _after(token: str) -> str:
    if not token:
        return ""
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(value["after"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "malformed page token") from None


def _target_after(token: str) -> tuple[str, str] | tuple[()]:
    """(channel, location) a deployment page continues after; () from the start."""
    if not token:
        return ()
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        channel, location = value["after"]
        return str(channel), str(location)
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "malformed page token") from None


class PromotionServicer(promotion_service_pb2_grpc.PromotionServiceServicer):
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        clock: Clock,
        campaigns: CampaignRepository,
        evaluator: Evaluator,
        facts: CampaignFacts,
        redemptions: RedemptionRepository,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._campaigns = campaigns
        self._evaluator = evaluator
        self._facts = facts
        self._redemptions = redemptions

    # ------------------------------------------------------------------------------------- plumbing

    async def _tx(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        for attempt in range(5):
            try:
                async with transaction(self._pool) as conn:
                    return await work(conn)
            except _RETRYABLE:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _method(self) -> str:
        call = current_call()
        return call.method if call else "?"

    async def _stored(self, request_id: str, fingerprint: str, response_type: type[M]) -> M | None:
        """The first response of this request_id, if any (read before slow pre-checks)."""
        async with self._pool.acquire() as conn:
            stored = await stored_response(
                conn, scope=self._method(), request_id=request_id, fingerprint=fingerprint
            )
        return None if stored is None else response_type.FromString(stored)

    async def _idempotent(
        self,
        request_id: str,
        fingerprint: str,
        response_type: type[M],
        work: Callable[[Connection], Awaitable[M]],
    ) -> M:
        scope = self._method()

        async def run(conn: Connection) -> M:
            stored = await claim_request(conn, scope=scope, request_id=request_id, fingerprint=fingerprint)
            if stored is not None:
                return response_type.FromString(stored)
            response = await work(conn)
            await store_response(conn, scope=scope, request_id=request_id, response=response)
            return response

        return await self._tx(run)

    async def _audit(
        self,
        conn: Connection,
        key: str,
        before: Message | None,
        after: Message | None,
        *,
        entity_type: str = CAMPAIGN,
    ) -> None:
        await append_audit(
            conn,
            action=self._method(),
            entity_type=entity_type,
            entity_key=key,
            before=views.as_dict(before),
            after=views.as_dict(after),
        )

    # ------------------------------------------------------------------------------------ campaigns

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, context: Context
    ) -> pb.CreateCampaignResponse:
        checks = Checks()
        checks.id("request_id", request.request_id)
        checks.violations.extend(campaign_violations(request.campaign))
        checks.raise_if_any()
        author = _principal().id

        async def work(conn: Connection) -> pb.CreateCampaignResponse:
            created = await self._campaigns.create(conn, request.campaign, author)
            await self._audit(conn, created.campaign_id, None, created)
            return pb.CreateCampaignResponse(campaign=created)

        return await self._idempotent(request.request_id, _print(request), pb.CreateCampaignResponse, work)

    async def UpdateCampaign(
        self, request: pb.UpdateCampaignRequest, context: Context
    ) -> pb.UpdateCampaignResponse:
        checks = Checks()
        checks.id("request_id", request.request_id)
        if not request.campaign.etag:
            checks.add("campaign.etag", "required")
        checks.violations.extend(campaign_violations(request.campaign))
        checks.raise_if_any()

        async def work(conn: Connection) -> pb.UpdateCampaignResponse:
            current = await self._campaigns.get(conn, request.campaign.campaign_id, for_update=True)
            if current.etag != request.campaign.etag:
                raise Aborted("the campaign changed; re-read it")
            if current.state != campaign_pb2.CAMPAIGN_STATE_DRAFT:
                raise FailedPrecondition(
                    [
                        PreconditionViolation(
                            "STATE", current.campaign_id, "only DRAFT campaigns can be edited"
                        )
                    ]
                )
            updated = await self._campaigns.replace(conn, request.campaign)
            await self._audit(conn, updated.campaign_id, current, updated)
            return pb.UpdateCampaignResponse(campaign=updated)

        return await self._idempotent(request.request_id, _print(request), pb.UpdateCampaignResponse, work)

    async def GetCampaign(self, request: pb.GetCampaignRequest, context: Context) -> pb.GetCampaignResponse:
        checks = Checks()
        checks.id("campaign_id", request.campaign_id)
        checks.raise_if_any()
        async with self._pool.acquire() as conn:
            campaign = await self._campaigns.get(conn, request.campaign_id)
            suspensions = await self._campaigns.suspensions(conn, request.campaign_id)
        return pb.GetCampaignResponse(
            campaign=campaign, suspensions=[views.suspension(s) for s in suspensions]
        )

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: Context
    ) -> pb.ListCampaignsResponse:
        checks = Checks()
        size = _page_size(request.page_size, checks)
        if request.state not in campaign_pb2.CampaignState.values():
            checks.add("state", "unknown state")
        checks.raise_if_any()
        state = None
        if request.state:
            state = campaign_pb2.CampaignState.Name(request.state).removeprefix("CAMPAIGN_STATE_")
        async with self._pool.acquire() as conn:
            rows = await self._campaigns.list_campaigns(
                conn, state=state, after=_after(request.page_token), limit=size + 1
            )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = base64.urlsafe_b64encode(json.dumps({"after": rows[-1].campaign_id}).encode()).decode()
        return pb.ListCampaignsResponse(campaigns=rows, next_page_token=token.rstrip("="))

    async def ValidateCampaign(
        self, request: pb.ValidateCampaignRequest, context: Context
    ) -> pb.ValidateCampaignResponse:
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidArgument.field("target", "campaign_id or campaign required")
        if target == "campaign":
            _raise_if(campaign_violations(request.campaign))
            campaign = request.campaign
        else:
            checks = Checks()
            checks.id("campaign_id", request.campaign_id)
            checks.raise_if_any()
            async with self._pool.acquire() as conn:
                campaign = await self._campaigns.get(conn, request.campaign_id)
        found = await self._facts.validate(campaign, self._clock.now())
        return pb.ValidateCampaignResponse(findings=[views.finding_proto(f) for f in found], valid=not found)

    async def _transition(
        self,
        request: Any,
        action: Action,
        response_type: type[M],
        *,
        validate: bool,
        build: Callable[[campaign_pb2.Campaign, list[pb.ValidationFinding]], M],
        after: Callable[[Connection, campaign_pb2.Campaign], Awaitable[None]] | None = None,
        prepare: Callable[[campaign_pb2.Campaign], Awaitable[object]] | None = None,
    ) -> M:
        checks = Checks()
        checks.id("request_id", request.request_id)
        checks.id("campaign_id", request.campaign_id)
        if not request.etag:
            checks.add("etag", "required")
        if action in (Action.REJECT, Action.ROLLBACK) and not 1 <= len(request.reason) <= 1000:
            checks.add("reason", "required, at most 1000 characters")
        checks.raise_if_any()
        fingerprint = _print(request)
        stored = await self._stored(request.request_id, fingerprint, response_type)
        if stored is not None:
            return stored
        actor = _principal().id
        async with self._pool.acquire() as conn:
            seen = await self._campaigns.get(conn, request.campaign_id)
        if seen.etag != request.etag:
            raise Aborted("the campaign changed; re-read it")
        self._next(seen, action, actor)  # fail fast before asking other services
        found = await self._facts.validate(seen, self._clock.now()) if validate else []
        if found:
            raise FailedPrecondition(views.finding_violations(found), "validation found problems")
        if prepare is not None:  # calls to other services: after validation, outside the transaction
            await prepare(seen)

        async def work(conn: Connection) -> M:
            current = await self._campaigns.get(conn, request.campaign_id, for_update=True)
            if current.etag != request.etag:
                raise Aborted("the campaign changed; re-read it")
            state = self._next(current, action, actor)
            approver = actor if action is Action.APPROVE else None
            updated = await self._campaigns.set_state(conn, current.campaign_id, state, approver=approver)
            if after is not None:
                await after(conn, updated)
            await self._audit(conn, updated.campaign_id, current, updated)
            return build(updated, [views.finding_proto(f) for f in found])

        return await self._idempotent(request.request_id, fingerprint, response_type, work)

    @staticmethod
    def _next(campaign: campaign_pb2.Campaign, action: Action, actor: str) -> CampaignState:
        try:
            return next_state(_state(campaign), action, actor=actor, author=campaign.author_id)
        except TransitionError as error:
            raise FailedPrecondition(
                [PreconditionViolation("STATE", campaign.campaign_id, str(error))]
            ) from None
        except SelfApprovalError as error:
            raise PermissionDenied(str(error)) from None

    async def SubmitCampaign(
        self, request: pb.SubmitCampaignRequest, context: Context
    ) -> pb.SubmitCampaignResponse:
        return await self._transition(
            request,
            Action.SUBMIT,
            pb.SubmitCampaignResponse,
            validate=True,
            build=lambda c, f: pb.SubmitCampaignResponse(campaign=c, findings=f),
        )

    async def ApproveCampaign(
        self, request: pb.ApproveCampaignRequest, context: Context
    ) -> pb.ApproveCampaignResponse:
        return await self._transition(
            request,
            Action.APPROVE,
            pb.ApproveCampaignResponse,
            validate=True,
            build=lambda c, f: pb.ApproveCampaignResponse(campaign=c, findings=f),
        )

    async def RejectCampaign(
        self, request: pb.RejectCampaignRequest, context: Context
    ) -> pb.RejectCampaignResponse:
        return await self._transition(
            request,
            Action.REJECT,
            pb.RejectCampaignResponse,
            validate=False,
            build=lambda c, f: pb.RejectCampaignResponse(campaign=c),
        )

    async def LaunchCampaign(
        self, request: pb.LaunchCampaignRequest, context: Context
    ) -> pb.LaunchCampaignResponse:
        registered: list[RegisteredRule] = []

        async def register(campaign: campaign_pb2.Campaign) -> None:
            registered[:] = await self._facts.register_guardrails(campaign)  # idempotent at inventory

        async def after(conn: Connection, launched: campaign_pb2.Campaign) -> None:
            await ensure_targets(conn, launched.campaign_id, list(launched.channel_ids))
            for rule in registered:
                await record_registered_rule(
                    conn,
                    rule_id=rule.rule_id,
                    campaign_id=launched.campaign_id,
                    sku=rule.sku,
                    location_id=rule.location_id,
                    channel_id=rule.channel_id,
                )
                if rule.below:  # low already at creation: no crossing will be announced
                    state = RuleState(
                        rule.rule_id,
                        rule.sku,
                        rule.location_id,
                        rule.channel_id,
                        True,
                        rule.version,
                        "low at launch",
                    )
                    await apply_rule_state(conn, self._campaigns, launched, state, self._clock.now())

        return await self._transition(
            request,
            Action.LAUNCH,
            pb.LaunchCampaignResponse,
            validate=True,
            build=lambda c, f: pb.LaunchCampaignResponse(campaign=c, findings=f),
            after=after,
            prepare=register,
        )

    async def RollbackCampaign(
        self, request: pb.RollbackCampaignRequest, context: Context
    ) -> pb.RollbackCampaignResponse:
        async def after(conn: Connection, rolled: campaign_pb2.Campaign) -> None:
            await events.promotion_state_changed(
                conn,
                self._campaigns.events,
                rolled,
                change=events_pb2.PROMOTION_STATE_CHANGE_ROLLED_BACK,
                detail=request.reason,
                at=self._clock.now(),
            )

        return await self._transition(
            request,
            Action.ROLLBACK,
            pb.RollbackCampaignResponse,
            validate=False,
            build=lambda c, f: pb.RollbackCampaignResponse(campaign=c),
            after=after,
        )

    def _scope_checks(self, request: Any) -> None:
        checks = Checks()
        checks.id("request_id", request.request_id)
        checks.id("campaign_id", request.campaign_id)
        checks.optional_id("channel_id", request.channel_id)
        checks.optional_id("location_id", request.location_id)
        checks.optional_id("sku", request.sku)
        checks.raise_if_any()

    async def SuspendCampaign(
        self, request: pb.SuspendCampaignRequest, context: Context
    ) -> pb.SuspendCampaignResponse:
        self._scope_checks(request)
        if len(request.detail) > 1000:
            raise InvalidArgument.field("detail", "at most 1000 characters")

        async def work(conn: Connection) -> pb.SuspendCampaignResponse:
            campaign = await self._campaigns.get(conn, request.campaign_id, for_update=True)
            scope = {"channel_id": request.channel_id, "location_id": request.location_id, "sku": request.sku}
            await self._campaigns.suspend(
                conn, campaign, reason="OPERATOR", detail=request.detail, at=self._clock.now(), **scope
            )
            rows = [
                r
                for r in await self._campaigns.suspensions(conn, campaign.campaign_id)
                if (r.channel_id, r.location_id, r.sku, r.reason)
                == (request.channel_id, request.location_id, request.sku, "OPERATOR")
            ]
            await self._audit(conn, campaign.campaign_id, None, views.suspension(rows[0]))
            return pb.SuspendCampaignResponse(suspension=views.suspension(rows[0]))

        return await self._idempotent(request.request_id, _print(request), pb.SuspendCampaignResponse, work)

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: Context
    ) -> pb.ResumeCampaignResponse:
        self._scope_checks(request)

        async def work(conn: Connection) -> pb.ResumeCampaignResponse:
            campaign = await self._campaigns.get(conn, request.campaign_id, for_update=True)
            resumed = await self._campaigns.resume(
                conn,
                campaign,
                channel_id=request.channel_id,
                location_id=request.location_id,
                sku=request.sku,
                reason="OPERATOR",
                at=self._clock.now(),
            )
            if resumed:
                await self._audit(conn, campaign.campaign_id, None, None)
            return pb.ResumeCampaignResponse(resumed=resumed)

        return await self._idempotent(request.request_id, _print(request), pb.ResumeCampaignResponse, work)

    async def CreateCodeBatch(
        self, request: pb.CreateCodeBatchRequest, context: Context
    ) -> pb.CreateCodeBatchResponse:
        checks = Checks()
        checks.id("request_id", request.request_id)
        checks.id("campaign_id", request.campaign_id)
        checks.id("code_batch_id", request.code_batch_id)
        if not 1 <= request.count <= 100_000:
            checks.add("count", "must be 1..100000")
        if len(request.prefix) > 16 or not all(
            c.isascii() and (c.isupper() or c.isdigit()) for c in request.prefix
        ):
            checks.add("prefix", "at most 16 characters of A-Z and 0-9")
        checks.raise_if_any()

        async def work(conn: Connection) -> pb.CreateCodeBatchResponse:
            await self._campaigns.get(conn, request.campaign_id, for_update=True)
            codes = await self._campaigns.create_code_batch(
                conn, request.campaign_id, request.code_batch_id, request.count, request.prefix
            )
            await self._audit(conn, request.campaign_id, None, None)
            return pb.CreateCodeBatchResponse(code_batch_id=request.code_batch_id, codes=codes)

        return await self._idempotent(request.request_id, _print(request), pb.CreateCodeBatchResponse, work)

    # ----------------------------------------------------------------------------------- evaluation

    def _cart(self, request: Any) -> CartInput:
        checks = Checks()
        cart_violations(
            checks, request.scope, request.currency_code, list(request.lines), list(request.codes)
        )
        checks.raise_if_any()
        _acting_channel(request.scope.channel_id)
        at = request.at_time.ToDatetime(tzinfo=UTC) if request.HasField("at_time") else self._clock.now()
        return CartInput(
            channel_id=request.scope.channel_id,
            currency=request.currency_code,
            lines=tuple((line.sku, line.quantity) for line in request.lines),
            at=at,
            location_id=request.scope.location_id,
            segment=request.scope.customer_segment,
            codes=tuple(request.codes),
            current=not request.HasField("at_time"),
        )

    async def EvaluateCart(
        self, request: pb.EvaluateCartRequest, context: Context
    ) -> pb.EvaluateCartResponse:
        inp = self._cart(request)
        response = views.evaluation_response(await self._evaluator.evaluate(inp))
        response.at_time.FromDatetime(inp.at)
        return response

    async def GetActivePromotions(
        self, request: pb.GetActivePromotionsRequest, context: Context
    ) -> pb.GetActivePromotionsResponse:
        checks = Checks()
        if not 1 <= len(request.skus) <= 1000:
            checks.add("skus", "1..1000 SKUs")
        for i, sku in enumerate(request.skus):
            checks.id(f"skus[{i}]", sku)
        cart_violations(checks, request.scope, request.currency_code, [], [])
        checks.violations = [v for v in checks.violations if v.field != "lines"]
        checks.raise_if_any()
        _acting_channel(request.scope.channel_id)
        at = request.at_time.ToDatetime(tzinfo=UTC) if request.HasField("at_time") else self._clock.now()
        inp = CartInput(
            channel_id=request.scope.channel_id,
            currency=request.currency_code,
            lines=tuple((sku, 1) for sku in request.skus),
            at=at,
            location_id=request.scope.location_id,
            segment=request.scope.customer_segment,
            current=not request.HasField("at_time"),
        )
        results = await self._evaluator.active_promotions(inp)
        catalog = self._evaluator.catalog
        out = []
        for sku, (ev, applied) in zip(request.skus, results, strict=True):
            line = ev.lines[0]
            out.append(
                evaluation_pb2.SkuPromotions(
                    sku=sku,
                    promotions=[
                        views.active_promotion(p, catalog.campaigns[p.campaign.campaign_id]) for p in applied
                    ],
                    unit_price=money_to_proto(line.unit_price, ev.currency),
                    sale_unit_price=money_to_proto(line.final, ev.currency),
                )
            )
        return pb.GetActivePromotionsResponse(skus=out)

    async def RedeemPromotions(
        self, request: pb.RedeemPromotionsRequest, context: Context
    ) -> pb.RedeemPromotionsResponse:
        checks = Checks()
        checks.id("order_id", request.order_id)
        checks.raise_if_any()
        inp = self._cart(request)
        fingerprint = _print(request, "at_time")
        currency = request.currency_code

        def response(ev: Any) -> bytes:
            lines, totals, candidates = evaluation_to_proto(ev)
            evaluation = pb.EvaluateCartResponse(lines=lines, totals=totals, candidates=candidates)
            evaluation.at_time.FromDatetime(inp.at)
            return evaluation.SerializeToString()

        async def audit(conn: Connection, stored: StoredRedemption) -> None:
            await self._audit(
                conn, stored.order_id, None, views.redemption(stored, currency), entity_type=REDEMPTION
            )

        redeemed = await self._evaluator.redeem(request.order_id, fingerprint, inp, response, audit)
        return pb.RedeemPromotionsResponse(
            redemption=views.redemption(redeemed.stored, currency),
            evaluation=pb.EvaluateCartResponse.FromString(redeemed.stored.response),
        )

    async def CancelRedemption(
        self, request: pb.CancelRedemptionRequest, context: Context
    ) -> pb.CancelRedemptionResponse:
        checks = Checks()
        checks.id("order_id", request.order_id)
        checks.raise_if_any()

        principal = _principal()

        async def work(conn: Connection) -> pb.CancelRedemptionResponse:
            before = await self._redemptions.get(conn, request.order_id)
            if before is None or (
                principal.kind is PrincipalKind.CHANNEL and before.channel_id != principal.id
            ):  # another channel's order is not even visible
                raise NotFound("retail.promotion.v1.Redemption", request.order_id)
            stored = await self._redemptions.cancel(conn, request.order_id)
            assert stored is not None
            currency = pb.EvaluateCartResponse.FromString(stored.response).totals.total.currency_code
            if before.state != stored.state:
                await self._audit(
                    conn,
                    stored.order_id,
                    views.redemption(before, currency),
                    views.redemption(stored, currency),
                    entity_type=REDEMPTION,
                )
            return pb.CancelRedemptionResponse(redemption=views.redemption(stored, currency))

        return await self._tx(work)

    # ----------------------------------------------------------------------------------- deployment

    async def GetCampaignDeployment(
        self, request: pb.GetCampaignDeploymentRequest, context: Context
    ) -> pb.GetCampaignDeploymentResponse:
        """Overall state, summaries and remediation tasks over every target; the targets themselves in
        (channel, location) order, a page of them with page_size (600-store channels)."""
        checks = Checks()
        checks.id("campaign_id", request.campaign_id)
        if not 0 <= request.page_size <= 1000:
            checks.add("page_size", "must be 0..1000 (0: every target)")
        checks.raise_if_any()
        after = _target_after(request.page_token)
        async with self._pool.acquire() as conn:
            campaign = await self._campaigns.get(conn, request.campaign_id)
            rows = await targets(conn, request.campaign_id)
        board = views.deployment(campaign, rows, delivered_version=campaign.version)
        if not request.page_size and not after:
            return pb.GetCampaignDeploymentResponse(deployment=board)
        page = [t for t in board.targets if (t.channel_id, t.location_id) > after]
        size = request.page_size or len(page)
        token = ""
        if len(page) > size:
            page = page[:size]
            last = [page[-1].channel_id, page[-1].location_id]
            token = base64.urlsafe_b64encode(json.dumps({"after": last}).encode()).decode().rstrip("=")
        del board.targets[:]
        board.targets.extend(page)
        return pb.GetCampaignDeploymentResponse(deployment=board, next_page_token=token)

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        async with self._pool.acquire() as conn:
            records, token = await audit_page(
                conn,
                entity_type=request.entity_type,
                entity_key=request.entity_key,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return pb.ListAuditRecordsResponse(records=records, next_page_token=token)


def _raise_if(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)
