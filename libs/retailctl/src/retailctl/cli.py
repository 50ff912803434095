"""Entry point: parses the command line and dispatches to one command module per noun.

Every leaf command sets `handler` (parser.set_defaults(handler=fn), fn(args) -> exit code); the
runner module wraps async commands into such handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from retailctl import demo
from retailctl.commands import audit, campaigns, channels, deadletters, prices, products, stock
from retailctl.errors import ExitCode
from retailctl.runner import add_common_options

EPILOG = """\
exit codes: 0 ok; 1 finding (degraded channel, partial deployment, no price); 2 usage or setup;
3 service unreachable or too slow (retry); 4 refused (invalid input, not found, permission,
precondition); 5 internal error in a service.
environment: PRICING_TARGET, INVENTORY_RESERVATION_TARGET, PROMOTION_TARGET, CHANNEL_GATEWAY_TARGET
(host:port), RETAILCTL_API_KEY (else the key `make run` wrote under RETAIL_RUN_DIR or .run/).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailctl",
        description="Operate the retail sync suite.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    campaigns.register(commands)
    channels.register(commands)
    deadletters.register(commands)
    products.register(commands)
    prices.register(commands)
    stock.register(commands)
    audit.register(commands)
    demo.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    return int(handler(args))
