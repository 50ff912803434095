"""Campaign fan-out (issue 8): launch a campaign over 10,000 SKUs, 600 stores and 5 channels and time it
until every channel has acknowledged, beside a raw JetStream publish of the same number of messages.

The four services run as separate processes (bench/_suite.py) on fresh databases of the local Postgres
and a nats-server of the bench's own, with default settings. Not measured, through the bulk paths:
pricing BatchUpsertProducts + ImportPriceEntries (one channel-wide base list, approved), inventory
UpsertLocation x stores + ImportStockSnapshots (the guarded launch's SKUs at every store, or every SKU
with BENCH_FANOUT_STOCK=all); then the campaign (the SKUs
in 10 percent-off promotions, every region, window starting in 2 h for 48 h, no stock guardrail) is
created, submitted and approved, and the bench waits until every outbox is relayed and every consumer
caught up. Channels: `web`, `app`, `mp-1`, `mp-2` are signed webhooks to in-process FakeMarketplace
endpoints (a 2xx is the channel's acknowledgement); `stores` (the POS group of all stores) is a NATS
subject channel (the stream's PubAck is the acknowledgement, and the stores read the DELIVERY stream).

Measured: from the LaunchCampaign call to the moment the promotion service's deployment view
(GetCampaignDeployment, polled every POLL s) shows every target ACKNOWLEDGED at the launched campaign
version (the gateway delivered, recorded the ack in its ledger, published DeliveryStateChanged, and
promotion applied it). Targets: each webhook channel once (one `campaign/<id>` entity, not per SKU), and
the store group once per store (`campaign/<id>/<store>` on the store's own subject), so 4 + stores.
Raw: publish + PubAck of as many messages of the same size on the same nats-server (median of 5).

`python -m bench.campaign_fanout [--scale S] [--skus N] [--stores N]` (S scales SKUs and stores, the
counts override it; BENCH_FANOUT_SCALE / _SKUS / _STORES under `python -m bench`);
`run_campaign_fanout_bench()` is the hook for bench/__main__.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg

from bench._pyspy import sampled
from bench._suite import APPROVER, OPERATOR, Suite
from bench.raw_jetstream import raw_publish
from bench.registry import Row
from retail.channel.v1 import changes_pb2, channel_operations_service_pb2_grpc, channel_pb2
from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2, stock_pb2
from retail.pricing.v1 import pricing_service_pb2 as pricing_pb
from retail.pricing.v1 import pricing_service_pb2_grpc
from retail.promotion.v1 import campaign_pb2, deployment_pb2, promotion_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2 as promo_pb
from retail_channel_gateway.testing import FakeMarketplace
from retail_pricing.testing import price_list, product
from retail_promotion.testing import campaign_pb, percent_promotion_pb

__all__ = ["run_campaign_fanout_bench"]

FULL_SKUS, FULL_STORES = 10_000, 600
SCALE = float(os.environ.get("BENCH_FANOUT_SCALE", "1"))
SKUS = int(os.environ.get("BENCH_FANOUT_SKUS", "0"))  # overrides the scaled SKU count
STORES = int(os.environ.get("BENCH_FANOUT_STORES", "0"))  # overrides the scaled store count
# A second launch with a stock guardrail over this many SKUs (0 = none): its rule registration rate
GUARDRAIL_SKUS = int(os.environ.get("BENCH_FANOUT_GUARDRAIL_SKUS", "20"))
# Stock is seeded for the guarded launch's SKUs only: the measured (unguarded) launch reads no stock, and
# 6,000,000 positions plus their AvailabilityChanged fan-out took over an hour to seed on this machine.
# BENCH_FANOUT_STOCK=all seeds every SKU at every store.
STOCK_ALL = os.environ.get("BENCH_FANOUT_STOCK", "") == "all"
REGIONS = 8
PROMOTIONS = 10
WEBHOOK_CHANNELS = (
    ("web", channel_pb2.CHANNEL_KIND_ECOMMERCE),
    ("app", channel_pb2.CHANNEL_KIND_MOBILE),
    ("mp-1", channel_pb2.CHANNEL_KIND_MARKETPLACE),
    ("mp-2", channel_pb2.CHANNEL_KIND_MARKETPLACE),
)
STORE_CHANNEL = "stores"
CHANNELS = tuple(sorted([c for c, _ in WEBHOOK_CHANNELS] + [STORE_CHANNEL]))
CAMPAIGN = "weekend"
POLL = 0.025
ACK_TIMEOUT = float(os.environ.get("BENCH_FANOUT_ACK_TIMEOUT", "600"))
SNAPSHOT_MESSAGE = 10_000  # the contract's maximum entries per ImportStockSnapshots message
CHUNK = 512 * 1024


def _sku(i: int) -> str:
    return f"sku-{i:05d}"


def _store(i: int) -> str:
    return f"store-{i:03d}"


def _say(message: str) -> None:
    print(f"[campaign-fanout] {message}", file=sys.stderr, flush=True)


# --- seeding (bulk paths, not measured) ---------------------------------------------------------------


async def _seed_pricing(suite: Suite, skus: int) -> None:
    operator = pricing_service_pb2_grpc.PricingServiceStub(suite.channel("pricing"))
    approver = pricing_service_pb2_grpc.PricingServiceStub(suite.channel("pricing", APPROVER))
    for first in range(0, skus, 1000):
        await operator.BatchUpsertProducts(
            pricing_pb.BatchUpsertProductsRequest(
                request_id=f"products-{first}",
                products=[product(_sku(s)) for s in range(first, min(first + 1000, skus))],
            )
        )
    await operator.CreatePriceList(
        pricing_pb.CreatePriceListRequest(request_id="base", price_list=price_list("base"))
    )
    csv = io.StringIO()
    csv.write("price_list_id,sku,amount,currency_code,start_time\n")
    for s in range(skus):
        csv.write(f"base,{_sku(s)},{10 + s % 90}.99,EUR,2026-01-01T00:00:00Z\n")
    data = csv.getvalue().encode()

    async def chunks() -> AsyncIterator[pricing_pb.ImportPriceEntriesRequest]:
        for first in range(0, len(data), CHUNK):
            yield pricing_pb.ImportPriceEntriesRequest(
                request_id="prices" if first == 0 else "", data=data[first : first + CHUNK]
            )

    imported = await operator.ImportPriceEntries(chunks(), metadata=suite.auth(OPERATOR))
    submitted = await operator.SubmitChangeSet(
        pricing_pb.SubmitChangeSetRequest(
            request_id="submit",
            change_set_id=imported.change_set.change_set_id,
            etag=imported.change_set.etag,
        )
    )
    await approver.ApproveChangeSet(
        pricing_pb.ApproveChangeSetRequest(
            request_id="approve",
            change_set_id=submitted.change_set.change_set_id,
            etag=submitted.change_set.etag,
        )
    )


async def _seed_inventory(suite: Suite, skus: int, stores: int) -> None:
    stub = inventory_service_pb2_grpc.InventoryServiceStub(suite.channel("inventory"))
    for i in range(stores):
        await stub.UpsertLocation(
            inv.UpsertLocationRequest(
                request_id=f"loc-{i}",
                location=location_pb2.Location(
                    location_id=_store(i),
                    kind=location_pb2.LOCATION_KIND_STORE,
                    region_id=f"region-{i % REGIONS}",
                    time_zone="Europe/Berlin",
                    channel_ids=[STORE_CHANNEL, "web", "app"],
                    active=True,
                ),
            )
        )
    as_of = Timestamp()
    as_of.FromDatetime(datetime.now(UTC) - timedelta(minutes=5))

    async def messages() -> AsyncIterator[inv.ImportStockSnapshotsRequest]:
        batch: list[stock_pb2.StockSnapshotEntry] = []
        for store in range(stores):
            for s in range(skus):
                batch.append(
                    stock_pb2.StockSnapshotEntry(
                        sku=_sku(s),
                        location_id=_store(store),
                        on_hand=20 + (s + store) % 80,
                        as_of_time=as_of,
                    )
                )
                if len(batch) == SNAPSHOT_MESSAGE:
                    yield inv.ImportStockSnapshotsRequest(request_id="stock", entries=batch)
                    batch = []
        if batch:
            yield inv.ImportStockSnapshotsRequest(request_id="stock", entries=batch)

    done = await stub.ImportStockSnapshots(messages(), metadata=suite.auth(OPERATOR))
    if done.applied_count != skus * stores:
        raise RuntimeError(f"stock import applied {done.applied_count} of {skus * stores}")


# --- channels -----------------------------------------------------------------------------------------


@dataclass
class _Receipts:
    """Campaign changes the targets received: (target, version, time.monotonic(), bytes). A target is a
    webhook channel, or `stores/<location>`: the store group gets one `campaign/<id>/<store>` per store."""

    seen: list[tuple[str, int, float, int]] = field(default_factory=list)

    def saw(self, channel_id: str, entity_key: str, version: int, when: float, size: int) -> None:
        if entity_key == f"campaign/{CAMPAIGN}":
            self.seen.append((channel_id, version, when, size))
        elif entity_key.startswith(f"campaign/{CAMPAIGN}/"):
            self.seen.append((f"{channel_id}/{entity_key.rsplit('/', 1)[1]}", version, when, size))

    def first_at(self, version: int) -> dict[str, float]:
        """When each target first received `version` or newer."""
        out: dict[str, float] = {}
        for target, v, when, _ in self.seen:
            if v >= version:
                out[target] = min(when, out.get(target, when))
        return out

    def size(self) -> int:
        return max((size for *_, size in self.seen), default=0)


async def _channels(suite: Suite, stores: int, receipts: _Receipts) -> list[FakeMarketplace]:
    operator = channel_operations_service_pb2_grpc.ChannelOperationsServiceStub(suite.channel("gateway"))
    markets = []
    for channel_id, kind in WEBHOOK_CHANNELS:
        market = FakeMarketplace(b"")
        url = await market.start()
        created = await operator.CreateChannel(
            ops.CreateChannelRequest(
                request_id=f"c-{channel_id}",
                channel=channel_pb2.Channel(
                    channel_id=channel_id,
                    display_name=channel_id.upper(),
                    kind=kind,
                    location_ids=[_store(0)],  # ships from one DC-like store; campaigns are not per location
                    active=True,
                    delivery=channel_pb2.DeliveryPolicy(webhook=channel_pb2.WebhookTarget(url=url)),
                ),
            )
        )
        market.secret = created.webhook_signing_secret.encode()
        markets.append(market)
    await operator.CreateChannel(
        ops.CreateChannelRequest(
            request_id=f"c-{STORE_CHANNEL}",
            channel=channel_pb2.Channel(
                channel_id=STORE_CHANNEL,
                display_name="Stores",
                kind=channel_pb2.CHANNEL_KIND_POS_STORE_GROUP,
                location_ids=[_store(i) for i in range(stores)],
                active=True,
                delivery=channel_pb2.DeliveryPolicy(nats_subject=channel_pb2.NatsSubjectTarget()),
            ),
        )
    )

    async def store_received(msg: Msg) -> None:
        change = changes_pb2.ChannelChange.FromString(msg.data)
        receipts.saw(STORE_CHANNEL, change.entity_key, change.version, time.monotonic(), len(msg.data))

    assert suite.nc is not None
    await suite.nc.subscribe(f"retail.delivery.v1.{STORE_CHANNEL}.>", cb=store_received)
    return markets


def _market_receipts(markets: list[FakeMarketplace], receipts: _Receipts) -> None:
    for (channel_id, _), market in zip(WEBHOOK_CHANNELS, markets, strict=True):
        for r in market.received:
            receipts.saw(channel_id, r.entity_key, r.version, r.at, 0)


# --- the campaign -------------------------------------------------------------------------------------


async def _approved_campaign(
    suite: Suite, campaign_id: str, skus: int, guardrail: int = 0
) -> tuple[promotion_service_pb2_grpc.PromotionServiceAsyncStub, promo_pb.ApproveCampaignResponse]:
    """Created by the operator, submitted, approved by the approver (both validate it)."""
    operator: promotion_service_pb2_grpc.PromotionServiceAsyncStub = (
        promotion_service_pb2_grpc.PromotionServiceStub(suite.channel("promotion"))
    )
    approver = promotion_service_pb2_grpc.PromotionServiceStub(suite.channel("promotion", APPROVER))
    per = -(-skus // PROMOTIONS)
    promotions = [
        percent_promotion_pb(
            f"{campaign_id}-{p}", str(10 + p), [_sku(s) for s in range(p * per, min(skus, (p + 1) * per))]
        )
        for p in range(PROMOTIONS)
        if p * per < skus
    ]
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    campaign = campaign_pb(
        campaign_id,
        promotions=promotions,
        channels=CHANNELS,
        start=start,
        end=start + timedelta(hours=48),
        display_name="Weekend promotion",
        region_ids=[f"region-{r}" for r in range(REGIONS)],
        stock_guardrail=campaign_pb2.StockGuardrail(min_available_to_sell=guardrail),
    )
    created = (
        await operator.CreateCampaign(
            promo_pb.CreateCampaignRequest(request_id=f"create-{campaign_id}", campaign=campaign)
        )
    ).campaign
    submitted = await operator.SubmitCampaign(
        promo_pb.SubmitCampaignRequest(
            request_id=f"submit-{campaign_id}", campaign_id=campaign_id, etag=created.etag
        )
    )
    approved = await approver.ApproveCampaign(
        promo_pb.ApproveCampaignRequest(
            request_id=f"approve-{campaign_id}", campaign_id=campaign_id, etag=submitted.campaign.etag
        )
    )
    return operator, approved


async def _guardrail_launch(suite: Suite, skus: int, stores: int) -> Row:
    """LaunchCampaign of a campaign with a stock guardrail over `skus` SKUs: one threshold rule per
    SKU x store x channel, each registered with inventory by its own call before the commit."""
    campaign_id = "guarded"
    promotion, approved = await _approved_campaign(suite, campaign_id, skus, guardrail=5)
    await suite.settled()
    started = time.monotonic()
    with sampled({n: p.pid for n, p in suite.processes.items()}, f"guardrail-{skus}x{stores}"):
        await promotion.LaunchCampaign(
            promo_pb.LaunchCampaignRequest(
                request_id=f"launch-{campaign_id}", campaign_id=campaign_id, etag=approved.campaign.etag
            )
        )
    elapsed = time.monotonic() - started
    rules = int(  # the rules inventory holds for the campaign: one CreateThresholdRule call each
        await suite.pools["inventory"].fetchval(
            "select count(*) from threshold_rules where owner_id = $1", campaign_id
        )
    )
    # rules per SKU and store follow the stores' channels (only channels that sell there are watched)
    full = round(rules / (skus * stores) * FULL_SKUS * FULL_STORES)
    _say(f"guarded launch: {rules:,} rules in {elapsed:.1f}s")
    hours = full / (rules / elapsed) / 3600
    return Row(
        f"guardrail rules/s registered by LaunchCampaign ({skus} SKUs x {stores} stores x selling channels)",
        rules / elapsed,
        note=f"{rules:,} rules in {elapsed:.1f}s; at full size ({full:,} rules) ~{hours:,.0f} h",
    )


def _targets(stores: int) -> set[str]:
    """Every delivery target: each webhook channel, and each store of the store group (per store)."""
    return {c for c, _ in WEBHOOK_CHANNELS} | {f"{STORE_CHANNEL}/{_store(i)}" for i in range(stores)}


def _all_acknowledged(deployment: deployment_pb2.CampaignDeployment, version: int, stores: int) -> bool:
    acked = {
        f"{t.channel_id}/{t.location_id}" if t.location_id else t.channel_id
        for t in deployment.targets
        if t.state == deployment_pb2.TARGET_STATE_ACKNOWLEDGED and t.delivered_version >= version
    }
    return acked >= _targets(stores)


async def _launch(
    suite: Suite,
    promotion: promotion_service_pb2_grpc.PromotionServiceAsyncStub,
    etag: str,
    markets: list[FakeMarketplace],
    receipts: _Receipts,
    stores: int,
) -> tuple[deployment_pb2.CampaignDeployment, int, float, float, float]:
    """The measured window: LaunchCampaign, then poll the deployment view until all acknowledged.
    Returns (deployment, launched version, t0, launch returned, all acknowledged) in time.monotonic()."""
    t0 = time.monotonic()
    launched = await promotion.LaunchCampaign(
        promo_pb.LaunchCampaignRequest(request_id="launch", campaign_id=CAMPAIGN, etag=etag)
    )
    t_launched = time.monotonic()
    version = launched.campaign.version
    request = promo_pb.GetCampaignDeploymentRequest(campaign_id=CAMPAIGN)
    while True:
        deployment = (await promotion.GetCampaignDeployment(request)).deployment
        if _all_acknowledged(deployment, version, stores):
            return deployment, version, t0, t_launched, time.monotonic()
        if time.monotonic() - t0 > ACK_TIMEOUT:
            _market_receipts(markets, receipts)
            for name, tail in suite.log_tails().items():
                _say(f"--- {name} log tail ---\n{tail}")
            ledger = await suite.pools["gateway"].fetch(
                "select channel_id, entity_key, projected_version, delivered_version,"
                " acknowledged_version, due_at, attempts, last_error from delivery_ledger"
            )
            _say(f"gateway ledger: {[dict(r) for r in ledger]}")
            raise TimeoutError(
                f"not every channel acknowledged within {ACK_TIMEOUT:g}s"
                f" (received: {sorted(receipts.first_at(version))}): {deployment}"
            )
        await asyncio.sleep(POLL)


# --- the run ------------------------------------------------------------------------------------------


async def _raw_rate(suite: Suite, count: int, size: int, rounds: int = 5) -> float:
    await suite.js.add_stream(name="RAWFANOUT", subjects=["rawfanout.>"])
    payload = b"x" * max(size, 1)
    rates = [await raw_publish(suite.js, f"rawfanout.{n}", count, payload) for n in range(rounds)]
    return statistics.median(rates)


def _size(scale: float, skus: int | None, stores: int | None) -> tuple[int, int]:
    return (
        skus or max(PROMOTIONS, round(FULL_SKUS * scale)),
        stores or max(REGIONS, round(FULL_STORES * scale)),
    )


async def run_campaign_fanout_bench(
    scale: float | None = None, skus: int | None = None, stores: int | None = None
) -> list[Row]:
    skus, stores = _size(SCALE if scale is None else scale, skus or SKUS, stores or STORES)
    size = f"{skus:,} SKUs x {stores} stores x {len(CHANNELS)} channels"
    suite = Suite({"gateway": {"ALLOW_HTTP_WEBHOOKS": "true"}})  # the fake endpoints are http://
    markets: list[FakeMarketplace] = []
    receipts = _Receipts()
    try:
        started = time.monotonic()
        await suite.start()
        _say(f"{size}: services up in {time.monotonic() - started:.0f}s; seeding")
        t = time.monotonic()
        stocked = skus if STOCK_ALL else min(GUARDRAIL_SKUS, skus)
        await _seed_inventory(suite, stocked, stores)
        _say(f"stock: {stocked * stores:,} positions ({stocked:,} SKUs) in {time.monotonic() - t:.0f}s")
        t = time.monotonic()
        await _seed_pricing(suite, skus)
        _say(f"prices: {skus:,} products and prices in {time.monotonic() - t:.0f}s")
        t = time.monotonic()
        await suite.settled()
        _say(f"settled (every outbox relayed, every consumer caught up) in {time.monotonic() - t:.0f}s")
        markets = await _channels(suite, stores, receipts)
        promotion, approved = await _approved_campaign(suite, CAMPAIGN, skus)
        await suite.settled()  # the draft/submitted/approved versions' deliveries are done too
        _say(f"campaign approved; seeding took {time.monotonic() - started:.0f}s in all; launching")

        with sampled({n: p.pid for n, p in suite.processes.items()}, f"fanout-{skus}x{stores}"):
            deployment, version, t0, t_launched, t_acked = await _launch(
                suite, promotion, approved.campaign.etag, markets, receipts, stores
            )
        _market_receipts(markets, receipts)
        received = receipts.first_at(version)
        if set(received) != _targets(stores):
            missing = sorted(_targets(stores) - set(received))
            raise RuntimeError(f"deployment says acknowledged but these never received it: {missing[:10]}")
        deliveries = len(received)
        violations = sum(len(m.violations) for m in markets)
        raw = await _raw_rate(suite, deliveries, receipts.size() or 256)
        total = t_acked - t0
        _say(
            f"launch RPC {t_launched - t0:.3f}s, last channel received {max(received.values()) - t0:.3f}s,"
            f" deployment view all acknowledged {total:.3f}s; raw publish {raw:,.0f}/s"
        )
        rows = [
            Row(
                f"LaunchCampaign -> all {deliveries} targets acknowledged (deployment view; {size})",
                total * 1000,
                " ms",
                note=f"deployment state {deployment_pb2.DeploymentState.Name(deployment.state)}",
            ),
            Row(
                "  of which the LaunchCampaign call (validation, guardrails, commit)",
                (t_launched - t0) * 1000,
                " ms",
            ),
            Row("  launch -> last target received the campaign", (max(received.values()) - t0) * 1000, " ms"),
            Row(
                f"campaign deliveries/s ({deliveries} acknowledged) vs raw JetStream publish of {deliveries}",
                deliveries / total,
                raw=raw,
                note=f"{violations} order/dedupe violations at the webhooks",
            ),
        ]
        if GUARDRAIL_SKUS:
            guarded = min(GUARDRAIL_SKUS, skus)
            try:
                rows.append(await _guardrail_launch(suite, guarded, stores))
            except grpc.aio.AioRpcError as error:  # the fan-out figures above still stand
                _say(f"guarded launch failed: {error.code().name}: {error.details()}")
                rows.append(
                    Row(
                        f"guarded LaunchCampaign ({guarded} SKUs x {stores} stores) FAILED",
                        float("nan"),
                        note=f"{error.code().name}: {error.details()}"[:120],
                    )
                )
        return rows
    finally:
        for market in markets:
            await market.close()
        await suite.close()


def _print(rows: list[Row]) -> None:
    for r in rows:
        ratio = f"  raw {r.raw:,.1f}{r.unit}  ratio {r.figure / r.raw:.4f}" if r.raw else ""
        print(f"{r.name:<100} {r.figure:>10,.3f}{r.unit}{ratio}  {r.note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=SCALE, help="fraction of 10,000 SKUs x 600 stores")
    parser.add_argument("--skus", type=int, default=None, help="SKU count (overrides the scale)")
    parser.add_argument("--stores", type=int, default=None, help="store count (overrides the scale)")
    args = parser.parse_args()
    _print(asyncio.run(run_campaign_fanout_bench(args.scale, args.skus, args.stores)))
