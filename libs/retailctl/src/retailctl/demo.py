"""`retailctl demo`: drives the weekend-promotion seed scenario against the running suite (`make run`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from retailctl.connection import SetupError, Suite, approver_key
from retailctl.scenario import ScenarioError, new_plan, run_scenario

__all__ = ["register", "run"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo", help="drive the weekend-promotion seed scenario against the running suite"
    )
    parser.add_argument("--stores", type=int, default=600, help="stores in the estate (default 600)")
    parser.add_argument(
        "--start-in",
        type=float,
        default=None,
        help="seconds from defining the campaign to its start (default: enough to launch it first)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        suite = Suite.from_env()
        approver = approver_key()
    except SetupError as exc:
        print(f"retailctl demo: {exc}", file=sys.stderr)
        return 2
    plan = new_plan(stores=args.stores, start_in=args.start_in)
    print(f"Weekend-promotion scenario, run {plan.run}, against {', '.join(suite.targets.values())}")
    try:
        asyncio.run(run_scenario(plan, suite.targets, suite.credential, approver))
    except ScenarioError as exc:
        print(f"\nSCENARIO FAILED: {exc}", file=sys.stderr)
        return 1
    return 0
