-- retail_common.db.idempotency: the first response of each mutation, keyed by the caller's request_id.
create table request_idempotency (
    scope       text        not null,  -- e.g. "<principal id>:<rpc method>", so callers' keys never meet
    request_id  text        not null,
    fingerprint text        not null,  -- digest of the request, to refuse a key reused for another request
    response    bytea,                 -- null while the first call's transaction is still open
    created_at  timestamptz not null default now(),
    primary key (scope, request_id)
);
create index request_idempotency_created_at on request_idempotency (created_at);
