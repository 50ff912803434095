"""The seed scenario (DESIGN.md §1) end to end against a running suite, through the services' gRPC APIs
only. Each step narrates what it did and reads every narrated state back; a mismatch raises
ScenarioError. `between` runs after each step (fault tests kill and restart things there)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from pydantic import SecretStr

from retailctl.scenario.board import by_channel, read_board, suspensions
from retailctl.scenario.campaign import define_campaign, go_live
from retailctl.scenario.channels import Marketplaces, register_channels
from retailctl.scenario.clients import Clients
from retailctl.scenario.guardrail import fall_below_guardrail
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.orders import place_orders, stock_figures
from retailctl.scenario.plan import Plan
from retailctl.scenario.recovery import partial_board, recover, settle
from retailctl.scenario.seeding import seed

__all__ = ["Outcome", "run_scenario"]

Hook = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Outcome:
    """The final state, as read back from the services (compared across fault runs)."""

    deployment_state: int
    targets: dict[str, tuple[int, int]]  # channel -> (state, delivered version), board.by_channel
    suspensions: set[tuple[str, str, str, str]]
    stock: dict[str, tuple[int, int, int]]
    channel_health: dict[str, tuple[int, int]]  # channel -> (backlog, dead letters pending)
    marketplace_violations: list[str]
    seconds: float


async def _nothing(_: str) -> None:
    return None


async def run_scenario(
    plan: Plan,
    targets: dict[str, str],
    operator: SecretStr,
    approver: SecretStr,
    *,
    out: TextIO | None = None,
    between: Hook = _nothing,
) -> Outcome:
    started = time.monotonic()
    say = Narrator(out)
    clients = Clients(targets, operator, approver)
    markets = await Marketplaces.start()
    try:
        await seed(plan, clients, say)
        await between("seeded")
        await register_channels(plan, clients, markets, say)
        await between("channels")
        start = await define_campaign(plan, clients, say)
        await between("launched")
        await go_live(plan, clients, say, start)
        await between("live")
        await partial_board(plan, clients, say)
        await between("partial")
        await place_orders(plan, clients, say)
        await between("orders")
        await fall_below_guardrail(plan, clients, say)
        await between("guardrail")
        await recover(plan, clients, markets, say)
        settled = await settle(plan, clients)
        say.fact("gateway: every channel's backlog delivered, no dead letter pending")
        board = await read_board(plan, clients)
        outcome = Outcome(
            deployment_state=board.state,
            targets=by_channel(board),
            suspensions=await suspensions(plan, clients),
            stock=await stock_figures(plan, clients),
            channel_health=settled,
            marketplace_violations=markets.ok.violations + markets.failing.violations,
            seconds=time.monotonic() - started,
        )
        say.step(
            f"Scenario complete in {outcome.seconds:.1f}s: every state above was read back from the services"
        )
        return outcome
    finally:
        await markets.close()
        await clients.close()
