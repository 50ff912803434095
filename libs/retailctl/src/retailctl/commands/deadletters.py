"""`retailctl dead-letters list|replay`: deliveries a channel could not take after its retry policy
(gateway ListDeadLetters / ReplayDeadLetters), or with --events the messages the services' event
consumers gave up on (every service's EventOperationsService; see event_deadletters).
"""

from __future__ import annotations

import argparse

from retail.channel.v1 import channel_operations_service_pb2 as pb
from retail.channel.v1 import channel_pb2, health_pb2
from retailctl.commands._shared import Commands, add_request_id, leaf, noun, pages, request_id
from retailctl.commands.channels import _all_channels, _operations
from retailctl.commands.event_deadletters import list_event_dead_letters, replay_event_dead_letters
from retailctl.connection import SERVICES
from retailctl.errors import CliError, ExitCode
from retailctl.output import enum_name, message_dict, timestamp
from retailctl.runner import Context, command

__all__ = ["register"]


def _usage(message: str) -> CliError:
    return CliError(message, ExitCode.USAGE)


async def _list(ctx: Context) -> ExitCode:
    if ctx.args.events:
        if ctx.args.channel_ids:
            raise _usage("CHANNEL names delivery dead letters; with --events choose --service/--consumer")
        return await list_event_dead_letters(ctx)
    if ctx.args.services or ctx.args.consumer:
        raise _usage("--service and --consumer select event dead letters: add --events")
    ids: list[str] = ctx.args.channel_ids or [c.channel_id for c in await _all_channels(ctx)]
    stub = _operations(ctx)
    letters: list[health_pb2.DeliveryDeadLetter] = []
    for channel_id in ids:
        async for page in pages(
            lambda token, channel_id=channel_id: stub.ListDeadLetters(  # type: ignore[misc]
                pb.ListDeadLettersRequest(
                    channel_id=channel_id,
                    page_size=500,
                    page_token=token,
                    include_replayed=ctx.args.include_replayed,
                )
            )
        ):
            letters.extend(page.dead_letters)
    if ctx.out.as_json:
        ctx.out.json({"dead_letters": [message_dict(letter) for letter in letters]})
        return ExitCode.OK
    ctx.out.table(
        ["ID", "CHANNEL", "KIND", "ENTITY", "VERSION", "ATTEMPTS", "DEAD SINCE", "REPLAYED", "LAST ERROR"],
        (
            [
                d.dead_letter_id,
                d.channel_id,
                enum_name(channel_pb2.ChangeKind.Name(d.kind), "CHANGE_KIND_"),
                d.entity_key,
                d.version,
                d.attempts,
                timestamp(d.dead_time),
                timestamp(d.replay_time, d.HasField("replay_time")),
                d.last_error,
            ]
            for d in letters
        ),
        empty="no dead letters",
    )
    return ExitCode.OK


async def _replay(ctx: Context) -> ExitCode:
    if ctx.args.events:
        if ctx.args.channel_id:
            raise _usage("CHANNEL names delivery dead letters; with --events choose --service")
        if not ctx.args.service:
            raise _usage("--events replay needs --service (dead letter ids are per service)")
        if not (ctx.args.consumer or ctx.args.ids):
            raise _usage("--events replay needs --consumer (all its pending ones) or --id")
        return await replay_event_dead_letters(ctx)
    if ctx.args.service or ctx.args.consumer:
        raise _usage("--service and --consumer select event dead letters: add --events")
    if not ctx.args.channel_id:
        raise _usage("which channel? dead-letters replay CHANNEL (or --events --service S)")
    key = request_id(ctx.args)
    response = await _operations(ctx).ReplayDeadLetters(
        pb.ReplayDeadLettersRequest(
            request_id=key, channel_id=ctx.args.channel_id, dead_letter_ids=ctx.args.ids or []
        )
    )
    if ctx.out.as_json:
        ctx.out.json({"channel_id": ctx.args.channel_id, "request_id": key, **message_dict(response)})
    else:
        ctx.out.line(f"{response.replayed} dead letter(s) of {ctx.args.channel_id} put back in its queue")
    return ExitCode.OK


def _add_events_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events",
        action="store_true",
        help="event-consumer dead letters of the services instead of a channel's deliveries",
    )
    parser.add_argument("--consumer", help="with --events: only this consumer (its durable name)")


def register(commands: Commands) -> None:
    group = noun(
        commands,
        "dead-letters",
        "deliveries a channel could not take (gateway), or with --events messages the services' "
        "event consumers gave up on",
    )
    parser = leaf(
        group,
        "list",
        command(_list),
        "dead letters, newest first, of the given or every channel; with --events, every service's "
        "event dead letters in the order they were written",
    )
    parser.add_argument("channel_ids", nargs="*", metavar="CHANNEL", help="default: every channel")
    parser.add_argument("--include-replayed", action="store_true", help="also those already replayed")
    _add_events_options(parser)
    parser.add_argument(
        "--service",
        dest="services",
        action="append",
        choices=SERVICES,
        help="with --events: only this service (repeatable; default: all four)",
    )
    parser = leaf(
        group,
        "replay",
        command(_replay),
        "put a channel's dead letters back into its queue (all not replayed yet, or the given ids); "
        "with --events, republish a service's event dead letters (a consumer's pending ones, or ids)",
    )
    parser.add_argument("channel_id", nargs="?", metavar="CHANNEL")
    parser.add_argument("--id", dest="ids", type=int, action="append", help="a dead letter id (repeatable)")
    _add_events_options(parser)
    parser.add_argument("--service", choices=SERVICES, help="with --events: the service (required)")
    add_request_id(parser)
