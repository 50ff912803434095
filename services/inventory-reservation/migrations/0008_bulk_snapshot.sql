-- Bulk snapshots, set-based end to end (issue 5: rows/s beside raw COPY).
--
-- 1. stock's foreign keys to skus and locations become one statement-level check. The row-level
--    foreign-key triggers cost ~19 us per inserted position (two index probes through SPI per row), the
--    largest single cost of a first load. Neither skus nor locations are ever deleted and every writer
--    creates the SKU first (skus insert) and checks the location, so the only thing the constraints
--    still did was refuse a bad insert; the trigger below does that for the whole statement with one
--    anti-join over its transition table (same SQLSTATE 23503). It takes no KEY SHARE lock on the
--    location row, which nothing needs: a location is updated, never deleted or re-keyed.
alter table stock drop constraint stock_sku_fkey;
alter table stock drop constraint stock_location_id_fkey;

create function inv_stock_refs_check() returns trigger language plpgsql as $$
declare
    bad record;
begin
    select n.sku, n.location_id,
           not exists (select 1 from skus k where k.sku = n.sku) as no_sku
    into bad
    from inserted n
    where not exists (select 1 from skus k where k.sku = n.sku)
       or not exists (select 1 from locations l where l.location_id = n.location_id)
    limit 1;
    if found then
        raise foreign_key_violation using
            message = format('stock position %s/%s references an unknown %s', bad.sku, bad.location_id,
                             case when bad.no_sku then 'SKU' else 'location' end);
    end if;
    return null;
end $$;

create trigger stock_refs_check after insert on stock
    referencing new table as inserted for each statement execute function inv_stock_refs_check();

-- 2. Protobuf wire encoding (proto3, byte for byte what Python's deterministic serialisation writes:
--    fields in number order, zero scalars and empty strings left out) so that a bulk snapshot's
--    AvailabilityChanged payloads are built in the statement that writes them
--    (OutboxWriter.append_select) instead of one Python message per position. Tags are one byte
--    (field numbers below 16). Speed depends on Postgres inlining the SQL functions into the query
--    (a call through the SQL-function executor costs microseconds): so no STRICT (the bodies are not
--    strict), volatility as the body's (convert_to and extract of a timestamptz are stable), and
--    callers pass plain columns where a function uses its argument twice (an expensive argument
--    used twice prevents inlining; hence the OFFSET 0 layers in the queries that use them). The
--    plpgsql varint is only reached for values of 16,384 and above, or negative (ten bytes).
create function inv_pb_varint_long(v bigint) returns bytea
language plpgsql immutable strict parallel safe as $$
declare
    out bytea := '';
    x bigint := v;
begin
    for i in 1..9 loop
        if x >= 0 and x < 128 then
            return out || set_byte('\x00'::bytea, 0, x::int);
        end if;
        out := out || set_byte('\x00'::bytea, 0, ((x & 127) | 128)::int);
        x := x >> 7;  -- arithmetic shift: the low 7 bits are those of the two's complement
    end loop;
    return out || '\x01'::bytea;  -- a negative int64: the tenth byte holds the sign bit
end $$;

create function inv_pb_varint(v bigint) returns bytea
language sql immutable parallel safe as $$
    select case when v >= 0 and v < 128 then set_byte('\x00'::bytea, 0, v::int)
                when v >= 128 and v < 16384
                then set_byte(set_byte('\x0000'::bytea, 0, (v & 127)::int | 128), 1, (v >> 7)::int)
                else inv_pb_varint_long(v) end
$$;

-- A varint field (int64/int32/enum); left out when zero.
create function inv_pb_int(tag integer, v bigint) returns bytea
language sql immutable parallel safe as $$
    select case when v = 0 then ''::bytea else set_byte('\x00'::bytea, 0, tag) || inv_pb_varint(v) end
$$;

-- A length-delimited field, always written (an embedded message, even empty).
create function inv_pb_len(tag integer, body bytea) returns bytea
language sql immutable parallel safe as $$
    select set_byte('\x00'::bytea, 0, tag) || inv_pb_varint(length(body)) || body
$$;

-- A string field; left out when empty.
create function inv_pb_str(tag integer, value text) returns bytea
language sql stable parallel safe as $$
    select case when value = '' then ''::bytea
                else set_byte('\x00'::bytea, 0, tag) || inv_pb_varint(octet_length(value))
                     || convert_to(value, 'UTF8') end
$$;

-- google.protobuf.Timestamp of an instant (seconds, nanos from its microseconds), as an embedded field.
create function inv_pb_timestamp(tag integer, t timestamptz) returns bytea
language plpgsql stable parallel safe as $$
declare
    micros bigint := (extract(epoch from t) * 1000000)::bigint;
    seconds bigint := floor(micros / 1000000.0)::bigint;
begin
    return inv_pb_len(tag, inv_pb_int(8, seconds) || inv_pb_int(16, (micros - seconds * 1000000) * 1000));
end $$;

-- 3. Half of each page free (was 70% full): a snapshot updates every position of a location (its
--    as-of moves even where on-hand does not), so every row of a page gets a new version at once; with
--    30% free only about 40% of those fit on their page and the rest were non-HOT updates (a new entry
--    in both indexes each). At 50% all of them are HOT once the page is pruned. Applies to new pages
--    (a table rewrite would lock the table; existing pages converge as rows move).
alter table stock set (fillfactor = 50);
