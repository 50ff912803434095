"""`retailctl demo`: registers the command that drives the seed scenario (owned by the scenario work)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("demo", help="drive the weekend-promotion seed scenario against the running suite")
