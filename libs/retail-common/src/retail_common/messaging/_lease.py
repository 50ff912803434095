"""A named lease in Postgres, taken and renewed on the database clock.

All contenders compare against one clock (the database's `now()`), so clock skew between hosts cannot
make two holders believe they both hold it. The holder's own view is conservative: it counts its
validity from *before* it sent the renewal, on its monotonic clock, and stops acting once that runs out.
"""

from __future__ import annotations

import contextlib
import time

import asyncpg

from retail_common.db import DATABASE_ERRORS

__all__ = ["Lease"]

_TAKE = """
insert into relay_leases (name, holder, expires_at) values ($1, $2, now() + make_interval(secs => $3))
on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at
where relay_leases.holder = excluded.holder or relay_leases.expires_at < now()
returning holder
"""

_RELEASE = "update relay_leases set expires_at = now() where name = $1 and holder = $2"


class Lease:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], name: str, holder: str, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be > 0")
        self._pool = pool
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self._valid_until = 0.0  # monotonic

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    def remaining(self) -> float:
        return max(0.0, self._valid_until - time.monotonic())

    def due(self) -> bool:
        """Renew once a third of the ttl has passed (two more chances before it lapses)."""
        return self.remaining() < self.ttl * 2 / 3

    async def acquire_or_renew(self) -> bool:
        sent_at = time.monotonic()
        try:
            holder = await self._pool.fetchval(_TAKE, self.name, self.holder, self.ttl, timeout=self.ttl / 3)
        except DATABASE_ERRORS:
            return self.held
        if holder == self.holder:
            self._valid_until = sent_at + self.ttl
            return True
        self._valid_until = 0.0
        return False

    async def release(self) -> None:
        self._valid_until = 0.0
        with contextlib.suppress(*DATABASE_ERRORS):
            await self._pool.execute(_RELEASE, self.name, self.holder, timeout=2.0)
