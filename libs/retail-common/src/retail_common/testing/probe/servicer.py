"""The probe's servicer: thin adapters over a few SQL statements, each exercising one runtime feature."""

# Method names are the RPC names grpc dispatches to.
# ruff: noqa: N802

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from retail.common.v1 import principal_pb2
from retail.testing.v1 import probe_pb2, probe_pb2_grpc
from retail_common.config import ServiceSettings
from retail_common.context import PrincipalKind, current_call
from retail_common.db import transaction
from retail_common.errors import FieldViolation, InvalidArgument, NotFound, Reason, Unauthenticated
from retail_common.messaging import OutboxWriter, event_subject
from retail_common.service import ServiceContext

__all__ = ["ProbeServicer"]

Context = grpc.aio.ServicerContext[Any, Any]

AMOUNT_RECORDED_SUBJECT = event_subject("testing", "amount_recorded")
AMOUNT_RECORDED_TYPE = "retail.testing.v1.AmountRecorded"
_OUTBOX = OutboxWriter()

_MAX_MESSAGE = 1000
_MAX_DELAY_MS = 60_000
_KINDS = {
    PrincipalKind.CHANNEL: principal_pb2.PRINCIPAL_KIND_CHANNEL,
    PrincipalKind.OPERATOR: principal_pb2.PRINCIPAL_KIND_OPERATOR,
    PrincipalKind.SERVICE: principal_pb2.PRINCIPAL_KIND_SERVICE,
}


class ProbeServicer(probe_pb2_grpc.ProbeServiceServicer):
    def __init__(self, ctx: ServiceContext[ServiceSettings]) -> None:
        self._ctx = ctx

    async def Echo(self, request: probe_pb2.EchoRequest, context: Context) -> probe_pb2.EchoResponse:
        violations = []
        if not request.message:
            violations.append(FieldViolation("message", "must not be empty"))
        elif len(request.message) > _MAX_MESSAGE:
            violations.append(FieldViolation("message", f"must be at most {_MAX_MESSAGE} characters"))
        if not 0 <= request.delay_ms <= _MAX_DELAY_MS:
            violations.append(FieldViolation("delay_ms", f"must be between 0 and {_MAX_DELAY_MS}"))
        if violations:
            raise InvalidArgument(violations)
        if request.delay_ms:
            await asyncio.sleep(request.delay_ms / 1000)
        # The side effect a deadline test looks for: only written if the handler ran to the end.
        await self._ctx.pool.execute(
            "INSERT INTO probe_echoes (message, echoed_at) VALUES ($1, $2)",
            request.message,
            self._ctx.clock.now(),
        )
        return probe_pb2.EchoResponse(message=request.message)

    async def Crash(self, request: probe_pb2.CrashRequest, context: Context) -> probe_pb2.CrashResponse:
        raise RuntimeError(f"probe crashed on purpose: {request.secret_detail}")

    async def RecordAmount(
        self, request: probe_pb2.RecordAmountRequest, context: Context
    ) -> probe_pb2.RecordAmountResponse:
        violations = [
            FieldViolation(name, "required")
            for name in ("request_id", "account_id")
            if not getattr(request, name)
        ]
        if violations:
            raise InvalidArgument(violations)
        async with transaction(self._ctx.pool) as conn:
            # Serialise retries of one request id; the first one's result is the answer for all.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", request.request_id)
            done = await conn.fetchrow(
                "SELECT account_id, amount, version, event_id FROM probe_requests WHERE request_id = $1",
                request.request_id,
            )
            if done is not None:
                if (done["account_id"], done["amount"]) != (request.account_id, request.amount):
                    raise InvalidArgument(
                        [FieldViolation("request_id", "was already used for a different request")],
                        reason=Reason.IDEMPOTENCY_KEY_REUSED,
                    )
                return probe_pb2.RecordAmountResponse(version=done["version"], event_id=done["event_id"])
            row = await conn.fetchrow(
                "INSERT INTO probe_accounts (account_id, balance, version) VALUES ($1, $2, 1)"
                " ON CONFLICT (account_id) DO UPDATE SET balance = probe_accounts.balance + EXCLUDED.balance,"
                " version = probe_accounts.version + 1 RETURNING balance, version",
                request.account_id,
                request.amount,
            )
            assert row is not None
            # The AmountRecorded event, written to the outbox in this same transaction (the relay publishes).
            balance = row["balance"]
            outbox_event_id, _ = await _OUTBOX.append(
                conn,
                subject=AMOUNT_RECORDED_SUBJECT,
                event_type=AMOUNT_RECORDED_TYPE,
                aggregate_type="probe_account",
                aggregate_key=request.account_id,
                payload=lambda version: probe_pb2.AmountRecorded(
                    account_id=request.account_id, amount=request.amount, balance=balance, version=version
                ),
            )
            event_id = str(outbox_event_id)
            await conn.execute(
                "INSERT INTO probe_requests (request_id, account_id, amount, version, event_id)"
                " VALUES ($1, $2, $3, $4, $5)",
                request.request_id,
                request.account_id,
                request.amount,
                row["version"],
                event_id,
            )
        return probe_pb2.RecordAmountResponse(version=row["version"], event_id=event_id)

    async def GetAccount(
        self, request: probe_pb2.GetAccountRequest, context: Context
    ) -> probe_pb2.GetAccountResponse:
        if not request.account_id:
            raise InvalidArgument.field("account_id", "required")
        row = await self._ctx.pool.fetchrow(
            "SELECT balance, version FROM probe_accounts WHERE account_id = $1", request.account_id
        )
        if row is None:
            raise NotFound("account", request.account_id)
        return probe_pb2.GetAccountResponse(
            account_id=request.account_id, balance=row["balance"], version=row["version"]
        )

    async def WhoAmI(self, request: probe_pb2.WhoAmIRequest, context: Context) -> probe_pb2.WhoAmIResponse:
        call = current_call()
        if call is None or call.principal is None:
            raise Unauthenticated()
        principal = call.principal
        return probe_pb2.WhoAmIResponse(
            principal_id=principal.id, kind=_KINDS[principal.kind], roles=sorted(principal.roles)
        )

    async def AdminOnly(
        self, request: probe_pb2.AdminOnlyRequest, context: Context
    ) -> probe_pb2.AdminOnlyResponse:
        return probe_pb2.AdminOnlyResponse()  # the method policy already checked kind and role
