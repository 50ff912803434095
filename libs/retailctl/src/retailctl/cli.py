"""Entry point: parses the command line and dispatches to one command module per noun."""

from __future__ import annotations

import argparse
import sys

from retailctl import demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retailctl", description="Operate the retail sync suite.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0
