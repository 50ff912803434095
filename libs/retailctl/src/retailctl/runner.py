"""Runs one command: builds the Suite connection, calls the async command with asyncio.run, and turns
every failure into one line on stderr and an exit code (errors.ExitCode)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from retailctl.connection import SetupError, Suite
from retailctl.errors import CliError, ExitCode, FieldNamer, from_rpc_error
from retailctl.output import Output

__all__ = ["Context", "Handler", "add_common_options", "command", "fail"]

Handler = Callable[[argparse.Namespace], int]


@dataclass
class Context:
    """What a command needs: its arguments, the suite, where to write, and the channels it opened."""

    args: argparse.Namespace
    suite: Suite
    out: Output
    timeout: float
    # The service of the latest channel opened: a failed call is reported as coming from it.
    service: str = ""
    # Set by import commands so field paths of refusals name CSV rows and columns.
    name_field: FieldNamer | None = None
    # What the refused input is called in that case (e.g. the CSV file's path).
    subject: str = "the input"
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def channel(self, service: str) -> grpc.aio.Channel:
        self.service = service
        channel = self.suite.channel(service, timeout=self.timeout)
        self._channels.append(channel)
        return channel

    @property
    def progress_enabled(self) -> bool:
        return not getattr(self.args, "no_progress", False)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)


Command = Callable[[Context], Awaitable[ExitCode]]


def fail(message: str) -> None:
    print(f"retailctl: {message}", file=sys.stderr)


def add_common_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """The same options before or after the command; on subcommands they default to SUPPRESS so a
    value given before the command is not overwritten by the subcommand's default."""
    default: object = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="print one JSON document",
    )
    parser.add_argument(
        "--api-key",
        default=default,
        help="operator key (default: RETAILCTL_API_KEY, else the key `make run` wrote)",
    )
    parser.add_argument(
        "--timeout", type=float, default=default, help="seconds to wait per call (default 30; imports 3600)"
    )


async def _run(command: Command, context: Context) -> int:
    try:
        return int(await command(context))
    except grpc.aio.AioRpcError as error:
        service = context.service or "the service"
        raise from_rpc_error(
            error,
            service=service,
            target=context.suite.targets.get(context.service, "?"),
            timeout=context.timeout,
            name_field=context.name_field,
            subject=context.subject,
        ) from error
    finally:
        await context.close()


def command(run: Command, *, default_timeout: float = 30.0) -> Handler:
    """Wraps an async command into the handler argparse dispatches to (see cli.main)."""

    def handler(args: argparse.Namespace) -> int:
        try:
            suite = Suite.from_env(getattr(args, "api_key", None))
            timeout = getattr(args, "timeout", None) or default_timeout
            context = Context(
                args=args, suite=suite, out=Output(getattr(args, "json", False)), timeout=timeout
            )
            return asyncio.run(_run(run, context))
        except SetupError as error:
            fail(str(error))
            return ExitCode.USAGE
        except CliError as error:
            fail(error.message)
            return error.exit_code
        except KeyboardInterrupt:
            fail("interrupted")
            return 130
        except BrokenPipeError:
            # The reader of stdout went away (`retailctl ... | head`): stop quietly, and keep the
            # interpreter from failing again while flushing stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return ExitCode.OK

    return handler
