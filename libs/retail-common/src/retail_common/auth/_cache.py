"""Per-process cache of resolved API keys, invalidated by Postgres LISTEN/NOTIFY.

Only positive results are cached: (key id -> keyed digest of the secret, principal, valid_until,
loaded_at). A hit needs the presented secret's digest to match, the credential still valid by the
injected clock (expires_at, or a revoked_at set in the future), and the entry younger than `max_age`
(a backstop only: invalidation is by notification). LRU-bounded to `max_entries`.

Invalidation: migration 0002 makes every INSERT/UPDATE/DELETE (TRUNCATE: '*') of `auth_credentials`
NOTIFY `retail_auth_credentials` with the key id at commit. One dedicated connection (not from the pool)
LISTENs; a notification evicts that key id. Changes made through this process's CredentialStore also
evict synchronously (read-your-writes for a revoke RPC followed by a call to the same replica).

While the LISTEN connection is not established (not yet, DB outage, backend killed, failed health
check) the cache neither serves nor stores: it is cleared when the connection is lost and again once
LISTEN is back (notifications sent in between are lost). A load that was in flight when its key id was
invalidated (or the cache cleared) is not stored, so a read racing a revocation cannot re-insert it.

Negative results (unknown, wrong, revoked, expired keys) are never cached: a key created right after
a refusal must work at once, and random keys would otherwise evict the real callers' entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from hashlib import blake2b
from typing import Any

import asyncpg
from pydantic import SecretStr

from retail_common.auth.keys import ParsedKey, split_key
from retail_common.auth.store import CredentialStore, _Resolved
from retail_common.clock import Clock, SystemClock
from retail_common.context import Principal

__all__ = ["NOTIFY_CHANNEL", "CacheStats", "CredentialCache"]

logger = logging.getLogger("retail_common.auth.cache")

NOTIFY_CHANNEL = "retail_auth_credentials"
_EVERYTHING = "*"


@dataclass
class CacheStats:
    """Counters for logs/benchmarks: calls answered from memory, loaded from the DB, and loads made
    while the listener was down (bypass)."""

    hits: int = 0
    loads: int = 0
    bypassed: int = 0
    invalidations: int = 0
    clears: int = 0


@dataclass
class _Entry:
    digest: bytes
    resolved: _Resolved
    loaded_at: float


@dataclass(eq=False)
class _Load:
    key_id: str
    stale: bool = False


@dataclass
class _InFlight:
    by_key: dict[str, set[_Load]] = field(default_factory=dict)

    def add(self, load: _Load) -> None:
        self.by_key.setdefault(load.key_id, set()).add(load)

    def discard(self, load: _Load) -> None:
        loads = self.by_key.get(load.key_id)
        if loads is not None:
            loads.discard(load)
            if not loads:
                del self.by_key[load.key_id]

    def invalidate(self, key_id: str | None) -> None:
        groups = self.by_key.values() if key_id is None else [self.by_key.get(key_id, set())]
        for loads in groups:
            for load in loads:
                load.stale = True


class CredentialCache:
    """A Resolver (`resolve(key) -> Principal | None`) in front of a CredentialStore.

    `start()` launches the listener task; until LISTEN is established every call goes to the
    database. `close()` stops it (call at shutdown).
    """

    def __init__(
        self,
        store: CredentialStore,
        dsn: str,
        *,
        clock: Clock | None = None,
        max_entries: int = 10_000,
        max_age: timedelta = timedelta(seconds=60),
        health_check_interval: float = 5.0,
        reconnect_delay: float = 1.0,
        application_name: str = "retail-auth-listener",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._store = store
        self._dsn = dsn
        self._clock = clock or SystemClock()
        self._max_entries = max_entries
        self._max_age = max_age.total_seconds()
        self._health_check_interval = health_check_interval
        self._reconnect_delay = reconnect_delay
        self._application_name = application_name
        self._monotonic = monotonic
        self._digest_key = secrets.token_bytes(32)  # per process: cache keys are not the stored hashes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._in_flight = _InFlight()
        self._listening = False
        self._listener_task: asyncio.Task[None] | None = None
        self._session: object | None = None
        self._session_seen = False  # the current attempt reached LISTEN
        self._state_changed = asyncio.Event()
        self.stats = CacheStats()
        store.add_change_listener(self.invalidate)

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is established (the cache serves only then)."""
        return self._listening

    def __len__(self) -> int:
        return len(self._entries)

    async def start(self) -> None:
        if self._listener_task is None:
            self._listener_task = asyncio.create_task(self._listen_forever(), name="auth-cache-listener")

    async def close(self) -> None:
        task, self._listener_task = self._listener_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_listening(False)

    async def wait_listening(self, listening: bool = True) -> None:
        """Return once `listening` has the given value (tests, start-up)."""
        while self._listening is not listening:
            self._state_changed.clear()
            await self._state_changed.wait()

    async def resolve(self, key: str) -> Principal | None:
        split = split_key(key)
        if split is None:
            return None
        key_id, secret = split
        # Keyed BLAKE2b is a MAC by design (no HMAC construction needed) and a third of HMAC-SHA256's
        # cost here: this runs on every call.
        digest = blake2b(secret.encode(), key=self._digest_key, digest_size=32).digest()
        if self._listening:
            entry = self._entries.get(key_id)
            if entry is not None and hmac.compare_digest(entry.digest, digest):
                if self._fresh(entry):
                    self._entries.move_to_end(key_id)
                    self.stats.hits += 1
                    return entry.resolved.principal
                del self._entries[key_id]  # expired or too old: the database decides again
        else:
            self.stats.bypassed += 1
        load = _Load(key_id)
        self._in_flight.add(load)
        try:
            resolved = await self._store._resolve_parsed(ParsedKey(key_id, SecretStr(secret)))
        finally:
            self._in_flight.discard(load)
        self.stats.loads += 1
        if resolved is None:
            return None
        if self._listening and not load.stale:
            self._store_entry(key_id, _Entry(digest, resolved, self._monotonic()))
        return resolved.principal

    def invalidate(self, key_id: str) -> None:
        """Forget one key id ('*': everything); loads of it in flight are not stored."""
        self.stats.invalidations += 1
        if key_id == _EVERYTHING:
            self.clear()
            return
        self._entries.pop(key_id, None)
        self._in_flight.invalidate(key_id)

    def clear(self) -> None:
        self.stats.clears += 1
        self._entries.clear()
        self._in_flight.invalidate(None)

    def _fresh(self, entry: _Entry) -> bool:
        if self._monotonic() - entry.loaded_at >= self._max_age:
            return False
        valid_until = entry.resolved.valid_until
        return valid_until is None or self._clock.now() < valid_until

    def _store_entry(self, key_id: str, entry: _Entry) -> None:
        self._entries[key_id] = entry
        self._entries.move_to_end(key_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def _set_listening(self, listening: bool) -> None:
        # Both directions clear: going down, entries may miss notifications from now on; coming up,
        # notifications sent while down were lost (nothing was stored meanwhile, but loads in flight
        # across the transition are dropped too).
        self.clear()
        if listening != self._listening:
            self._listening = listening
            logger.log(logging.INFO if listening else logging.WARNING, "credential cache %s",
                       "listening: serving" if listening else "listener down: bypassed")  # fmt: skip
        self._state_changed.set()

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.invalidate(str(payload))

    async def _listen_forever(self) -> None:
        quiet = False  # one warning per outage, not one per reconnect attempt
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # DB outage, killed backend, failed health check
                if self._session_seen:
                    quiet = False  # it had been listening: a new outage
                level = logging.DEBUG if quiet else logging.WARNING
                logger.log(level, "credential cache listener: %s; reconnecting", type(exc).__name__)
                quiet = True
            finally:
                self._session_seen = False
                self._set_listening(False)
            await asyncio.sleep(self._reconnect_delay)

    async def _listen_once(self) -> None:
        lost = asyncio.Event()
        session = object()

        def on_terminated(_conn: Any) -> None:
            lost.set()
            if self._session is session:  # not a late callback of an earlier connection
                self._set_listening(False)  # stop serving at once, before the health check notices

        conn = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": self._application_name}
        )
        try:
            conn.add_termination_listener(on_terminated)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notification)
            self._session = session
            self._session_seen = True
            self._set_listening(True)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._health_check_interval)
                if not lost.is_set():
                    # A silently dead connection (no FIN) would otherwise drop notifications unnoticed.
                    await conn.fetchval("SELECT 1", timeout=self._health_check_interval)
            raise ConnectionError("listener connection terminated")
        finally:
            self._session = None
            conn.terminate()
