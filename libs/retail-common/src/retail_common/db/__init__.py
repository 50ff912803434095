"""Postgres access: pools, transactions, migrations, the append-only audit trail, idempotency keys."""

from retail_common.db.audit import (
    AUDIT_MIGRATIONS,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AuditRecord,
    InvalidPageTokenError,
    append_audit,
    list_audit,
)
from retail_common.db.idempotency import (
    IDEMPOTENCY_MIGRATIONS,
    claim_request,
    prune_requests,
    request_fingerprint,
    store_response,
    stored_response,
)
from retail_common.db.migrations import (
    AppliedMigration,
    MigrationChecksumError,
    MigrationError,
    MigrationFile,
    MigrationLayoutError,
    MigrationSource,
    migrate,
    pending_migrations,
)
from retail_common.db.pool import (
    CONNECTION_ERRORS,
    DATABASE_ERRORS,
    Connection,
    Isolation,
    create_pool,
    transaction,
)

__all__ = [
    "AUDIT_MIGRATIONS",
    "CONNECTION_ERRORS",
    "DATABASE_ERRORS",
    "DEFAULT_PAGE_SIZE",
    "IDEMPOTENCY_MIGRATIONS",
    "MAX_PAGE_SIZE",
    "AppliedMigration",
    "AuditRecord",
    "Connection",
    "InvalidPageTokenError",
    "Isolation",
    "MigrationChecksumError",
    "MigrationError",
    "MigrationFile",
    "MigrationLayoutError",
    "MigrationSource",
    "append_audit",
    "claim_request",
    "create_pool",
    "list_audit",
    "migrate",
    "pending_migrations",
    "prune_requests",
    "request_fingerprint",
    "store_response",
    "stored_response",
    "transaction",
]
