"""`retail-credentials` / `python -m retail_common.auth`: create, revoke, rotate and list API keys.

`create` and `rotate` print the new key exactly once on stdout; nothing else ever shows it. The
credentials table is created first if missing (the auth migration source only), so the first
operator credential can be made before the service has ever started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import SecretStr

from retail_common.auth import AUTH_MIGRATIONS
from retail_common.auth.store import CredentialStore, IssuedCredential
from retail_common.context import PrincipalKind
from retail_common.db import migrate

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail-credentials", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="the service's database (default: $DATABASE_URL)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a key; prints it once")
    create.add_argument("--kind", required=True, choices=[kind.value for kind in PrincipalKind])
    create.add_argument("--id", required=True, dest="principal_id", help="channel id, operator id or service")
    create.add_argument("--role", action="append", default=[], dest="roles", help="repeatable")
    create.add_argument("--expires-in-days", type=float, default=None)
    create.add_argument("--description", default="")
    register = commands.add_parser(
        "register", help="accept a key issued elsewhere, read from stdin (never from the command line)"
    )
    register.add_argument("--kind", required=True, choices=[kind.value for kind in PrincipalKind])
    register.add_argument("--id", required=True, dest="principal_id")
    register.add_argument("--role", action="append", default=[], dest="roles", help="repeatable")
    revoke = commands.add_parser("revoke", help="revoke a key by its key id")
    revoke.add_argument("key_id")
    rotate = commands.add_parser("rotate", help="issue a replacement; the old key works for --overlap-hours")
    rotate.add_argument("key_id")
    rotate.add_argument("--overlap-hours", type=float, default=24.0)
    listing = commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--id", dest="principal_id", default=None)
    return parser


def _print_issued(issued: IssuedCredential) -> None:
    print(f"key_id: {issued.key_id}", file=sys.stderr)
    print(f"principal: {issued.principal.kind.value}:{issued.principal.id}", file=sys.stderr)
    print("the key below is shown only now; store it in the caller's secret store:", file=sys.stderr)
    print(issued.key.get_secret_value())


async def _run(args: argparse.Namespace) -> int:
    await migrate(args.database_url, [AUTH_MIGRATIONS])
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=2)
    try:
        store = CredentialStore(pool)
        if args.command == "create":
            expires_at = None
            if args.expires_in_days is not None:
                expires_at = datetime.now(UTC) + timedelta(days=args.expires_in_days)
            _print_issued(
                await store.create(
                    args.principal_id,
                    PrincipalKind(args.kind),
                    args.roles,
                    expires_at=expires_at,
                    description=args.description,
                )
            )
        elif args.command == "register":
            key = SecretStr(sys.stdin.readline().strip())
            try:
                issued = await store.register(key, args.principal_id, PrincipalKind(args.kind), args.roles)
            except ValueError as exc:
                print(str(exc), file=sys.stderr)
                return 1
            print(f"registered {issued.key_id} for {args.kind}:{args.principal_id}", file=sys.stderr)
        elif args.command == "revoke":
            if not await store.revoke(args.key_id):
                print(f"no active credential {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}", file=sys.stderr)
        elif args.command == "rotate":
            try:
                _print_issued(await store.rotate(args.key_id, timedelta(hours=args.overlap_hours)))
            except LookupError as exc:
                print(str(exc), file=sys.stderr)
                return 1
        else:
            now = datetime.now(UTC)
            for info in await store.list_credentials(args.principal_id):
                state = "active" if info.active_at(now) else ("revoked" if info.revoked_at else "expired")
                expires = info.expires_at.isoformat() if info.expires_at else "-"
                roles = ",".join(sorted(info.principal.roles)) or "-"
                print(
                    f"{info.key_id}  {info.principal.kind.value:<8} {info.principal.id:<20} {state:<8}"
                    f" roles={roles} expires={expires}"
                )
        return 0
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.database_url:
        print("--database-url (or DATABASE_URL) is required", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))
