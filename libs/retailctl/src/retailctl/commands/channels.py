"""`retailctl channels list|health|reconcile|resync` (gateway ChannelOperationsService, and the
channel façade's RequestResync, which operators with channel.admin may call for any channel)."""

from __future__ import annotations

from retail.channel.v1 import channel_gateway_service_pb2 as gateway_pb
from retail.channel.v1 import (
    channel_gateway_service_pb2_grpc,
    channel_operations_service_pb2_grpc,
    channel_pb2,
    health_pb2,
)
from retail.channel.v1 import channel_operations_service_pb2 as pb
from retailctl.commands._shared import Commands, add_request_id, leaf, noun, pages, request_id
from retailctl.errors import ExitCode
from retailctl.output import enum_name, message_dict, timestamp
from retailctl.runner import Context, command

__all__ = ["register"]

GATEWAY = "channel-gateway"


def _operations(ctx: Context) -> channel_operations_service_pb2_grpc.ChannelOperationsServiceAsyncStub:
    return channel_operations_service_pb2_grpc.ChannelOperationsServiceStub(ctx.channel(GATEWAY))


async def _all_channels(ctx: Context) -> list[channel_pb2.Channel]:
    stub = _operations(ctx)
    channels: list[channel_pb2.Channel] = []
    async for page in pages(
        lambda token: stub.ListChannels(pb.ListChannelsRequest(page_size=1000, page_token=token))
    ):
        channels.extend(page.channels)
    return channels


def _mode(channel: channel_pb2.Channel) -> str:
    return channel.delivery.WhichOneof("mode") or "-"


async def _list(ctx: Context) -> ExitCode:
    channels = await _all_channels(ctx)
    if ctx.out.as_json:
        ctx.out.json({"channels": [message_dict(c) for c in channels]})
        return ExitCode.OK
    ctx.out.table(
        ["CHANNEL", "NAME", "KIND", "DELIVERY", "LOCATIONS", "SKUS", "ACTIVE"],
        (
            [
                c.channel_id,
                c.display_name,
                enum_name(channel_pb2.ChannelKind.Name(c.kind), "CHANNEL_KIND_"),
                _mode(c),
                len(c.location_ids),
                c.assortment_size,
                "yes" if c.active else "no",
            ]
            for c in channels
        ),
        empty="no channels",
    )
    return ExitCode.OK


async def _health(ctx: Context) -> ExitCode:
    ids: list[str] = ctx.args.channel_ids or [c.channel_id for c in await _all_channels(ctx)]
    stub = _operations(ctx)
    healths = [
        (await stub.GetChannelHealth(pb.GetChannelHealthRequest(channel_id=channel_id))).health
        for channel_id in ids
    ]
    degraded = any(h.condition != health_pb2.CHANNEL_CONDITION_HEALTHY for h in healths)
    if ctx.out.as_json:
        ctx.out.json({"channels": [message_dict(h) for h in healths]})
    else:
        ctx.out.table(
            ["CHANNEL", "CONDITION", "BREAKER", "BACKLOG", "LAG", "ERRORS", "DEAD", "LAST OK", "OWNER"],
            (
                [
                    h.channel_id,
                    enum_name(health_pb2.ChannelCondition.Name(h.condition), "CHANNEL_CONDITION_"),
                    enum_name(health_pb2.BreakerState.Name(h.breaker_state), "BREAKER_STATE_"),
                    f"{h.backlog} ({h.fast_lane_backlog} fast, {h.bulk_lane_backlog} bulk)",
                    f"{h.lag_seconds:.1f}s",
                    f"{h.error_rate:.0%}",
                    h.dead_letters,
                    timestamp(h.last_success_time, h.HasField("last_success_time")),
                    h.owner or "-",
                ]
                for h in healths
            ),
            empty="no channels",
        )
    return ExitCode.FINDING if degraded else ExitCode.OK


async def _reconcile(ctx: Context) -> ExitCode:
    key = request_id(ctx.args)
    response = await _operations(ctx).ReconcileChannel(
        pb.ReconcileChannelRequest(request_id=key, channel_id=ctx.args.channel_id)
    )
    if ctx.out.as_json:
        ctx.out.json({"channel_id": ctx.args.channel_id, "request_id": key, **message_dict(response)})
    else:
        ctx.out.fields(
            [
                ("channel", ctx.args.channel_id),
                ("checked", response.checked),
                ("drifted", response.drifted),
                ("re-pushed", response.repushed),
            ]
        )
    return ExitCode.OK


async def _resync(ctx: Context) -> ExitCode:
    key = request_id(ctx.args)
    stub = channel_gateway_service_pb2_grpc.ChannelGatewayServiceStub(ctx.channel(GATEWAY))
    response = await stub.RequestResync(
        gateway_pb.RequestResyncRequest(request_id=key, channel_id=ctx.args.channel_id)
    )
    if ctx.out.as_json:
        ctx.out.json({"channel_id": ctx.args.channel_id, "request_id": key, **message_dict(response)})
    else:
        pairs: list[tuple[str, object]] = [("channel", ctx.args.channel_id), ("entities", response.entities)]
        if response.cursor:
            pairs.append(("stream from cursor", response.cursor))
        ctx.out.fields(pairs)
    return ExitCode.OK


def register(commands: Commands) -> None:
    group = noun(commands, "channels", "sales channels in the gateway")
    leaf(group, "list", command(_list), "every registered channel")
    parser = leaf(
        group,
        "health",
        command(_health),
        "backlog, lag, breaker, error rate and dead letters per channel (exit 1: one is DEGRADED)",
    )
    parser.add_argument("channel_ids", nargs="*", metavar="CHANNEL", help="default: every channel")
    parser = leaf(
        group,
        "reconcile",
        command(_reconcile, default_timeout=600),
        "compare the channel's ledger with the systems of record and re-push what drifted",
    )
    parser.add_argument("channel_id", metavar="CHANNEL")
    add_request_id(parser)
    parser = leaf(
        group,
        "resync",
        command(_resync, default_timeout=600),
        "send the channel its full current state (every entity's latest version, marked resync)",
    )
    parser.add_argument("channel_id", metavar="CHANNEL")
    add_request_id(parser)
