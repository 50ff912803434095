-- Pricing service schema. Money is NUMERIC next to its currency, never float.
create extension if not exists btree_gist;

create table products (
    sku            text primary key,
    title          text        not null default '',
    status         text        not null check (status in ('active', 'inactive')),
    tax_class      text        not null,
    category_ids   text[]      not null default '{}',
    attributes     jsonb       not null default '{}',
    cost_amount    numeric     check (cost_amount >= 0),
    cost_currency  text,
    map_amount     numeric     check (map_amount >= 0),
    map_currency   text,
    version        bigint      not null,
    updated_at     timestamptz not null,
    check ((cost_amount is null) = (cost_currency is null)),
    check ((map_amount is null) = (map_currency is null))
);

create table price_lists (
    price_list_id    text primary key,
    display_name     text        not null default '',
    currency         text        not null,
    kind             text        not null check (kind in ('base', 'markdown', 'clearance')),
    priority         integer     not null default 0 check (priority between 0 and 1000),
    channel_ids      text[]      not null default '{}',
    region_ids       text[]      not null default '{}',
    location_ids     text[]      not null default '{}',
    customer_segment text        not null default '',
    tax_treatment    text        not null check (tax_treatment in ('included', 'excluded')),
    active           boolean     not null,
    version          bigint      not null,
    created_at       timestamptz not null,
    updated_at       timestamptz not null
);

-- One price of a SKU in a list. Absolute windows are instants (abs_range); local windows are wall-clock
-- times (local_range). wide_range is the widest set of instants the window can cover in any zone
-- (local: start - 14h .. end + 12h), used to compare local with absolute windows conservatively.
create table price_entries (
    entry_id      bigint generated always as identity primary key,
    price_list_id text        not null references price_lists,
    sku           text        not null references products,
    min_quantity  bigint      not null default 1 check (min_quantity >= 1),
    amount        numeric     not null check (amount >= 0),
    window_kind   text        not null check (window_kind in ('absolute', 'local')),
    abs_range     tstzrange,
    local_range   tsrange,
    wide_range    tstzrange   not null,
    change_set_id uuid        not null,
    created_at    timestamptz not null,
    check ((window_kind = 'absolute') = (abs_range is not null)),
    check ((window_kind = 'local') = (local_range is not null)),
    check (not isempty(wide_range)),
    -- No overlapping windows per list / SKU / tier: same kind compared exactly, different kinds widened.
    constraint price_entries_no_overlap_absolute
        exclude using gist (price_list_id with =, sku with =, min_quantity with =, abs_range with &&),
    constraint price_entries_no_overlap_local
        exclude using gist (price_list_id with =, sku with =, min_quantity with =, local_range with &&),
    constraint price_entries_no_overlap_mixed
        exclude using gist (price_list_id with =, sku with =, min_quantity with =, window_kind with <>,
                            wide_range with &&)
);
create index price_entries_sku on price_entries (sku, entry_id);

create table tax_rates (
    region_id  text        not null,
    tax_class  text        not null,
    rate       numeric     not null check (rate >= 0 and rate <= 1),
    version    bigint      not null,
    updated_at timestamptz not null,
    primary key (region_id, tax_class)
);

-- Replica of the inventory service's locations (LocationUpserted), for regions and time zones.
create table locations (
    location_id text primary key,
    region_id   text   not null,
    time_zone   text   not null,
    version     bigint not null
);

create table change_sets (
    change_set_id   uuid primary key,
    description     text        not null default '',
    state           text        not null check (state in ('draft', 'submitted', 'approved', 'rejected')),
    author_id       text        not null,
    reviewer_id     text,
    rejection_reason text,
    findings        jsonb       not null default '[]',
    reverts_id      uuid references change_sets,
    reverted_by_id  uuid references change_sets,
    item_count      integer     not null default 0,
    version         bigint      not null,
    created_at      timestamptz not null,
    submitted_at    timestamptz,
    reviewed_at     timestamptz
);

-- Items in their own table so large imports can COPY them in chunks.
create table change_set_items (
    change_set_id uuid    not null references change_sets on delete cascade,
    position      integer not null,
    kind          text    not null check (kind in ('add', 'end')),
    price_list_id text,
    sku           text,
    min_quantity  bigint,
    amount        numeric,
    start_abs     timestamptz,
    end_abs       timestamptz,
    start_local   timestamp,
    end_local     timestamp,
    entry_id      bigint,
    end_time      timestamptz,
    primary key (change_set_id, position)
);

-- What an approval did to existing entries (for revert): shortened or withdrawn, with the entry before.
create table change_set_effects (
    change_set_id uuid   not null references change_sets,
    entry_id      bigint not null,
    effect        text   not null check (effect in ('shorten', 'withdraw')),
    before        jsonb  not null,
    primary key (change_set_id, entry_id)
);

-- Idempotency keys: the first response of a request_id is replayed on retries.
create table idempotency_keys (
    request_id   text primary key,
    method       text        not null,
    request_hash text        not null,
    response     bytea,
    created_at   timestamptz not null default now()
);

-- Instants at which some entry starts or ends (per time zone for local windows), announced once by the
-- activation scheduler.
create table activations (
    entry_id     bigint      not null,
    edge         text        not null check (edge in ('start', 'end')),
    time_zone    text        not null default '',
    due_at       timestamptz not null,
    sku          text        not null,
    price_list_id text       not null,
    announced_at timestamptz,
    primary key (entry_id, edge, time_zone)
);
create index activations_pending on activations (due_at) where announced_at is null;
