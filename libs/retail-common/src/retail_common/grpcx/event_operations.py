"""`retail.operations.v1.EventOperationsService`: every service's event-consumer dead letters, for operators.

run_service registers it in every service (the policies below are merged into each ServiceSpec), so an
operator with `events.operator` can list and replay what that service's inbox consumers gave up on.
Replays are idempotent per (caller, request_id): the first response is stored with the replay in one
transaction, and each republished message's id is derived from the request, so a retry after a lost
answer or a failed commit is deduplicated by JetStream (within its duplicate window) and, in any case,
by the consumer's inbox (it dedupes by the original event id).
"""

# gRPC method names are the contract's (PascalCase).
# ruff: noqa: N802

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import grpc
import nats.errors
from nats.aio.client import Client

from retail.operations.v1 import event_operations_service_pb2 as pb
from retail.operations.v1 import event_operations_service_pb2_grpc as pb_grpc
from retail_common.auth.policy import MethodPolicy, full_method_name, service_policies
from retail_common.context import PrincipalKind, current_call
from retail_common.db import (
    Connection,
    append_audit,
    claim_request,
    request_fingerprint,
    store_response,
    stored_response,
    transaction,
)
from retail_common.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied, Unavailable
from retail_common.messaging import (
    H_AGGREGATE_KEY,
    H_AGGREGATE_TYPE,
    H_AGGREGATE_VERSION,
    H_EVENT_TYPE,
    DeadLetter,
    count_dead_letters,
    get_dead_letters,
    list_dead_letters,
    mark_replayed,
    publish_replay,
)

__all__ = [
    "EVENTS_OPERATOR_ROLE",
    "EVENT_OPERATIONS_POLICIES",
    "EVENT_OPERATIONS_SERVICE",
    "EventOperationsServicer",
    "dead_letter_proto",
]

EVENT_OPERATIONS_SERVICE = pb.DESCRIPTOR.services_by_name["EventOperationsService"]
EVENTS_OPERATOR_ROLE = "events.operator"
_OPERATOR = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=[EVENTS_OPERATOR_ROLE])
EVENT_OPERATIONS_POLICIES = service_policies(
    EVENT_OPERATIONS_SERVICE, {"ListEventDeadLetters": _OPERATOR, "ReplayEventDeadLetters": _OPERATOR}
)

RESOURCE_TYPE = "retail.operations.v1.EventDeadLetter"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_REPLAY = 1000
_REPLAY_METHOD = full_method_name(EVENT_OPERATIONS_SERVICE, "ReplayEventDeadLetters")
# Replay message ids are uuid5(request scope + id): a retried request republishes under the same id.
_REPLAY_NAMESPACE = uuid.UUID("5c0d3a52-8f0e-4c59-9a3e-0b6f1f8f2a61")

Connect = Callable[[], Awaitable[Client]]
Context = grpc.aio.ServicerContext[Any, Any]


def _aggregate_version(raw: str | None) -> int:
    return int(raw) if raw is not None and raw.isdigit() else 0


def dead_letter_proto(letter: DeadLetter) -> pb.EventDeadLetter:
    headers = letter.headers
    message = pb.EventDeadLetter(
        dead_letter_id=letter.id,
        consumer=letter.consumer,
        stream=letter.stream,
        stream_sequence=letter.stream_seq,
        subject=letter.subject,
        event_type=headers.get(H_EVENT_TYPE, ""),
        event_id=str(letter.event_id) if letter.event_id else "",
        aggregate_type=headers.get(H_AGGREGATE_TYPE, ""),
        aggregate_key=headers.get(H_AGGREGATE_KEY, ""),
        aggregate_version=_aggregate_version(headers.get(H_AGGREGATE_VERSION)),
        reason=letter.reason,
        delivery_count=letter.num_delivered,
        replay_count=letter.replay_count,
        last_replay_message_id=str(letter.last_replay_msg_id) if letter.last_replay_msg_id else "",
    )
    message.dead_time.FromDatetime(letter.dead_at)
    if letter.replayed_at is not None:
        message.replay_time.FromDatetime(letter.replayed_at)
    return message


def _filters(consumer: str, include_replayed: bool) -> str:
    return json.dumps([consumer, include_replayed])


def _encode_token(after_id: int, filters: str) -> str:
    raw = json.dumps({"a": after_id, "f": filters}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, filters: str) -> int:
    """The id after which the page starts; INVALID_ARGUMENT naming page_token when it is not ours."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, bound = data["a"], data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "malformed") from None
    if not isinstance(after, int) or after < 0 or bound != filters:
        raise InvalidArgument.field("page_token", "does not belong to this request (filters changed?)")
    return after


def _caller_id() -> str:
    call = current_call()
    if call is None or call.principal is None:  # the auth interceptor guarantees one
        raise PermissionDenied("no principal")
    return call.principal.id


def _check_replay(request: pb.ReplayEventDeadLettersRequest) -> None:
    violations: list[FieldViolation] = []
    if not 1 <= len(request.request_id) <= 128:
        violations.append(FieldViolation("request_id", "required, 1..128 characters"))
    ids = list(request.dead_letter_ids)
    if not request.consumer and not ids:
        violations.append(FieldViolation("consumer", "required unless dead_letter_ids are given"))
    if len(ids) > MAX_REPLAY:
        violations.append(FieldViolation("dead_letter_ids", f"at most {MAX_REPLAY} per call"))
    seen: set[int] = set()
    for i, dead_letter_id in enumerate(ids):
        if dead_letter_id <= 0:
            violations.append(FieldViolation(f"dead_letter_ids[{i}]", "must be a positive id"))
        elif dead_letter_id in seen:
            violations.append(FieldViolation(f"dead_letter_ids[{i}]", "listed twice"))
        seen.add(dead_letter_id)
    if violations:
        raise InvalidArgument(violations)


async def _chosen(conn: Connection, request: pb.ReplayEventDeadLettersRequest) -> list[DeadLetter]:
    """The dead letters a replay request names: its ids (all must exist), else the consumer's pending."""
    ids = list(request.dead_letter_ids)
    if not ids:
        return await list_dead_letters(
            conn, consumer=request.consumer, limit=MAX_REPLAY, include_replayed=False
        )
    found = await get_dead_letters(conn, ids)
    for i, dead_letter_id in enumerate(ids):
        if dead_letter_id not in found:
            error = NotFound(
                RESOURCE_TYPE,
                str(dead_letter_id),
                f"dead_letter_ids[{i}]: no event dead letter {dead_letter_id} in this service",
            )
            error.metadata["field"] = f"dead_letter_ids[{i}]"
            raise error
    wrong = [
        FieldViolation(f"dead_letter_ids[{i}]", f"belongs to consumer {found[d].consumer!r}")
        for i, d in enumerate(ids)
        if request.consumer and found[d].consumer != request.consumer
    ]
    if wrong:
        raise InvalidArgument(wrong)
    return [found[d] for d in sorted(ids)]


class EventOperationsServicer(pb_grpc.EventOperationsServiceServicer):
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        connect: Connect,
        *,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        self._connect = connect
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout

    async def ListEventDeadLetters(
        self, request: pb.ListEventDeadLettersRequest, context: Context
    ) -> pb.ListEventDeadLettersResponse:
        if request.page_size < 0:
            raise InvalidArgument.field("page_size", f"must not be negative (maximum {MAX_PAGE_SIZE})")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters = _filters(request.consumer, request.include_replayed)
        after = _decode_token(request.page_token, filters)
        consumer = request.consumer or None
        async with self._pool.acquire() as conn:
            letters = await list_dead_letters(
                conn, consumer=consumer, after_id=after, limit=size, include_replayed=request.include_replayed
            )
            # One more row after the page decides whether a token is due (no empty last page).
            more = len(letters) == size and bool(
                await list_dead_letters(
                    conn,
                    consumer=consumer,
                    after_id=letters[-1].id,
                    limit=1,
                    include_replayed=request.include_replayed,
                )
            )
        return pb.ListEventDeadLettersResponse(
            dead_letters=[dead_letter_proto(letter) for letter in letters],
            next_page_token=_encode_token(letters[-1].id, filters) if more else "",
        )

    async def ReplayEventDeadLetters(
        self, request: pb.ReplayEventDeadLettersRequest, context: Context
    ) -> pb.ReplayEventDeadLettersResponse:
        _check_replay(request)
        scope = f"{_caller_id()}:{_REPLAY_METHOD}"
        fingerprint = request_fingerprint(request)
        # A retry of a completed request is answered from the stored response, even with NATS down.
        async with self._pool.acquire() as conn:
            first = await stored_response(
                conn, scope=scope, request_id=request.request_id, fingerprint=fingerprint
            )
        if first is not None:
            return pb.ReplayEventDeadLettersResponse.FromString(first)
        client = await self._nats()
        async with transaction(self._pool) as conn:
            first = await claim_request(
                conn, scope=scope, request_id=request.request_id, fingerprint=fingerprint
            )
            if first is not None:
                return pb.ReplayEventDeadLettersResponse.FromString(first)
            letters = await _chosen(conn, request)
            # Counted before republishing: a replay the consumer dead-letters again at once must not
            # count as still pending (the answer describes the state this request found).
            pending = await count_dead_letters(conn, consumer=request.consumer) if request.consumer else 0
            replayed = await self._replay(conn, client, scope, request.request_id, letters)
            remaining = pending - sum(
                1 for letter in letters if letter.consumer == request.consumer and letter.replay_count == 0
            )
            response = pb.ReplayEventDeadLettersResponse(
                dead_letters=[dead_letter_proto(letter) for letter in replayed], remaining_count=remaining
            )
            await store_response(conn, scope=scope, request_id=request.request_id, response=response)
        return response

    async def _nats(self) -> Client:
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await self._connect()
        except TimeoutError:
            raise Unavailable("NATS is unreachable; retry with the same request_id") from None

    async def _replay(
        self, conn: Connection, client: Client, scope: str, request_id: str, letters: Sequence[DeadLetter]
    ) -> list[DeadLetter]:
        js = client.jetstream()
        replayed: list[DeadLetter] = []
        for letter in letters:
            replay_id = uuid.uuid5(_REPLAY_NAMESPACE, f"{scope}:{request_id}:{letter.id}")
            try:
                await publish_replay(js, letter, replay_id, publish_timeout=self._publish_timeout)
            except (nats.errors.Error, TimeoutError) as exc:
                # Rolls back the marks of those already republished; a retry republishes under the
                # same ids (deduplicated), so nothing is applied twice.
                raise Unavailable(
                    f"cannot republish dead letter {letter.id} ({type(exc).__name__}); "
                    "retry with the same request_id"
                ) from exc
            after = await mark_replayed(conn, letter.id, replay_id)
            await append_audit(
                conn,
                action=_REPLAY_METHOD,
                entity_type=RESOURCE_TYPE,
                entity_key=str(letter.id),
                before={"consumer": letter.consumer, "replay_count": letter.replay_count},
                after={"replay_count": after.replay_count, "replay_message_id": str(replay_id)},
                request_id=request_id,
            )
            replayed.append(after)
        return replayed
