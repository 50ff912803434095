-- retail-inventory: locations, known SKUs, stock positions, movements, reservations, threshold rules.
-- The ATS formula (DESIGN.md §6) lives in inv_ats(); retail_inventory.domain.ats is the same formula and
-- the repository tests hold both to it.

create table locations (
    location_id         text        primary key,
    kind                text        not null,
    display_name        text        not null default '',
    region_id           text        not null,
    time_zone           text        not null,
    channel_ids         text[]      not null default '{}',
    allocation_priority integer     not null default 0,
    active              boolean     not null default true,
    version             bigint      not null default 1,
    updated_at          timestamptz not null default now()
);
create index locations_region_idx on locations (region_id);

-- SKUs this service has seen in snapshots or movements (the product master is pricing's).
create table skus (
    sku           text        primary key,
    first_seen_at timestamptz not null default now()
);

create table stock (
    sku              text        not null references skus,
    location_id      text        not null references locations,
    on_hand          bigint      not null default 0,
    reserved_total   bigint      not null default 0,
    safety_stock     bigint      not null default 0,
    -- {"<channel>": {"fixed": n} | {"share_bp": n}}
    fences           jsonb       not null default '{}',
    -- live reserved units per channel: {"<channel>": n}; sums to reserved_total
    channel_reserved jsonb       not null default '{}',
    snapshot_as_of   timestamptz,
    version          bigint      not null default 0,
    updated_at       timestamptz not null default now(),
    primary key (sku, location_id),
    -- No oversell, enforced by the database too. A negative on-hand (a source reported more out than
    -- in) counts as zero, so nothing can be held then.
    constraint stock_no_oversell check (reserved_total >= 0 and reserved_total <= greatest(on_hand, 0)),
    constraint stock_safety_stock_nonnegative check (safety_stock >= 0)
);
create index stock_location_idx on stock (location_id);

create table movements (
    movement_id text        primary key,
    sku         text        not null,
    location_id text        not null,
    delta       bigint      not null,
    kind        text        not null,
    occur_time  timestamptz not null,
    recorded_at timestamptz not null default now()
);
-- "movements after the as-of" of a snapshot
create index movements_key_time_idx on movements (sku, location_id, occur_time);

create table reservations (
    reservation_id text        primary key,
    channel_id     text        not null,
    state          text        not null
        check (state in ('ACTIVE', 'CONFIRMED', 'RELEASED', 'EXPIRED')),
    -- sha256 of the canonical request, to tell a retry from a different request under the same id
    fingerprint    text        not null,
    created_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    updated_at     timestamptz not null default now(),
    version        bigint      not null default 1
);
create index reservations_due_idx on reservations (expires_at) where state = 'ACTIVE';
create index reservations_list_idx on reservations (created_at desc, reservation_id desc);
create index reservations_channel_idx on reservations (channel_id, created_at desc, reservation_id desc);

create table reservation_lines (
    reservation_id     text    not null references reservations on delete cascade,
    line_index         integer not null,
    request_line_index integer not null,
    sku                text    not null,
    location_id        text    not null,
    quantity           bigint  not null check (quantity > 0),
    confirmed          bigint  not null default 0 check (confirmed >= 0),
    released           bigint  not null default 0 check (released >= 0),
    primary key (reservation_id, line_index),
    check (confirmed + released <= quantity)
);
-- held lines of a position, for shortage cuts
create index reservation_lines_held_idx on reservation_lines (sku, location_id)
    where confirmed + released < quantity;

create table threshold_rules (
    rule_id          uuid        primary key,
    request_id       text        not null unique,
    sku              text        not null,
    location_id      text        not null references locations,
    channel_id       text        not null,
    owner_kind       text        not null check (owner_kind in ('operator', 'campaign')),
    owner_id         text        not null,
    kind             text        not null check (kind in ('ABSOLUTE', 'DAYS_OF_COVER')),
    below_quantity   bigint,
    restore_quantity bigint,
    units_sold       bigint,
    period_days      integer,
    below_days       integer,
    restore_days     integer,
    state            text        not null check (state in ('ABOVE', 'BELOW')),
    version          bigint      not null default 1,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);
create index threshold_rules_key_idx on threshold_rules (sku, location_id);

-- Results of mutations keyed by the caller's request_id (per method): a retry returns the first result.
create table idempotency (
    method      text        not null,
    request_id  text        not null,
    fingerprint text        not null,
    response    bytea       not null,
    created_at  timestamptz not null default now(),
    primary key (method, request_id)
);

create function inv_fence_units(fence jsonb, on_hand bigint) returns bigint
language sql immutable parallel safe as $$
    select case when fence ? 'fixed' then (fence ->> 'fixed')::bigint
                else greatest(on_hand, 0) * (fence ->> 'share_bp')::bigint / 10000 end
$$;

-- Units fenced for channels other than `exclude` and not yet reserved by them.
create function inv_fence_hold(fences jsonb, channel_reserved jsonb, on_hand bigint, exclude text)
returns bigint language sql immutable parallel safe as $$
    select case when fences = '{}'::jsonb then 0::bigint else (
        select coalesce(sum(greatest(0, inv_fence_units(f.value, on_hand)
                                        - coalesce((channel_reserved ->> f.key)::bigint, 0))), 0)::bigint
        from jsonb_each(fences) f
        where f.key is distinct from exclude) end
$$;

create function inv_ats(on_hand bigint, reserved_total bigint, safety_stock bigint, fences jsonb,
                        channel_reserved jsonb, channel text)
returns bigint language sql immutable parallel safe as $$
    select greatest(0, on_hand - reserved_total - safety_stock
                       - inv_fence_hold(fences, channel_reserved, on_hand, channel))
$$;

-- channel_reserved with `delta` added to one channel's count (entries that reach zero are dropped).
create function inv_add_reserved(channel_reserved jsonb, channel text, delta bigint) returns jsonb
language sql immutable parallel safe as $$
    select case when coalesce((channel_reserved ->> channel)::bigint, 0) + delta = 0
                then channel_reserved - channel
                else jsonb_set(channel_reserved, array[channel],
                               to_jsonb(coalesce((channel_reserved ->> channel)::bigint, 0) + delta)) end
$$;
