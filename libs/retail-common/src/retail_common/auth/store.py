"""Credentials in the service's own database: create (plaintext shown once), revoke, rotate, resolve."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import SecretStr

from retail_common.auth.keys import ParsedKey, generate_key, hash_secret, parse_key, secret_matches
from retail_common.clock import Clock, SystemClock
from retail_common.context import Principal, PrincipalKind

__all__ = ["CredentialInfo", "CredentialStore", "IssuedCredential"]

_COLUMNS = "key_id, principal_id, kind, roles, description, created_at, expires_at, revoked_at, replaced_by"


@dataclass(frozen=True)
class IssuedCredential:
    """A freshly created credential. `key` is the only copy of the plaintext: hand it over, never log it."""

    key_id: str
    key: SecretStr
    principal: Principal
    expires_at: datetime | None


@dataclass(frozen=True)
class CredentialInfo:
    """A stored credential as listed to operators (no secret material)."""

    key_id: str
    principal: Principal
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None

    def active_at(self, instant: datetime) -> bool:
        return (self.revoked_at is None or self.revoked_at > instant) and (
            self.expires_at is None or self.expires_at > instant
        )


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(id=row["principal_id"], kind=PrincipalKind(row["kind"]), roles=frozenset(row["roles"]))


def _info(row: asyncpg.Record) -> CredentialInfo:
    return CredentialInfo(
        key_id=row["key_id"],
        principal=_principal(row),
        description=row["description"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        replaced_by=row["replaced_by"],
    )


@dataclass(frozen=True)
class _Resolved:
    """A key that matched an active credential: who it is, and until when it stays valid by itself.

    `valid_until` is the earlier of expires_at and a revoked_at still in the future (None: no end).
    """

    principal: Principal
    valid_until: datetime | None


ChangeListener = Callable[[str], None]


class CredentialStore:
    """API keys of one service's callers (table `auth_credentials`, migration source AUTH_MIGRATIONS).

    No cache here: `resolve` always reads the database, so a revocation takes effect on the next call.
    Services resolve through `CredentialCache` (auth/_cache.py), which is invalidated by the table's
    NOTIFY trigger and, for changes made through this store, synchronously by `add_change_listener`.
    """

    def __init__(self, pool: asyncpg.Pool[Any], clock: Clock | None = None) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()
        self._change_listeners: list[ChangeListener] = []

    def add_change_listener(self, listener: ChangeListener) -> None:
        """Call `listener(key_id)` after this store committed a change to that key (same process)."""
        self._change_listeners.append(listener)

    def _changed(self, *key_ids: str) -> None:
        for key_id in key_ids:
            for listener in self._change_listeners:
                listener(key_id)

    async def create(
        self,
        principal_id: str,
        kind: PrincipalKind,
        roles: Iterable[str] = (),
        *,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> IssuedCredential:
        _, key = generate_key()
        return await self._insert(
            self._pool, key, principal_id, kind, sorted(set(roles)), expires_at, description
        )

    async def register(
        self,
        key: SecretStr,
        principal_id: str,
        kind: PrincipalKind,
        roles: Iterable[str] = (),
        *,
        description: str = "",
    ) -> IssuedCredential:
        """Accept a key issued elsewhere (e.g. one service credential presented to several services).

        Idempotent for the same key and principal (its roles become the given ones); a key id already
        bound to another secret or principal is refused with ValueError.
        """
        parsed = parse_key(key.get_secret_value())
        if parsed is None:
            raise ValueError("not an API key of the form rk_<key id>_<secret>")
        existing = await self._pool.fetchrow(
            "SELECT secret_sha256, principal_id, kind FROM auth_credentials WHERE key_id = $1", parsed.key_id
        )
        if existing is not None:
            same = (
                secret_matches(parsed.secret, existing["secret_sha256"])
                and existing["principal_id"] == principal_id
                and existing["kind"] == kind.value
            )
            if not same:
                raise ValueError(f"key id {parsed.key_id} is already registered for another credential")
            role_list = sorted(set(roles))
            await self._pool.execute(
                "UPDATE auth_credentials SET roles = $2 WHERE key_id = $1", parsed.key_id, role_list
            )
            self._changed(parsed.key_id)
            principal = Principal(id=principal_id, kind=kind, roles=frozenset(role_list))
            return IssuedCredential(key_id=parsed.key_id, key=key, principal=principal, expires_at=None)
        return await self._insert(self._pool, key, principal_id, kind, sorted(set(roles)), None, description)

    async def _insert(
        self,
        db: asyncpg.Pool[Any] | asyncpg.pool.PoolConnectionProxy[Any],
        key: SecretStr,
        principal_id: str,
        kind: PrincipalKind,
        roles: list[str],
        expires_at: datetime | None,
        description: str,
    ) -> IssuedCredential:
        if not principal_id:
            raise ValueError("principal_id must not be empty")
        parsed = parse_key(key.get_secret_value())
        assert parsed is not None  # callers pass generated or validated keys
        key_id = parsed.key_id
        await db.execute(
            "INSERT INTO auth_credentials (key_id, secret_sha256, principal_id, kind, roles, description,"
            " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            key_id,
            hash_secret(parsed.secret),
            principal_id,
            kind.value,
            roles,
            description,
            self._clock.now(),
            expires_at,
        )
        principal = Principal(id=principal_id, kind=kind, roles=frozenset(roles))
        return IssuedCredential(key_id=key_id, key=key, principal=principal, expires_at=expires_at)

    async def revoke(self, key_id: str) -> bool:
        """Revoke one key now; False if it does not exist or was already revoked."""
        status = await self._pool.execute(
            "UPDATE auth_credentials SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
            key_id,
            self._clock.now(),
        )
        self._changed(key_id)
        return status.endswith(" 1")

    async def rotate(self, key_id: str, overlap: timedelta) -> IssuedCredential:
        """Issue a new key for the same principal; the old one keeps working for `overlap`, then expires."""
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM auth_credentials WHERE key_id = $1 FOR UPDATE", key_id
            )
            if row is None or not _info(row).active_at(now):
                raise LookupError(f"no active credential {key_id}")
            old = _info(row)
            issued = await self._insert(
                conn,
                generate_key()[1],
                old.principal.id,
                old.principal.kind,
                sorted(old.principal.roles),
                None,
                old.description,
            )
            await conn.execute(
                "UPDATE auth_credentials SET replaced_by = $2,"
                " expires_at = LEAST(COALESCE(expires_at, 'infinity'), $3) WHERE key_id = $1",
                key_id,
                issued.key_id,
                now + overlap,
            )
        self._changed(key_id, issued.key_id)
        return issued

    async def resolve(self, key: str) -> Principal | None:
        """The principal a presented key stands for, or None if unknown, wrong, revoked or expired."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        resolved = await self._resolve_parsed(parsed)
        return None if resolved is None else resolved.principal

    async def _resolve_parsed(self, parsed: ParsedKey) -> _Resolved | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS}, secret_sha256 FROM auth_credentials WHERE key_id = $1", parsed.key_id
        )
        if row is None or not secret_matches(parsed.secret, row["secret_sha256"]):
            return None
        info = _info(row)
        if not info.active_at(self._clock.now()):
            return None
        ends = [instant for instant in (info.expires_at, info.revoked_at) if instant is not None]
        return _Resolved(principal=info.principal, valid_until=min(ends, default=None))

    async def list_credentials(self, principal_id: str | None = None) -> list[CredentialInfo]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM auth_credentials WHERE $1::text IS NULL OR principal_id = $1"
            " ORDER BY principal_id, created_at",
            principal_id,
        )
        return [_info(row) for row in rows]
