"""Step 2: the channels in the gateway: ecommerce, mobile and a POS store group pushed over NATS, and two
marketplaces pushed by signed webhook to endpoints hosted in this process (the second one failing)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from google.protobuf.duration_pb2 import Duration

from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail.channel.v1 import channel_pb2
from retail_channel_gateway.testing import FakeMarketplace, Mode
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import expect, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan

__all__ = ["Marketplaces", "register_channels"]

K = channel_pb2

# Seconds ahead of a change's start each kind of channel gets it (stores may be offline at the start).
LEAD_SECONDS = {
    K.CHANNEL_KIND_ECOMMERCE: 10,
    K.CHANNEL_KIND_MOBILE: 10,
    K.CHANNEL_KIND_POS_STORE_GROUP: 25,
    K.CHANNEL_KIND_MARKETPLACE: 20,
}


@dataclass
class Marketplaces:
    """The two fake marketplace endpoints (the outside world), served from this process."""

    ok: FakeMarketplace
    failing: FakeMarketplace

    @classmethod
    async def start(cls) -> Marketplaces:
        ok, failing = FakeMarketplace(b""), FakeMarketplace(b"")
        await ok.start()
        await failing.start()
        failing.set_mode(Mode.FAIL)
        return cls(ok, failing)

    async def close(self) -> None:
        await self.ok.close()
        await self.failing.close()


def _policy(
    kind: channel_pb2.ChannelKind.ValueType,
    url: str = "",
    kinds: tuple[channel_pb2.ChangeKind.ValueType, ...] = (),
) -> channel_pb2.DeliveryPolicy:
    policy = channel_pb2.DeliveryPolicy(
        lead_time=Duration(seconds=LEAD_SECONDS[kind]),
        # Local endpoints answer in milliseconds; a short timeout also keeps the delivery lease short
        # (3 x timeout), so a gateway that crashed hands its channels over within seconds.
        timeout=Duration(seconds=2),
        retry=channel_pb2.RetryPolicy(
            max_attempts=3, initial_backoff=Duration(nanos=100_000_000), max_backoff=Duration(seconds=1)
        ),
        circuit_breaker=channel_pb2.CircuitBreakerPolicy(
            failure_threshold=3, open_duration=Duration(seconds=1)
        ),
        payload_profile=channel_pb2.PayloadProfile(change_kinds=kinds),
    )
    if url:
        policy.webhook.url = url
    else:
        policy.nats_subject.SetInParent()
    return policy


async def register_channels(plan: Plan, clients: Clients, markets: Marketplaces, say: Narrator) -> None:
    say.step("Channels: ecommerce, mobile, POS store group (NATS) and two marketplaces (signed webhooks)")
    # The failing marketplace takes only campaign, promotion, price and product changes, so its failure
    # is about the campaign (stock traffic for 600 stores would only lengthen its backlog).
    offer_kinds = (
        K.CHANGE_KIND_CAMPAIGN,
        K.CHANGE_KIND_PROMOTION,
        K.CHANGE_KIND_PRICE,
        K.CHANGE_KIND_PRODUCT,
    )
    specs = [
        (plan.web, "Webshop", K.CHANNEL_KIND_ECOMMERCE, _policy(K.CHANNEL_KIND_ECOMMERCE)),
        (plan.app, "Mobile app", K.CHANNEL_KIND_MOBILE, _policy(K.CHANNEL_KIND_MOBILE)),
        (plan.pos, "Store POS", K.CHANNEL_KIND_POS_STORE_GROUP, _policy(K.CHANNEL_KIND_POS_STORE_GROUP)),
        (
            plan.market_ok,
            "Marketplace A",
            K.CHANNEL_KIND_MARKETPLACE,
            _policy(K.CHANNEL_KIND_MARKETPLACE, markets.ok.url),
        ),
        (
            plan.market_failing,
            "Marketplace B",
            K.CHANNEL_KIND_MARKETPLACE,
            _policy(K.CHANNEL_KIND_MARKETPLACE, markets.failing.url, offer_kinds),
        ),
    ]
    secrets = {}
    for channel_id, name, kind, policy in specs:
        channel = channel_pb2.Channel(
            channel_id=channel_id,
            display_name=name,
            kind=kind,
            location_ids=plan.store_ids,
            delivery=policy,
            active=True,
        )
        created = await retrying(
            partial(
                clients.author.operations.CreateChannel,
                ops.CreateChannelRequest(request_id=f"demo-{channel_id}", channel=channel),
            ),
            f"create channel {channel_id}",
        )
        secrets[channel_id] = created.webhook_signing_secret
        await retrying(
            partial(
                clients.author.operations.UpdateAssortment,
                ops.UpdateAssortmentRequest(
                    request_id=f"demo-{channel_id}-assortment",
                    channel_id=channel_id,
                    add_skus=list(plan.skus),
                ),
            ),
            f"assortment of {channel_id}",
        )
        issued = await retrying(
            partial(
                clients.author.operations.CreateChannelCredential,
                ops.CreateChannelCredentialRequest(
                    request_id=f"demo-{channel_id}-key", channel_id=channel_id, description="demo"
                ),
            ),
            f"API key of {channel_id}",
        )
        clients.add_channel_key(channel_id, issued.issued.api_key)
    markets.ok.secret = secrets[plan.market_ok].encode()
    markets.failing.secret = secrets[plan.market_failing].encode()

    for channel_id, _, kind, _ in specs:
        got = await retrying(
            partial(clients.author.operations.GetChannel, ops.GetChannelRequest(channel_id=channel_id)),
            f"read channel {channel_id}",
        )
        ch = got.channel
        expect(
            (ch.kind, ch.assortment_size, len(ch.location_ids), ch.active),
            (kind, len(plan.skus), plan.stores, True),
            f"channel {channel_id}",
        )
        mode = ch.delivery.WhichOneof("mode")
        target = ch.delivery.webhook.url if mode == "webhook" else ch.delivery.nats_subject.subject_prefix
        say.fact(
            f"{channel_id:<14} {K.ChannelKind.Name(ch.kind).removeprefix('CHANNEL_KIND_'):<16} "
            f"{mode} -> {target}, lead time {ch.delivery.lead_time.seconds}s, {ch.assortment_size} SKUs, "
            f"{len(ch.location_ids)} stores, API key issued"
        )
    say.fact(f"{plan.market_failing}'s endpoint answers 503 from now on")
