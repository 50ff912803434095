-- Promotion service schema: campaigns (definition as the Campaign proto), promotions with their
-- budget counters, code batches, redemptions, suspensions, replicas of products and locations,
-- guardrail rule map, deployment ledger, idempotency.

create table campaigns (
    campaign_id  text        primary key,
    state        text        not null check (state in ('DRAFT', 'SUBMITTED', 'APPROVED', 'SCHEDULED',
                                                       'ACTIVE', 'ENDED', 'ROLLED_BACK')),
    -- retail.promotion.v1.Campaign with output-only fields cleared.
    definition   bytea       not null,
    currency     text        not null,
    author_id    text        not null,
    approver_id  text        not null default '',
    budget       numeric,
    budget_used  numeric     not null default 0,
    version      bigint      not null default 1,
    etag         text        not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    -- the budget is never overspent, whatever the code path
    constraint campaign_budget check (budget is null or budget_used <= budget),
    constraint campaign_budget_used check (budget_used >= 0)
);
create index campaigns_live_idx on campaigns (state) where state in ('SCHEDULED', 'ACTIVE');

create table promotions (
    promotion_id     text    primary key,
    campaign_id      text    not null references campaigns on delete cascade,
    budget           numeric,
    budget_used      numeric not null default 0,
    max_redemptions  bigint  not null default 0,
    redemptions_used bigint  not null default 0,
    constraint promotion_budget check (budget is null or budget_used <= budget),
    constraint promotion_redemptions check (max_redemptions = 0 or redemptions_used <= max_redemptions),
    constraint promotion_used check (budget_used >= 0 and redemptions_used >= 0)
);
create index promotions_campaign_idx on promotions (campaign_id);

create table code_batches (
    code_batch_id text        primary key,
    campaign_id   text        not null references campaigns on delete cascade,
    created_at    timestamptz not null default now()
);

create table codes (
    code              text primary key,
    code_batch_id     text not null references code_batches on delete cascade,
    redeemed_order_id text
);
create index codes_order_idx on codes (redeemed_order_id) where redeemed_order_id is not null;

create table redemptions (
    order_id     text        primary key,
    state        text        not null check (state in ('REDEEMED', 'CANCELLED')),
    fingerprint  text        not null,
    -- the RedeemPromotionsResponse of the first call (a retry returns it)
    response     bytea       not null,
    created_at   timestamptz not null default now(),
    cancelled_at timestamptz
);

create table redemption_items (
    order_id     text    not null references redemptions,
    promotion_id text    not null,
    campaign_id  text    not null,
    discount     numeric not null check (discount >= 0),
    codes        text[]  not null default '{}',
    primary key (order_id, promotion_id)
);

-- Suspended scopes of a campaign ('' = wildcard). One row per (scope, reason): an operator suspension
-- and a low-stock one on the same scope are lifted independently.
create table suspensions (
    campaign_id text        not null references campaigns on delete cascade,
    channel_id  text        not null default '',
    location_id text        not null default '',
    sku         text        not null default '',
    reason      text        not null check (reason in ('OPERATOR', 'LOW_STOCK', 'CHANNEL_FAILURE')),
    detail      text        not null default '',
    created_at  timestamptz not null default now(),
    primary key (campaign_id, channel_id, location_id, sku, reason)
);

-- Bumped by every change that the in-memory promotion index depends on (campaigns, suspensions,
-- products); replicas rebuild their index when it moves.
create table catalog_version (
    id      boolean primary key default true check (id),
    version bigint  not null
);
insert into catalog_version values (true, 1);

-- Product master replica (ProductUpserted from pricing).
create table products (
    sku        text    primary key,
    active     boolean not null,
    categories text[]  not null default '{}',
    attributes jsonb   not null default '{}',
    version    bigint  not null
);

-- Location replica (LocationUpserted from inventory).
create table locations (
    location_id text    primary key,
    region_id   text    not null,
    time_zone   text    not null,
    active      boolean not null,
    version     bigint  not null
);

-- Threshold rules registered for campaigns' stock guardrails, and their last applied state.
create table guardrail_rules (
    rule_id     text   primary key,
    campaign_id text   not null references campaigns on delete cascade,
    sku         text   not null,
    location_id text   not null,
    channel_id  text   not null,
    state       text   not null default 'ABOVE' check (state in ('ABOVE', 'BELOW')),
    version     bigint not null default 0
);

-- Deployment ledger per campaign and target (location '' for non-store channels).
create table deployment_targets (
    campaign_id text        not null references campaigns on delete cascade,
    channel_id  text        not null,
    location_id text        not null default '',
    version     bigint      not null default 0,
    delivery    text        check (delivery in ('DELIVERED', 'ACKNOWLEDGED', 'DEAD_LETTERED')),
    error       text        not null default '',
    updated_at  timestamptz not null default now(),
    primary key (campaign_id, channel_id, location_id)
);

create table channel_health (
    channel_id text        primary key,
    degraded   boolean     not null,
    updated_at timestamptz not null default now()
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
