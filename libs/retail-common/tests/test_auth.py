"""API keys: format, hashing, store lifecycle (create, resolve, revoke, rotate, expiry), policies, CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from retail.testing.v1 import probe_pb2
from retail_common.auth import (
    AUTH_MIGRATIONS,
    CredentialStore,
    MethodPolicy,
    authenticated,
    parse_key,
    public,
    service_policies,
)
from retail_common.clock import ManualClock
from retail_common.context import Principal, PrincipalKind
from retail_common.db import migrate

PROBE = probe_pb2.DESCRIPTOR.services_by_name["ProbeService"]


@pytest.fixture
async def pool(database_url):
    await migrate(database_url, [AUTH_MIGRATIONS])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def clock():
    return ManualClock(datetime(2026, 3, 1, tzinfo=UTC))


async def test_created_key_resolves_and_only_its_hash_is_stored(pool, clock):
    store = CredentialStore(pool, clock)
    issued = await store.create("alice", PrincipalKind.OPERATOR, ["ops.admin"])
    key = issued.key.get_secret_value()
    assert key.startswith(f"rk_{issued.key_id}_")
    assert "rk_" not in repr(issued)
    assert key not in repr(issued)
    principal = await store.resolve(key)
    assert principal == Principal("alice", PrincipalKind.OPERATOR, frozenset({"ops.admin"}))
    secret = parse_key(key).secret.get_secret_value()
    dumped = await pool.fetchval("SELECT string_agg(t::text, '') FROM auth_credentials t")
    assert secret not in dumped
    assert key not in dumped


async def test_wrong_malformed_and_unknown_keys_resolve_to_none(pool, clock):
    store = CredentialStore(pool, clock)
    issued = await store.create("shop", PrincipalKind.CHANNEL)
    key = issued.key.get_secret_value()
    assert await store.resolve(key[:-2] + ("AA" if not key.endswith("AA") else "BB")) is None
    assert await store.resolve("garbage") is None
    assert await store.resolve("rk_0000000000000000_secret") is None
    assert await store.resolve("") is None


async def test_revoked_key_stops_working_immediately(pool, clock):
    store = CredentialStore(pool, clock)
    issued = await store.create("shop", PrincipalKind.CHANNEL)
    assert await store.resolve(issued.key.get_secret_value()) is not None
    assert await store.revoke(issued.key_id)
    assert await store.resolve(issued.key.get_secret_value()) is None
    assert not await store.revoke(issued.key_id)


async def test_rotation_keeps_the_old_key_for_the_overlap_only(pool, clock):
    store = CredentialStore(pool, clock)
    old = await store.create("pricing", PrincipalKind.SERVICE, ["svc"])
    new = await store.rotate(old.key_id, timedelta(hours=1))
    assert new.principal == old.principal
    assert await store.resolve(old.key.get_secret_value()) is not None
    await clock.advance(timedelta(hours=1, seconds=1))
    assert await store.resolve(old.key.get_secret_value()) is None
    assert await store.resolve(new.key.get_secret_value()) is not None
    listed = {info.key_id: info for info in await store.list_credentials("pricing")}
    assert listed[old.key_id].replaced_by == new.key_id
    with pytest.raises(LookupError):
        await store.rotate(old.key_id, timedelta(hours=1))


async def test_a_key_issued_elsewhere_can_be_registered_once_and_resolves(pool, clock):
    issuer = CredentialStore(pool, clock)
    issued = await issuer.create("promotion", PrincipalKind.SERVICE, ["service"])
    await pool.execute("DELETE FROM auth_credentials")  # as if issued by another service's store

    store = CredentialStore(pool, clock)
    await store.register(issued.key, "promotion", PrincipalKind.SERVICE, ["service"])
    # Idempotent; a repeat may change the roles.
    await store.register(issued.key, "promotion", PrincipalKind.SERVICE, ["service", "pricing.read"])
    assert await pool.fetchval("SELECT count(*) FROM auth_credentials") == 1
    principal = await store.resolve(issued.key.get_secret_value())
    assert principal == Principal("promotion", PrincipalKind.SERVICE, frozenset({"service", "pricing.read"}))

    with pytest.raises(ValueError, match="already registered"):
        await store.register(issued.key, "pricing", PrincipalKind.SERVICE)
    forged = issued.key.get_secret_value()[:-4] + "AAAA"
    with pytest.raises(ValueError, match="already registered"):
        await store.register(type(issued.key)(forged), "promotion", PrincipalKind.SERVICE)
    with pytest.raises(ValueError, match="not an API key"):
        await store.register(type(issued.key)("hunter2"), "promotion", PrincipalKind.SERVICE)


async def test_expired_key_is_refused(pool, clock):
    store = CredentialStore(pool, clock)
    issued = await store.create("shop", PrincipalKind.CHANNEL, expires_at=clock.now() + timedelta(days=1))
    assert await store.resolve(issued.key.get_secret_value()) is not None
    await clock.advance(timedelta(days=1))
    assert await store.resolve(issued.key.get_secret_value()) is None


def test_policy_checks_kind_and_every_role():
    admin = MethodPolicy(kinds=[PrincipalKind.OPERATOR], roles=["probe.admin"])
    operator = Principal("alice", PrincipalKind.OPERATOR, frozenset({"probe.admin", "other"}))
    assert admin.denial(operator) is None
    assert "missing role" in admin.denial(Principal("bob", PrincipalKind.OPERATOR))
    channel = Principal("shop", PrincipalKind.CHANNEL, frozenset({"probe.admin"}))
    assert "kind channel" in admin.denial(channel)
    assert authenticated().denial(Principal("shop", PrincipalKind.CHANNEL)) is None
    with pytest.raises(ValueError, match="public"):
        MethodPolicy(is_public=True, roles=["x"])


def test_service_policies_must_cover_every_method_exactly():
    every = {method.name: authenticated() for method in PROBE.methods}
    table = service_policies(PROBE, every)
    assert "/retail.testing.v1.ProbeService/Echo" in table
    with pytest.raises(ValueError, match="missing methods \\['Echo'\\]"):
        service_policies(PROBE, {k: v for k, v in every.items() if k != "Echo"})
    with pytest.raises(ValueError, match="unknown methods \\['Ecko'\\]"):
        service_policies(PROBE, {**every, "Ecko": public()})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retail_common.auth", *args], capture_output=True, text=True, timeout=60
    )


async def test_cli_creates_lists_and_revokes(database_url):
    created = _cli("--database-url", database_url, "create", "--kind", "operator", "--id", "alice",
                   "--role", "ops.admin")  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert parse_key(key) is not None
    assert key not in created.stderr
    key_id = parse_key(key).key_id
    listed = _cli("--database-url", database_url, "list")
    assert key_id in listed.stdout
    assert "alice" in listed.stdout
    assert "active" in listed.stdout
    assert parse_key(key).secret.get_secret_value() not in listed.stdout
    assert _cli("--database-url", database_url, "revoke", key_id).returncode == 0
    assert "revoked" in _cli("--database-url", database_url, "list").stdout
