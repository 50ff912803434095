"""Command line for the migration runner (`python -m retail_common.db.migrate_cli`).

Exit codes: 0 done / nothing pending, 1 pending migrations found with --check, 2 error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from retail_common.db.audit import AUDIT_MIGRATIONS
from retail_common.db.migrations import MigrationError, MigrationSource, migrate, pending_migrations

__all__ = ["main"]


def _source(text: str) -> MigrationSource:
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return MigrationSource(name, Path(directory))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retail_common.db.migrate_cli", description="Apply or check SQL migrations."
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL"
    )
    parser.add_argument(
        "--source", dest="sources", type=_source, action="append", default=[], metavar="NAME=DIR"
    )
    parser.add_argument("--with-audit", action="store_true", help=f"include {AUDIT_MIGRATIONS.name}")
    parser.add_argument("--check", action="store_true", help="list pending migrations; exit 1 if any")
    return parser


async def _run(dsn: str, sources: list[MigrationSource], check: bool) -> int:
    if check:
        pending = await pending_migrations(dsn, sources)
        for f in pending:
            print(f"pending {f.source} {f.version:04d} {f.path}")
        return 1 if pending else 0
    for m in await migrate(dsn, sources):
        print(f"applied {m.source} {m.version:04d}_{m.name} sha256={m.checksum}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    sources: list[MigrationSource] = ([AUDIT_MIGRATIONS] if args.with_audit else []) + args.sources
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required")
    if not sources:
        parser.error("at least one --source NAME=DIR (or --with-audit) is required")
    try:
        return asyncio.run(_run(args.database_url, sources, args.check))
    except (MigrationError, asyncpg.PostgresError, OSError) as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 2
