"""Step: orders from every channel reserve stock through the gateway with the channel's own API key;
inventory's positions and each channel's available-to-sell are read back exactly."""

from __future__ import annotations

from functools import partial

from google.protobuf.duration_pb2 import Duration

from retail.channel.v1 import channel_gateway_service_pb2 as gw
from retail.channel.v1 import offers_pb2
from retail.inventory.v1 import availability_pb2, reservation_pb2
from retail.inventory.v1 import inventory_service_pb2 as inv
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import expect, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan

__all__ = ["order_lines", "place_orders", "stock_figures"]


def order_lines(plan: Plan) -> list[tuple[str, str]]:
    """(sku, store) of each order's lines: the guarded SKU at one store, jeans at another."""
    skus = list(plan.skus)
    return [(skus[0], plan.order_stores[0]), (skus[1], plan.order_stores[1])]


async def stock_figures(plan: Plan, clients: Clients) -> dict[str, tuple[int, int, int]]:
    """'sku@store' -> (on hand, reserved, ATS of the web channel) for the ordered lines."""
    out = {}
    for sku, store in order_lines(plan):
        positions = await retrying(
            partial(
                clients.author.inventory.BatchGetStockPositions,
                inv.BatchGetStockPositionsRequest(keys=[inv.StockKey(sku=sku, location_id=store)]),
            ),
            "read positions",
        )
        p = positions.positions[0]
        ats = await retrying(
            partial(
                clients.author.inventory.GetAvailability,
                inv.GetAvailabilityRequest(
                    sku=sku, channel_id=plan.web, scope=availability_pb2.AvailabilityScope(location_id=store)
                ),
            ),
            "read availability",
        )
        out[f"{sku}@{store}"] = (p.on_hand, p.reserved_total, ats.availability.available_to_sell)
    return out


async def place_orders(plan: Plan, clients: Clients, say: Narrator) -> None:
    say.step("Orders from every channel reserve stock through the gateway (each with its own API key)")
    lines = [
        offers_pb2.ReserveLine(sku=s, location_id=loc, quantity=plan.order_units)
        for s, loc in order_lines(plan)
    ]
    for channel in plan.channels:
        request = gw.ReserveStockRequest(
            reservation_id=f"order-{plan.run}-{channel}", lines=lines, ttl=Duration(seconds=3600)
        )
        answer = await retrying(
            partial(clients.channel(channel).ReserveStock, request), f"reserve for {channel}"
        )
        r = answer.reservation
        expect(
            (r.channel_id, r.state),
            (channel, reservation_pb2.RESERVATION_STATE_ACTIVE),
            f"reservation of {channel}",
        )
        held = sum(line.held_quantity for line in r.lines)
        expect(held, plan.order_units * len(lines), f"units held for {channel}")
        say.fact(f"{channel:<14} reservation {r.reservation_id}: {held} units held")
    listed = await retrying(
        lambda: clients.author.inventory.ListReservations(
            inv.ListReservationsRequest(page_size=1000, state=reservation_pb2.RESERVATION_STATE_ACTIVE)
        ),
        "list reservations",
    )
    mine = sorted(
        r.channel_id for r in listed.reservations if r.reservation_id.startswith(f"order-{plan.run}-")
    )
    expect(mine, sorted(plan.channels), "active reservations per channel")
    reserved = plan.order_units * len(plan.channels)
    expected = {
        f"{s}@{loc}": (plan.on_hand, reserved, plan.on_hand - reserved) for s, loc in order_lines(plan)
    }
    figures = await stock_figures(plan, clients)
    expect(figures, expected, "on hand / reserved / ATS after the orders")
    for key, (on_hand, held, ats) in figures.items():
        say.fact(f"{key}: on hand {on_hand}, reserved {held}, available to sell {ats}")
    offers = await retrying(
        lambda: clients.channel(plan.app).GetOffers(
            gw.GetOffersRequest(
                location_id=plan.order_stores[0], skus=list(plan.skus), currency_code=plan.currency
            )
        ),
        "offers",
    )
    first = offers.offers[0]
    expect(first.available_to_sell, plan.on_hand - reserved, f"{plan.app}'s offer ATS")
    say.fact(
        f"{plan.app} sees {first.sku} at {first.location_id}: ATS {first.available_to_sell}, "
        f"promotions {list(first.promotion_ids)}"
    )
