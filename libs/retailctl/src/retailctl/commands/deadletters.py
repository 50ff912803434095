"""`retailctl dead-letters list|replay`: deliveries a channel could not take after its retry policy
(gateway ListDeadLetters / ReplayDeadLetters).

These are the only dead letters an RPC exposes. Event-consumer dead letters of the services (the
DEADLETTER stream and each database's dead_letters table, retail_common.messaging) have no RPC yet.
"""

from __future__ import annotations

from retail.channel.v1 import channel_operations_service_pb2 as pb
from retail.channel.v1 import channel_pb2, health_pb2
from retailctl.commands._shared import Commands, add_request_id, leaf, noun, pages, request_id
from retailctl.commands.channels import _all_channels, _operations
from retailctl.errors import ExitCode
from retailctl.output import enum_name, message_dict, timestamp
from retailctl.runner import Context, command

__all__ = ["register"]


async def _list(ctx: Context) -> ExitCode:
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


def register(commands: Commands) -> None:
    group = noun(commands, "dead-letters", "deliveries a channel could not take (gateway)")
    parser = leaf(group, "list", command(_list), "dead letters, newest first, of the given or every channel")
    parser.add_argument("channel_ids", nargs="*", metavar="CHANNEL", help="default: every channel")
    parser.add_argument("--include-replayed", action="store_true", help="also those already replayed")
    parser = leaf(
        group,
        "replay",
        command(_replay),
        "put a channel's dead letters back into its queue (all not replayed yet, or the given ids)",
    )
    parser.add_argument("channel_id", metavar="CHANNEL")
    parser.add_argument("--id", dest="ids", type=int, action="append", help="a dead letter id (repeatable)")
    add_request_id(parser)
