-- channel-gateway: channel registry, assortments, per-channel delivery ledger/queue, change log for
-- StreamChanges, dead letters, delivery health, idempotent mutations. Delivery leases use the runtime's
-- relay_leases table (name 'channel-delivery/<channel_id>').

create table channels (
    channel_id     text primary key check (channel_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    display_name   text        not null,
    kind           text        not null,
    location_ids   text[]      not null default '{}',
    -- DeliverySettings (domain/policy.py) as JSON; mode duplicated for filtering.
    delivery       jsonb       not null,
    mode           text        not null check (mode in ('webhook', 'nats_subject', 'change_stream')),
    -- HMAC signing secret of webhook channels. Needed in clear to sign (unlike API keys, which are hashed);
    -- never returned after creation/rotation, never logged, never in audit records.
    webhook_secret bytea,
    signing_key_id text,
    active         boolean     not null default true,
    version        bigint      not null default 1,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

create table assortments (
    channel_id text not null references channels on delete cascade,
    sku        text not null,
    primary key (channel_id, sku)
);
-- Projection asks "which channels list this SKU".
create index assortments_by_sku on assortments (sku, channel_id);

-- Per-channel change sequence. The upsert that allocates a seq holds the row lock until commit, so one
-- channel's seqs commit in increasing order: a reader at seq n never later sees a smaller seq appear.
-- `pruned_through`: change-log entries up to it were removed by retention (cursors below are too old).
create table channel_sequences (
    channel_id     text   primary key references channels on delete cascade,
    last_seq       bigint not null default 0,
    pruned_through bigint not null default 0,
    acked_seq      bigint not null default 0
);

-- Ledger and queue in one: per (channel, entity) the latest projected version and its payload, what was
-- delivered and acknowledged, and the retry state of the pending version. Pending (push modes) means
-- (projected_version > delivered_version or resend) and not dead. A projection replaces the payload only when its
-- version is newer, and delivered/acknowledged versions only move forward.
create table delivery_ledger (
    channel_id           text        not null references channels on delete cascade,
    entity_key           text        not null,
    kind                 text        not null,
    lane                 smallint    not null,
    projected_version    bigint      not null,
    payload              bytea       not null,
    seq                  bigint      not null,
    projected_at         timestamptz not null,
    due_at               timestamptz not null,
    delivered_version    bigint      not null default 0,
    acknowledged_version bigint      not null default 0,
    attempts             integer     not null default 0,
    next_attempt_at      timestamptz not null,
    last_error           text,
    dead                 boolean     not null default false,
    -- Resend the projected version even though it was delivered (RequestResync, ReconcileChannel).
    resend               boolean     not null default false,
    updated_at           timestamptz not null default now(),
    primary key (channel_id, entity_key)
);
create index delivery_ledger_pending on delivery_ledger (channel_id, lane, seq)
    where (projected_version > delivered_version or resend) and not dead;

-- Change log of change-stream channels (StreamChanges reads it by cursor = seq).
create table change_log (
    channel_id text        not null references channels on delete cascade,
    seq        bigint      not null,
    entity_key text        not null,
    version    bigint      not null,
    payload    bytea       not null,
    -- Appended by RequestResync (full state, not a new change).
    resync     boolean     not null default false,
    created_at timestamptz not null default now(),
    primary key (channel_id, seq)
);
create index change_log_created on change_log (created_at);

create table delivery_dead_letters (
    id          bigint generated always as identity primary key,
    channel_id  text        not null references channels on delete cascade,
    entity_key  text        not null,
    kind        text        not null,
    version     bigint      not null,
    attempts    integer     not null,
    last_error  text        not null,
    dead_at     timestamptz not null default now(),
    replayed_at timestamptz
);
create index delivery_dead_letters_open on delivery_dead_letters (channel_id, id) where replayed_at is null;

-- Delivery health as last written by the channel's owner (any replica can answer GetChannelHealth).
create table channel_health (
    channel_id      text primary key references channels on delete cascade,
    breaker_state   text        not null default 'CLOSED',
    owner           text        not null default '',
    last_success_at timestamptz,
    last_failure_at timestamptz,
    updated_at      timestamptz not null default now()
);

-- Delivery attempts per channel and minute, for the error rate.
create table delivery_stats (
    channel_id text        not null references channels on delete cascade,
    minute     timestamptz not null,
    ok         bigint      not null default 0,
    failed     bigint      not null default 0,
    primary key (channel_id, minute)
);

-- Results of mutations keyed by the caller's request_id (per method): a retry returns the first result.
create table idempotency (
    method      text        not null,
    request_id  text        not null,
    fingerprint text        not null,
    response    bytea       not null,
    created_at  timestamptz not null default now(),
    primary key (method, request_id)
);
