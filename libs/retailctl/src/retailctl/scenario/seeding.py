"""Step 1: the estate and the catalogue. 600 stores across regions and time zones (inventory), products
and a base price list approved through a change set (pricing), stock snapshots for every store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

from retail.common.v1 import money_pb2, time_window_pb2
from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import location_pb2, stock_pb2
from retail.pricing.v1 import change_sets_pb2, price_lists_pb2, products_pb2, resolution_pb2
from retail.pricing.v1 import pricing_service_pb2 as pricing
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import expect, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import REGIONS, Plan
from retailctl.scenario.wire import amount, money, timestamp

__all__ = ["seed"]

_PARALLEL = 24  # concurrent location upserts: enough to keep the service busy, few enough for its pool


async def _locations(plan: Plan, clients: Clients) -> None:
    gate = asyncio.Semaphore(_PARALLEL)

    async def upsert(index: int, store: str) -> None:
        region, zone = plan.region_of(index)
        location = location_pb2.Location(
            location_id=store,
            kind=location_pb2.LOCATION_KIND_STORE,
            display_name=f"Store {store[-3:]} ({region})",
            region_id=region,
            time_zone=zone,
            channel_ids=plan.channels,
            active=True,
        )
        request = inv.UpsertLocationRequest(request_id=f"demo-{plan.run}-{store}", location=location)
        async with gate:
            await retrying(lambda: clients.author.inventory.UpsertLocation(request), f"upsert {store}")

    await asyncio.gather(*(upsert(i, s) for i, s in enumerate(plan.store_ids)))


async def _count_locations(plan: Plan, clients: Clients) -> dict[str, int]:
    """Stores per region serving this run's channels, as inventory lists them."""
    per_region: dict[str, int] = {}
    token = ""
    while True:
        request = inv.ListLocationsRequest(page_size=1000, page_token=token)
        page = await retrying(
            partial(clients.author.inventory.ListLocations, request),
            "list locations",
        )
        for loc in page.locations:
            if set(plan.channels) <= set(loc.channel_ids):
                per_region[loc.region_id] = per_region.get(loc.region_id, 0) + 1
        token = page.next_page_token
        if not token:
            return per_region


async def _catalogue(plan: Plan, clients: Clients) -> None:
    products = [
        products_pb2.Product(
            sku=sku,
            title=sku.split("-")[0].title(),
            status=products_pb2.PRODUCT_STATUS_ACTIVE,
            tax_class="standard",
            category_ids=["apparel", plan.category],
        )
        for sku in plan.skus
    ]
    await retrying(
        lambda: clients.author.pricing.BatchUpsertProducts(
            pricing.BatchUpsertProductsRequest(request_id=f"demo-{plan.run}-products", products=products)
        ),
        "upsert products",
    )
    price_list = price_lists_pb2.PriceList(
        price_list_id=plan.price_list_id,
        display_name=f"Base prices ({plan.run})",
        currency_code=plan.currency,
        kind=price_lists_pb2.PRICE_LIST_KIND_BASE,
        tax_treatment=money_pb2.TAX_TREATMENT_INCLUDED,
        status=price_lists_pb2.PRICE_LIST_STATUS_ACTIVE,
    )
    await retrying(
        lambda: clients.author.pricing.CreatePriceList(
            pricing.CreatePriceListRequest(request_id=f"demo-{plan.run}-list", price_list=price_list)
        ),
        "create price list",
    )
    start = time_window_pb2.TimeWindow(
        absolute=time_window_pb2.AbsoluteWindow(start_time=timestamp(datetime.now(UTC)))
    )
    items = [
        change_sets_pb2.ChangeSetItem(
            add_entry=change_sets_pb2.AddPriceEntry(
                price_list_id=plan.price_list_id, sku=sku, amount=money(price, plan.currency), window=start
            )
        )
        for sku, price in plan.skus.items()
    ]
    created = await retrying(
        lambda: clients.author.pricing.CreateChangeSet(
            pricing.CreateChangeSetRequest(
                request_id=f"demo-{plan.run}-cs",
                change_set=change_sets_pb2.ChangeSet(description="weekend base prices", items=items),
            )
        ),
        "create change set",
    )
    cs = created.change_set
    submitted = await retrying(
        lambda: clients.author.pricing.SubmitChangeSet(
            pricing.SubmitChangeSetRequest(
                request_id=f"demo-{plan.run}-cs-submit", change_set_id=cs.change_set_id, etag=cs.etag
            )
        ),
        "submit change set",
    )
    approved = await retrying(
        lambda: clients.approver.pricing.ApproveChangeSet(
            pricing.ApproveChangeSetRequest(
                request_id=f"demo-{plan.run}-cs-approve",
                change_set_id=cs.change_set_id,
                etag=submitted.change_set.etag,
            )
        ),
        "approve change set",
    )
    expect(approved.change_set.state, change_sets_pb2.CHANGE_SET_STATE_APPROVED, "change set state")
    expect(
        approved.change_set.author_id != approved.change_set.reviewer_id, True, "approver differs from author"
    )


async def _prices(plan: Plan, clients: Clients) -> dict[str, str]:
    """Resolved gross price of each SKU for the web channel at the first store, as pricing answers."""
    out = {}
    for sku in plan.skus:
        query = resolution_pb2.PriceQuery(
            sku=sku,
            currency_code=plan.currency,
            channel_id=plan.web,
            location_id=plan.store_ids[0],
            quantity=1,
        )
        resolved = await retrying(
            partial(clients.author.pricing.ResolvePrice, pricing.ResolvePriceRequest(query=query)),
            f"resolve {sku}",
        )
        out[sku] = f"{amount(resolved.price.price.gross):.2f}"
    return out


async def _stock(plan: Plan, clients: Clients) -> None:
    as_of = timestamp(datetime.now(UTC))
    entries = [
        stock_pb2.StockSnapshotEntry(sku=sku, location_id=store, on_hand=plan.on_hand, as_of_time=as_of)
        for sku in plan.skus
        for store in plan.store_ids
    ]
    request_id = f"demo-{plan.run}-snapshot"
    batches = [entries[i : i + 1000] for i in range(0, len(entries), 1000)]

    async def stream() -> inv.ImportStockSnapshotsResponse:
        requests = (inv.ImportStockSnapshotsRequest(request_id=request_id, entries=b) for b in batches)
        response: inv.ImportStockSnapshotsResponse = await clients.author.inventory.ImportStockSnapshots(
            requests
        )
        return response

    answer = await retrying(stream, "import stock snapshots")
    expect(answer.received_count, len(entries), "snapshot entries received")


async def _positions(plan: Plan, clients: Clients) -> set[int]:
    keys = [inv.StockKey(sku=sku, location_id=store) for sku in plan.skus for store in plan.store_ids]
    on_hand: set[int] = set()
    count = 0
    for i in range(0, len(keys), 1000):
        batch = keys[i : i + 1000]
        page = await retrying(
            partial(
                clients.author.inventory.BatchGetStockPositions, inv.BatchGetStockPositionsRequest(keys=batch)
            ),
            "read stock positions",
        )
        count += len(page.positions)
        on_hand |= {p.on_hand for p in page.positions}
    expect(count, len(keys), "stock positions")
    return on_hand


async def seed(plan: Plan, clients: Clients, say: Narrator) -> None:
    say.step(f"Estate: {plan.stores} stores across {len(REGIONS)} regions and time zones (inventory)")
    await _locations(plan, clients)
    per_region = await _count_locations(plan, clients)
    expect(sum(per_region.values()), plan.stores, "stores serving this run's channels")
    zones = dict(REGIONS)
    for region, n in sorted(per_region.items()):
        say.fact(f"{region:<9} {zones[region]:<20} {n} stores")

    say.step(
        "Catalogue and prices: products, a base price list, a change set authored and approved (pricing)"
    )
    await _catalogue(plan, clients)
    prices = await _prices(plan, clients)
    expect(prices, plan.skus, "resolved gross prices")
    for sku, price in prices.items():
        say.fact(f"{sku:<14} {price} {plan.currency} (resolved by pricing, tax included)")

    say.step(f"Stock: snapshots of {len(plan.skus)} SKUs at every store (inventory)")
    await _stock(plan, clients)
    on_hand = await _positions(plan, clients)
    expect(on_hand, {plan.on_hand}, "on-hand at every store")
    say.fact(f"{len(plan.skus) * plan.stores} stock positions, {plan.on_hand} units on hand each")
