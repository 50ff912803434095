"""Step: the guarded SKU sells down below its guardrail at a few stores (sales recorded in inventory);
the campaign is suspended for that SKU at those stores only, and still applies everywhere else."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from retail.inventory.v1 import inventory_service_pb2 as inv
from retail.inventory.v1 import stock_pb2, threshold_pb2
from retailctl.scenario.board import suspensions
from retailctl.scenario.campaign import expected_sale, sale_prices
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import eventually, expect, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan
from retailctl.scenario.wire import timestamp

__all__ = ["fall_below_guardrail", "low_stock_left"]

LEFT = 5  # units of the guarded SKU left at the low-stock stores (below the guardrail minimum)


def low_stock_left(plan: Plan) -> int:
    return LEFT


async def fall_below_guardrail(plan: Plan, clients: Clients, say: Narrator) -> None:
    sku = plan.guarded_sku
    stores = plan.low_stock_stores
    say.step(f"{sku} sells down below its guardrail ({plan.guardrail_min}) at {len(stores)} stores")
    now = timestamp(datetime.now(UTC))
    sales = [
        stock_pb2.Movement(
            movement_id=f"sale-{plan.run}-{store}",
            sku=sku,
            location_id=store,
            delta=LEFT - plan.on_hand,
            kind=stock_pb2.MOVEMENT_KIND_SALE,
            occur_time=now,
        )
        for store in stores
    ]
    recorded = await retrying(
        lambda: clients.author.inventory.RecordMovements(
            inv.RecordMovementsRequest(request_id=f"demo-{plan.run}-sales", movements=sales)
        ),
        "record sales",
    )
    expect(len(recorded.outcomes), len(stores), "movements recorded")
    for store in stores:
        rules = await retrying(
            partial(
                clients.author.inventory.ListThresholdRules,
                inv.ListThresholdRulesRequest(
                    page_size=1000, campaign_id=plan.campaign_id, sku=sku, location_id=store
                ),
            ),
            "read threshold rules",
        )
        states = {r.channel_id: r.state for r in rules.rules}
        expect(
            states,
            {c: threshold_pb2.THRESHOLD_STATE_BELOW for c in plan.channels},
            f"guardrail rules at {store}",
        )
    say.fact(f"inventory: {len(plan.channels)} guardrail rules BELOW at each of {', '.join(stores)}")
    low = {("LOW_STOCK", "", store, sku) for store in stores}
    got = await eventually(
        lambda: suspensions(plan, clients),
        lambda s: {x for x in s if x[0] == "LOW_STOCK"} == low,
        "low-stock suspensions",
    )
    expect({x for x in got if x[0] == "LOW_STOCK"}, low, "low-stock suspensions")
    say.fact(f"promotion: suspended for {sku} at {', '.join(stores)} only (reason LOW_STOCK)")
    affected = await sale_prices(plan, clients, plan.web, stores[0])
    untouched = await sale_prices(plan, clients, plan.web, plan.store_ids[20])
    expect(affected[sku], expected_sale(plan, sku, live=False), f"{sku} at {stores[0]}")
    other = next(s for s in plan.skus if s != sku)
    expect(affected[other], expected_sale(plan, other, live=True), f"{other} at {stores[0]}")
    expect(untouched[sku], expected_sale(plan, sku, live=True), f"{sku} at {plan.store_ids[20]}")
    say.fact(f"{stores[0]}: {sku} {affected[sku]} (list price), {other} {affected[other]} (still on sale)")
    say.fact(f"{plan.store_ids[20]}: {sku} {untouched[sku]} (still on sale)")
