"""The scripts the image ships, run as the containers run them: credential provisioning against real
Postgres databases, the secret-file entrypoint, and the grpc.health.v1 health check against a service."""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.testing.ports import free_port
from retail_common.testing.postgres import PostgresServer

DOCKER = Path(__file__).resolve().parents[1] / "docker"
SERVICES = ("pricing", "inventory-reservation", "promotion", "channel-gateway")
MODULES = {
    "pricing": "retail_pricing",
    "inventory-reservation": "retail_inventory",
    "promotion": "retail_promotion",
    "channel-gateway": "retail_channel_gateway",
}
# The service's own operator roles (the runtime may add shared ones, e.g. for event operations).
DOMAIN_ROLES = {
    "pricing": {"pricing.operator", "pricing.approver"},
    "inventory-reservation": {"inventory.operator"},
    "promotion": {"promotion.operator", "promotion.approver"},
    "channel-gateway": {"channel.admin"},
}


def operator_roles(service: str) -> set[str]:
    """Every role the service's access policies name for operators: what the dev operators must hold."""
    policies = importlib.import_module(f"{MODULES[service]}.service").SPEC.policies.values()
    return {
        role
        for policy in policies
        if policy.kinds is None or PrincipalKind.OPERATOR in policy.kinds
        for role in policy.roles
    }


def key_files(directory: Path) -> dict[str, tuple[str, int]]:
    """Key file name (without .key) -> (content, permission bits)."""
    return {
        path.name.removesuffix(".key"): (path.read_text().strip(), stat.S_IMODE(path.stat().st_mode))
        for path in directory.iterdir()
    }


def prefix(service: str) -> str:
    return service.upper().replace("-", "_")


@pytest_asyncio.fixture
async def databases(postgres_server: PostgresServer) -> AsyncIterator[dict[str, str]]:
    created = {service: await postgres_server.create_database("deploy") for service in SERVICES}
    try:
        yield {service: db.dsn for service, db in created.items()}
    finally:
        for db in created.values():
            await db.drop()


async def provision(
    databases: dict[str, str], directory: Path, **keys: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDENTIALS_DIR": str(directory), **keys}
    env |= {f"{prefix(service)}_DATABASE_URL": dsn for service, dsn in databases.items()}
    script = str(DOCKER / "provision_credentials.py")
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, script], env=env, capture_output=True, text=True, timeout=120
    )


async def test_provisioning_registers_operators_and_each_callers_service_key(
    databases: dict[str, str], tmp_path: Path
) -> None:
    result = await provision(databases, tmp_path)
    assert result.returncode == 0, result.stderr
    files = key_files(tmp_path)
    webhook_key, webhook_mode = files["webhook-secrets"]  # the gateway's at-rest key, not an API key
    assert (len(base64.b64decode(webhook_key)), webhook_mode) == (32, 0o400)
    assert set(files) == {"operator", "approver", "webhook-secrets", *SERVICES}
    assert {mode for _, mode in files.values()} == {0o400}
    keys = {name: content for name, (content, _) in files.items()}

    for service, dsn in databases.items():
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            store = CredentialStore(pool)
            for operator in ("operator", "approver"):
                principal = await store.resolve(keys[operator])
                assert principal is not None
                assert principal.kind is PrincipalKind.OPERATOR
                assert principal.id == f"dev-{operator}"
                assert principal.roles == operator_roles(service)
                assert DOMAIN_ROLES[service] <= principal.roles
            for caller in SERVICES:
                principal = await store.resolve(keys[caller])
                if caller == service:
                    assert principal is None  # a service never calls itself
                else:
                    assert principal is not None
                    assert (principal.kind, principal.id) == (
                        PrincipalKind.SERVICE,
                        caller,
                    )
        finally:
            await pool.close()

    # Every `up` runs the job again: same keys, nothing changes; a different key given for one is refused.
    again = await provision(databases, tmp_path)
    assert again.returncode == 0, again.stderr
    assert key_files(tmp_path) == files
    other = keys["pricing"][:-4] + "AAAA"
    refused = await provision(databases, tmp_path, PRICING_SERVICE_KEY=other)
    assert refused.returncode != 0
    assert "PRICING_SERVICE_KEY differs" in refused.stderr


async def test_a_key_given_in_the_environment_is_the_one_registered(
    databases: dict[str, str], tmp_path: Path
) -> None:
    key = "rk_0123456789abcdef_given-operator-secret"
    result = await provision(databases, tmp_path, OPERATOR_API_KEY=key)
    assert result.returncode == 0, result.stderr
    assert key_files(tmp_path)["operator"] == (key, 0o400)
    pool = await create_pool(databases["promotion"], min_size=1, max_size=1)
    try:
        principal = await CredentialStore(pool).resolve(key)
    finally:
        await pool.close()
    assert principal is not None
    assert principal.id == "dev-operator"


def entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    show = "import os; print(os.environ.get('SERVICE_CREDENTIAL'), os.environ.get('SSL_CERT_FILE'))"
    return subprocess.run(
        ["sh", str(DOCKER / "entrypoint.sh"), sys.executable, "-c", show],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_entrypoint_exports_secret_files_and_leaves_other_file_variables_alone(tmp_path: Path) -> None:
    secret = tmp_path / "pricing.key"
    secret.write_text("rk_0123456789abcdef_s3cret")
    result = entrypoint(tmp_path, SERVICE_CREDENTIAL_FILE=str(secret), SSL_CERT_FILE="/etc/ssl/cert.pem")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["rk_0123456789abcdef_s3cret", "/etc/ssl/cert.pem"]
    missing = entrypoint(tmp_path, SERVICE_CREDENTIAL_FILE=str(tmp_path / "absent.key"))
    assert missing.returncode == 2
    assert "SERVICE_CREDENTIAL_FILE" in missing.stderr


def health_check(address: str) -> subprocess.CompletedProcess[str]:
    script = str(DOCKER / "grpc_health_check.py")
    return subprocess.run([sys.executable, script, address], capture_output=True, text=True, timeout=30)


async def test_health_check_exits_zero_only_for_a_serving_service(
    start_service, database_url, nats_server
) -> None:
    service = await start_service(
        "retail_common.testing.probe", {"DATABASE_URL": database_url, "NATS_URL": nats_server.url}
    )
    serving = await asyncio.to_thread(health_check, service.address)
    assert serving.returncode == 0, serving.stderr
    assert "SERVING" in serving.stdout
    nobody = await asyncio.to_thread(health_check, f"127.0.0.1:{free_port()}")
    assert nobody.returncode == 1
    assert "UNAVAILABLE" in nobody.stderr
