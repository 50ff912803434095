"""Steps: the board while a marketplace fails (PARTIALLY_DEPLOYED, its offer suspended), then the
marketplace recovers and a replay of its dead letters completes the deployment."""

from __future__ import annotations

from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail_channel_gateway.testing import Mode
from retailctl.scenario.board import D, show_board, suspensions, wait_board
from retailctl.scenario.campaign import expected_sale, sale_prices
from retailctl.scenario.channels import Marketplaces
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import ScenarioError, eventually, expect, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan

__all__ = ["partial_board", "recover", "settle"]


async def partial_board(plan: Plan, clients: Clients, say: Narrator) -> None:
    say.step(f"Campaign board: {plan.market_failing} cannot take the campaign")
    board = await wait_board(
        plan,
        clients,
        D.DEPLOYMENT_STATE_PARTIALLY_DEPLOYED,
        (D.TARGET_STATE_SUSPENDED,),
        "board PARTIALLY_DEPLOYED with the failing marketplace SUSPENDED",
    )
    show_board(board, say)
    if not any(t.channel_id == plan.market_failing for t in board.remediation_tasks):
        raise ScenarioError(f"no remediation task for {plan.market_failing}: {board.remediation_tasks}")
    held = await suspensions(plan, clients)
    expect(
        ("CHANNEL_FAILURE", plan.market_failing, "", "") in held,
        True,
        "offer suspended in the failing channel",
    )
    off = await sale_prices(plan, clients, plan.market_failing, plan.store_ids[20])
    on = await sale_prices(plan, clients, plan.market_ok, plan.store_ids[20])
    expect(
        off, {s: expected_sale(plan, s, live=False) for s in plan.skus}, f"prices in {plan.market_failing}"
    )
    expect(on, {s: expected_sale(plan, s, live=True) for s in plan.skus}, f"prices in {plan.market_ok}")
    say.fact(f"offer suspended in {plan.market_failing} (list prices {off}); {plan.market_ok} sells {on}")
    health = await retrying(
        lambda: clients.author.operations.GetChannelHealth(
            ops.GetChannelHealthRequest(channel_id=plan.market_failing)
        ),
        "channel health",
    )
    h = health.health
    say.fact(f"gateway: {plan.market_failing} dead letters {h.dead_letters}, error rate {h.error_rate:.0%}")


async def recover(plan: Plan, clients: Clients, markets: Marketplaces, say: Narrator) -> None:
    say.step(f"{plan.market_failing} recovers; an operator replays its dead letters")
    markets.failing.set_mode(Mode.OK)
    letters = await retrying(
        lambda: clients.author.operations.ListDeadLetters(
            ops.ListDeadLettersRequest(channel_id=plan.market_failing, page_size=1000)
        ),
        "list dead letters",
    )
    keys = sorted({d.entity_key for d in letters.dead_letters})
    if f"campaign/{plan.campaign_id}" not in keys:
        raise ScenarioError(f"the campaign is not among {plan.market_failing}'s dead letters: {keys}")
    say.fact(f"{len(letters.dead_letters)} dead letters, e.g. {', '.join(keys[:3])}")
    replayed = await retrying(
        lambda: clients.author.operations.ReplayDeadLetters(
            ops.ReplayDeadLettersRequest(request_id=f"demo-{plan.run}-replay", channel_id=plan.market_failing)
        ),
        "replay dead letters",
    )
    say.fact(f"replayed {replayed.replayed}")
    board = await wait_board(
        plan,
        clients,
        D.DEPLOYMENT_STATE_DEPLOYED,
        (D.TARGET_STATE_DELIVERED, D.TARGET_STATE_ACKNOWLEDGED),
        "board DEPLOYED after the replay",
    )
    show_board(board, say)
    held = await eventually(
        lambda: suspensions(plan, clients),
        lambda s: not any(x[0] == "CHANNEL_FAILURE" for x in s),
        "channel-failure suspension lifted",
    )
    expect(sorted(x for x in held if x[0] != "LOW_STOCK"), [], "suspensions other than low stock")
    prices = await sale_prices(plan, clients, plan.market_failing, plan.store_ids[20])
    expect(
        prices, {s: expected_sale(plan, s, live=True) for s in plan.skus}, f"prices in {plan.market_failing}"
    )
    entity = f"campaign/{plan.campaign_id}"
    await eventually(
        lambda: _received(markets, entity), lambda got: got, f"{plan.market_failing} received the campaign"
    )
    say.fact(f"{plan.market_failing} received {entity} v{markets.failing.applied[entity]}; sells {prices}")


async def _received(markets: Marketplaces, entity: str) -> bool:
    return entity in markets.failing.applied


async def settle(plan: Plan, clients: Clients) -> dict[str, tuple[int, int]]:
    """Wait until every channel has nothing left to deliver and no dead letter pending; returns
    channel -> (backlog, dead letters), all zero (nothing lost on the way)."""

    async def health() -> dict[str, tuple[int, int]]:
        out = {}
        for channel in plan.channels:
            answer = await clients.author.operations.GetChannelHealth(
                ops.GetChannelHealthRequest(channel_id=channel)
            )
            out[channel] = (answer.health.backlog, answer.health.dead_letters)
        return out

    return await eventually(
        health,
        lambda h: all(v == (0, 0) for v in h.values()),
        "every channel's backlog delivered",
        within=120,
    )
