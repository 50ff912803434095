"""CredentialCache against real Postgres: one read per key, LISTEN/NOTIFY invalidation (store, CLI in
another process, raw SQL), rotation, expiry, LRU and max-age bounds, and a killed listener connection.

Database reads are counted by a wrapper around the serving store's pool (it forwards to the real pool).
Revocations are refused after their notification: polled within a bound far below the max age (1 h here),
so only the notification can explain the refusal. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from retail_common.auth import AUTH_MIGRATIONS, CredentialCache, CredentialStore
from retail_common.clock import ManualClock
from retail_common.context import Principal, PrincipalKind
from retail_common.db import migrate

LISTENER = "test-auth-listener"
HOUR = timedelta(hours=1)


class CountingPool:
    """Forwards to a real pool, counting the reads of auth_credentials."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.reads = 0

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if "FROM auth_credentials" in query:
            self.reads += 1
        return await self._pool.fetchrow(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def pool(database_url):
    await migrate(database_url, [AUTH_MIGRATIONS])
    pool = await asyncpg.create_pool(database_url, min_size=3, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture
def clock():
    return ManualClock(datetime(2026, 3, 1, tzinfo=UTC))


@pytest.fixture
def counting(pool):
    return CountingPool(pool)


@pytest.fixture
def admin(pool, clock):
    """Another store (as another replica or an operator uses): its changes reach the cache by NOTIFY only."""
    return CredentialStore(pool, clock)


@pytest.fixture
def issue(admin):
    """admin.create, then wait until the cache has heard that INSERT's notification: one arriving after
    the first load would evict (or spoil) the entry and add a read the read counts do not expect."""

    async def issue(cache: CredentialCache, *args: Any, **kwargs: Any) -> Any:
        before = cache.stats.invalidations
        issued = await admin.create(*args, **kwargs)

        async def heard() -> bool:
            return cache.stats.invalidations > before

        await eventually(heard, "the new key's notification reached the cache")
        return issued

    return issue


@pytest.fixture
async def make_cache(counting, clock, database_url):
    caches: list[CredentialCache] = []

    async def make(**options: Any) -> CredentialCache:
        options = {"max_age": HOUR, "reconnect_delay": 0.05, **options}
        cache = CredentialCache(
            CredentialStore(counting, clock), database_url, clock=clock, application_name=LISTENER, **options
        )
        caches.append(cache)
        await cache.start()
        await asyncio.wait_for(cache.wait_listening(), 30)
        return cache

    yield make
    for cache in caches:
        await cache.close()


async def test_repeated_calls_read_the_database_once(make_cache, issue, counting):
    cache = await make_cache()
    issued = await issue(cache, "shop", PrincipalKind.CHANNEL, ["r"])
    key = issued.key.get_secret_value()
    for _ in range(50):
        assert await cache.resolve(key) == Principal("shop", PrincipalKind.CHANNEL, frozenset({"r"}))
    assert counting.reads == 1
    # A wrong secret for a cached key id is checked against the database and does not evict the entry.
    assert await cache.resolve(key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")) is None
    assert counting.reads == 2
    assert await cache.resolve(key) is not None
    assert counting.reads == 2
    # Refusals are not cached.
    for _ in range(3):
        assert await cache.resolve("rk_0123456789abcdef_unknown") is None
    assert counting.reads == 5
    assert await cache.resolve("not-a-key") is None
    assert counting.reads == 5


async def refused_after_notification(cache: CredentialCache, key: str) -> None:
    async def refused() -> bool:
        return await cache.resolve(key) is None

    await eventually(refused, "revoked key refused (max age is 1 h: only the notification explains it)")
    assert cache.listening  # refused by invalidation, not by the listener-down bypass


async def test_revocation_by_another_store_is_refused_after_the_notification(make_cache, admin, counting):
    cache = await make_cache()
    issued = await admin.create("shop", PrincipalKind.CHANNEL)
    other = await admin.create("other", PrincipalKind.CHANNEL)
    key = issued.key.get_secret_value()
    assert await cache.resolve(key) is not None
    assert await cache.resolve(other.key.get_secret_value()) is not None
    assert counting.reads == 2
    assert await admin.revoke(issued.key_id)
    await refused_after_notification(cache, key)
    # Only that key id was evicted.
    reads = counting.reads
    assert await cache.resolve(other.key.get_secret_value()) is not None
    assert counting.reads == reads


async def test_revocation_by_the_cli_in_another_process_is_refused(make_cache, admin, clock, database_url):
    cache = await make_cache()
    issued = await admin.create("alice", PrincipalKind.OPERATOR, ["ops.admin"])
    key = issued.key.get_secret_value()
    assert await cache.resolve(key) is not None
    await clock.set(datetime.now(UTC) + timedelta(minutes=5))  # past the wall clock the CLI stamps
    revoked = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "retail_common.auth", "--database-url", database_url, "revoke", issued.key_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr
    await refused_after_notification(cache, key)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE auth_credentials SET revoked_at = now() WHERE key_id = $1",
        "UPDATE auth_credentials SET expires_at = '2000-01-01' WHERE key_id = $1",
        "DELETE FROM auth_credentials WHERE key_id = $1",
        "UPDATE auth_credentials SET secret_sha256 = sha256('other'::bytea) WHERE key_id = $1",
        "TRUNCATE auth_credentials",
    ],
)
async def test_raw_sql_changes_are_refused_after_the_notification(make_cache, admin, pool, clock, statement):
    cache = await make_cache()
    issued = await admin.create("shop", PrincipalKind.CHANNEL)
    key = issued.key.get_secret_value()
    assert await cache.resolve(key) is not None
    await clock.set(datetime.now(UTC) + timedelta(minutes=5))  # past the database's now()
    if "$1" in statement:
        await pool.execute(statement, issued.key_id)
    else:
        await pool.execute(statement)
    await refused_after_notification(cache, key)


async def test_a_role_change_is_seen_after_the_notification(make_cache, admin, pool):
    cache = await make_cache()
    issued = await admin.create("alice", PrincipalKind.OPERATOR, ["viewer"])
    key = issued.key.get_secret_value()
    assert (await cache.resolve(key)).roles == {"viewer"}
    await pool.execute("UPDATE auth_credentials SET roles = '{admin}' WHERE key_id = $1", issued.key_id)

    async def admin_now() -> bool:
        return (await cache.resolve(key)).roles == {"admin"}

    await eventually(admin_now, "new roles resolved")


async def test_changes_through_the_caches_own_store_apply_on_the_next_call(make_cache, counting):
    cache = await make_cache()
    own = cache._store  # what ServiceContext.credentials is in run_service
    issued = await own.create("shop", PrincipalKind.CHANNEL)
    key = issued.key.get_secret_value()
    assert await cache.resolve(key) is not None
    assert await own.revoke(issued.key_id)
    assert await cache.resolve(key) is None  # synchronous eviction: no wait for the notification


async def test_rotation_overlap_and_expiry_from_the_cache(make_cache, admin, clock, counting):
    cache = await make_cache()
    old = await admin.create("pricing", PrincipalKind.SERVICE, ["svc"])
    old_key = old.key.get_secret_value()
    assert await cache.resolve(old_key) is not None
    new = await admin.rotate(old.key_id, HOUR)
    new_key = new.key.get_secret_value()

    # The rotation's UPDATE evicts the old key; it is re-read with its new expiry and still works.
    reads = counting.reads

    async def reloaded() -> bool:
        assert await cache.resolve(old_key) is not None
        return counting.reads > reads

    await eventually(reloaded, "old key re-read after the rotation's notification")
    assert await cache.resolve(new_key) == old.principal
    reads = counting.reads
    for _ in range(5):
        assert await cache.resolve(old_key) is not None
        assert await cache.resolve(new_key) is not None
    assert counting.reads == reads  # both served from memory during the overlap

    await clock.advance(HOUR + timedelta(seconds=1))
    assert await cache.resolve(old_key) is None  # the cached expiry is honoured on the hit
    assert await cache.resolve(new_key) is not None


async def test_expiry_and_a_future_revocation_are_honoured_on_hits(
    make_cache, admin, issue, pool, clock, counting
):
    cache = await make_cache()
    expiring = await issue(cache, "shop", PrincipalKind.CHANNEL, expires_at=clock.now() + timedelta(days=1))
    key = expiring.key.get_secret_value()
    assert await cache.resolve(key) is not None
    assert await cache.resolve(key) is not None
    assert counting.reads == 1
    await clock.advance(timedelta(days=1))
    assert await cache.resolve(key) is None

    later = await admin.create("app", PrincipalKind.CHANNEL)
    later_key = later.key.get_secret_value()
    await pool.execute(
        "UPDATE auth_credentials SET revoked_at = $2 WHERE key_id = $1", later.key_id, clock.now() + HOUR
    )
    assert await cache.resolve(later_key) is not None
    await clock.advance(HOUR)
    assert await cache.resolve(later_key) is None


async def test_size_and_age_bounds(make_cache, issue, counting):
    ticks = [0.0]
    cache = await make_cache(max_entries=2, max_age=timedelta(seconds=60), monotonic=lambda: ticks[0])
    keys = [(await issue(cache, f"c{i}", PrincipalKind.CHANNEL)).key.get_secret_value() for i in range(3)]
    for key in keys:
        assert await cache.resolve(key) is not None
    assert counting.reads == 3
    assert len(cache) == 2
    assert await cache.resolve(keys[2]) is not None
    assert await cache.resolve(keys[1]) is not None
    assert counting.reads == 3
    assert await cache.resolve(keys[0]) is not None  # least recently used: was evicted
    assert counting.reads == 4
    ticks[0] = 60.0
    assert await cache.resolve(keys[0]) is not None  # max age reached: read again
    assert counting.reads == 5


async def test_a_killed_listener_bypasses_the_cache_until_it_is_back(
    make_cache, issue, pool, clock, counting, postgres_server, database
):
    cache = await make_cache()
    revoked = await issue(cache, "shop", PrincipalKind.CHANNEL)
    kept = await issue(cache, "app", PrincipalKind.CHANNEL)
    revoked_key, kept_key = revoked.key.get_secret_value(), kept.key.get_secret_value()
    for key in (revoked_key, kept_key, revoked_key, kept_key):
        assert await cache.resolve(key) is not None
    assert counting.reads == 2

    superuser = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        # Keep the listener from coming back (the pool's open connections keep working).
        await superuser.execute(f'ALTER DATABASE "{database.name}" WITH ALLOW_CONNECTIONS false')
        killed = await superuser.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = $2",
            database.name,
            LISTENER,
        )
        assert killed == 1
        await asyncio.wait_for(cache.wait_listening(False), 30)
        assert len(cache) == 0

        # Down: every call reads the database, so a revocation (whose NOTIFY nobody hears) applies at once.
        reads = counting.reads
        for _ in range(3):
            assert await cache.resolve(kept_key) is not None
        assert counting.reads == reads + 3
        await clock.set(datetime.now(UTC) + timedelta(minutes=5))  # past the database's now()
        await pool.execute("UPDATE auth_credentials SET revoked_at = now() WHERE key_id = $1", revoked.key_id)
        assert await cache.resolve(revoked_key) is None
        assert not cache.listening
    finally:
        await superuser.execute(f'ALTER DATABASE "{database.name}" WITH ALLOW_CONNECTIONS true')
        await superuser.close()

    await asyncio.wait_for(cache.wait_listening(), 30)
    reads = counting.reads
    for _ in range(3):
        assert await cache.resolve(kept_key) is not None
        assert await cache.resolve(revoked_key) is None
    assert counting.reads == reads + 1 + 3  # kept is cached again; refusals never are


async def test_close_ends_the_listener_connection(make_cache, pool):
    cache = await make_cache()

    async def listeners() -> int:
        return await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()",
            LISTENER,
        )

    assert await listeners() == 1
    await cache.close()
    assert not cache.listening

    async def gone() -> bool:
        return await listeners() == 0

    await eventually(gone, "listener connection closed")
