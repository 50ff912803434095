"""`retailctl dead-letters list|replay --events`: messages a service's event consumers gave up on
(retail.operations.v1.EventOperationsService, served by every service for its own database).

Listing asks every service (or the --service ones) and prints what the reachable ones hold, then one
line per service that failed on stderr (exit code of the worst failure): during an incident the other
services' dead letters are still worth seeing. Replaying addresses one service: ids are per database.
"""

from __future__ import annotations

import grpc

from retail.operations.v1 import event_operations_service_pb2 as pb
from retail.operations.v1 import event_operations_service_pb2_grpc as pb_grpc
from retailctl.commands._shared import pages, request_id
from retailctl.connection import SERVICES
from retailctl.errors import CliError, ExitCode, from_rpc_error
from retailctl.output import message_dict, timestamp
from retailctl.runner import Context, fail

__all__ = ["list_event_dead_letters", "replay_event_dead_letters"]

MAX_PAGE = 1000
_COLUMNS = ["SERVICE", "ID", "CONSUMER", "EVENT", "AGGREGATE", "DELIVERIES", "DEAD SINCE", "REPLAYS",
            "LAST REPLAY", "REASON"]  # fmt: skip


def _stub(ctx: Context, service: str) -> pb_grpc.EventOperationsServiceAsyncStub:
    return pb_grpc.EventOperationsServiceStub(ctx.channel(service))


async def _letters(ctx: Context, service: str) -> list[pb.EventDeadLetter]:
    stub = _stub(ctx, service)
    letters: list[pb.EventDeadLetter] = []
    async for page in pages(
        lambda token: stub.ListEventDeadLetters(
            pb.ListEventDeadLettersRequest(
                consumer=ctx.args.consumer or "",
                include_replayed=ctx.args.include_replayed,
                page_size=MAX_PAGE,
                page_token=token,
            )
        )
    ):
        letters.extend(page.dead_letters)
    return letters


def _event(letter: pb.EventDeadLetter) -> str:
    return letter.event_type.rsplit(".", 1)[-1] or "-"


def _key(letter: pb.EventDeadLetter) -> str:
    if not letter.aggregate_key:
        return "-"
    return f"{letter.aggregate_type}/{letter.aggregate_key}@{letter.aggregate_version}"


def _one_line(reason: str, width: int = 80) -> str:
    text = " ".join(reason.split())
    return text if len(text) <= width else text[: width - 1] + "…"


async def list_event_dead_letters(ctx: Context) -> ExitCode:
    services: list[str] = ctx.args.services or list(SERVICES)
    found: list[tuple[str, pb.EventDeadLetter]] = []
    failures: list[CliError] = []
    for service in services:
        try:
            found += [(service, letter) for letter in await _letters(ctx, service)]
        except grpc.aio.AioRpcError as error:
            failures.append(
                from_rpc_error(error, service=service, target=ctx.suite.targets[service], timeout=ctx.timeout)
            )
    if ctx.out.as_json:
        ctx.out.json({"dead_letters": [{"service": s, **message_dict(letter)} for s, letter in found]})
    else:
        ctx.out.table(
            _COLUMNS,
            (
                [
                    service,
                    d.dead_letter_id,
                    d.consumer,
                    _event(d),
                    _key(d),
                    d.delivery_count,
                    timestamp(d.dead_time),
                    d.replay_count,
                    timestamp(d.replay_time, d.HasField("replay_time")),
                    _one_line(d.reason),
                ]
                for service, d in found
            ),
            empty="no event dead letters",
        )
    for failure in failures:
        fail(failure.message)
    return max((failure.exit_code for failure in failures), default=ExitCode.OK)


async def replay_event_dead_letters(ctx: Context) -> ExitCode:
    service: str = ctx.args.service
    key = request_id(ctx.args)
    response = await _stub(ctx, service).ReplayEventDeadLetters(
        pb.ReplayEventDeadLettersRequest(
            request_id=key, consumer=ctx.args.consumer or "", dead_letter_ids=ctx.args.ids or []
        )
    )
    if ctx.out.as_json:
        ctx.out.json({"service": service, "request_id": key, **message_dict(response)})
        return ExitCode.OK
    ctx.out.line(f"{len(response.dead_letters)} event dead letter(s) of {service} republished")
    if response.dead_letters:
        ctx.out.table(
            ["ID", "CONSUMER", "EVENT", "AGGREGATE", "REPLAYS", "REPLAY MESSAGE ID"],
            (
                [d.dead_letter_id, d.consumer, _event(d), _key(d), d.replay_count, d.last_replay_message_id]
                for d in response.dead_letters
            ),
            empty="",
        )
    if response.remaining_count:
        ctx.out.line(
            f"{response.remaining_count} more of {ctx.args.consumer} not replayed yet: run the command again"
        )
    return ExitCode.OK
