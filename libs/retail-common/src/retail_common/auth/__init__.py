"""Authentication and authorization: API-key credentials, principals, method policies.

Callers send `authorization: Bearer rk_<key_id>_<secret>`; the server interceptor
(retail_common.grpcx) resolves it through CredentialCache (in front of CredentialStore; invalidated by
Postgres LISTEN/NOTIFY) to a Principal and checks the method's
MethodPolicy. First operator credential: `retail-credentials create --database-url URL --kind operator
--id alice --role ops.admin` (or `python -m retail_common.auth create ...`).
"""

from pathlib import Path

from retail_common.auth._cache import NOTIFY_CHANNEL, CredentialCache
from retail_common.auth.keys import generate_key, hash_secret, parse_key
from retail_common.auth.policy import (
    PUBLIC_INFRASTRUCTURE_METHODS,
    MethodPolicy,
    authenticated,
    full_method_name,
    public,
    service_policies,
)
from retail_common.auth.store import CredentialInfo, CredentialStore, IssuedCredential
from retail_common.db import MigrationSource

__all__ = [
    "AUTH_MIGRATIONS",
    "NOTIFY_CHANNEL",
    "PUBLIC_INFRASTRUCTURE_METHODS",
    "CredentialCache",
    "CredentialInfo",
    "CredentialStore",
    "IssuedCredential",
    "MethodPolicy",
    "authenticated",
    "full_method_name",
    "generate_key",
    "hash_secret",
    "parse_key",
    "public",
    "service_policies",
]

AUTH_MIGRATIONS = MigrationSource("retail_common.auth", Path(__file__).parent / "migrations")
