"""Small pieces shared by the command modules: subcommand options, request ids, paging."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from retailctl.runner import Handler, add_common_options

__all__ = [
    "Commands",
    "Paged",
    "add_import_options",
    "add_request_id",
    "leaf",
    "noun",
    "pages",
    "request_id",
]

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


def leaf(group: Commands, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    add_common_options(parser, top_level=False)
    parser.set_defaults(handler=handler)
    return parser


def noun(commands: Commands, name: str, help_text: str) -> Commands:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
    group = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    return group


def request_id(args: argparse.Namespace) -> str:
    """The idempotency key: --request-id makes a retried command safe, else a fresh one per run."""
    given: str | None = getattr(args, "request_id", None)
    return given or f"retailctl-{uuid.uuid4()}"


def add_request_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--request-id",
        help="idempotency key; run again with the same key to retry safely (default: a fresh one)",
    )


def add_import_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="CSV file (UTF-8, header on the first line)")
    add_request_id(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class Paged(Protocol):
    next_page_token: str


P = TypeVar("P", bound=Paged)


async def pages(fetch: Callable[[str], Awaitable[P]], limit: int | None = None) -> AsyncIterator[P]:
    """Every page of a list RPC, following next_page_token (`limit` pages at most when given)."""
    token = ""
    count = 0
    while True:
        page = await fetch(token)
        yield page
        count += 1
        token = page.next_page_token
        if not token or (limit is not None and count >= limit):
            return
