"""One-shot credential provisioning for docker-compose: register every API key the suite needs.

For each service's database (<PREFIX>_DATABASE_URL, e.g. PRICING_DATABASE_URL) it registers, stored
hashed (retail_common.auth):
- the operator keys `dev-operator` and `dev-approver` (two people: approvals need someone other than
  the author), each with every operator role that service's access policies name;
- the service key of every *other* service, with the service roles its policies name, so the
  services can call one another.
Keys come from the environment (OPERATOR_API_KEY, APPROVER_API_KEY, <PREFIX>_SERVICE_KEY) when set,
else from CREDENTIALS_DIR (default /credentials) when a previous run wrote them, else they are
generated there once (mode 0400). Services read theirs from that directory (SERVICE_CREDENTIAL_FILE).
Re-running is safe: registering a known key again only refreshes its roles.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from retail_common.auth import AUTH_MIGRATIONS, CredentialStore, MethodPolicy, generate_key
from retail_common.context import PrincipalKind
from retail_common.db import create_pool, migrate
from retail_common.service import ServiceSpec

# Service name -> module whose `service.SPEC` holds its access policies.
SUITE = {
    "pricing": "retail_pricing",
    "inventory-reservation": "retail_inventory",
    "promotion": "retail_promotion",
    "channel-gateway": "retail_channel_gateway",
}
OPERATORS = {"operator": "dev-operator", "approver": "dev-approver"}  # key file name -> operator id


def _prefix(name: str) -> str:
    return name.upper().replace("-", "_")


def _roles(policies: Iterable[MethodPolicy], kind: PrincipalKind) -> set[str]:
    """Roles named by the policies that admit `kind`."""
    return {
        role for policy in policies if policy.kinds is None or kind in policy.kinds for role in policy.roles
    }


def _key(name: str, env_var: str, directory: Path) -> SecretStr:
    """The key from `env_var`, else from `directory/<name>.key`, else a new one written there."""
    path = directory / f"{name}.key"
    given = os.environ.get(env_var, "").strip()
    if given:
        if not path.exists():
            path.write_text(given)
            path.chmod(0o400)
        elif path.read_text().strip() != given:
            raise SystemExit(f"{env_var} differs from {path}; remove the file (or the volume) to replace it")
        return SecretStr(given)
    if not path.exists():
        path.write_text(generate_key()[1].get_secret_value())
        path.chmod(0o400)
    return SecretStr(path.read_text().strip())


async def _provision(
    name: str, dsn: str, operator_keys: dict[str, SecretStr], service_keys: dict[str, SecretStr]
) -> None:
    spec: ServiceSpec[Any] = importlib.import_module(f"{SUITE[name]}.service").SPEC
    policies = list(spec.policies.values())
    await migrate(dsn, [AUTH_MIGRATIONS])
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        store = CredentialStore(pool)
        for file_name, operator_id in OPERATORS.items():
            roles = _roles(policies, PrincipalKind.OPERATOR)
            await store.register(operator_keys[file_name], operator_id, PrincipalKind.OPERATOR, roles)
        for caller, key in service_keys.items():
            if caller != name:
                await store.register(
                    key, caller, PrincipalKind.SERVICE, _roles(policies, PrincipalKind.SERVICE)
                )
    finally:
        await pool.close()
    print(
        f"provisioned {name}: operators {sorted(OPERATORS.values())}, services {sorted(set(SUITE) - {name})}"
    )


async def main() -> int:
    directory = Path(os.environ.get("CREDENTIALS_DIR", "/credentials"))
    missing = [
        f"{_prefix(name)}_DATABASE_URL"
        for name in SUITE
        if not os.environ.get(f"{_prefix(name)}_DATABASE_URL")
    ]
    if missing:
        print(f"provision_credentials: set {', '.join(missing)}", file=sys.stderr)
        return 2
    # The gateway's at-rest key for webhook signing secrets (base64 of 32 bytes, WEBHOOK_SECRETS_KEY_FILE).
    gateway_key = directory / "webhook-secrets.key"
    if not gateway_key.exists():
        gateway_key.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
        gateway_key.chmod(0o400)
    operator_keys = {f: _key(f, f"{f.upper()}_API_KEY", directory) for f in OPERATORS}
    service_keys = {name: _key(name, f"{_prefix(name)}_SERVICE_KEY", directory) for name in SUITE}
    for name in SUITE:
        await _provision(name, os.environ[f"{_prefix(name)}_DATABASE_URL"], operator_keys, service_keys)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
