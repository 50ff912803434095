-- inv_pb_varint inline up to five bytes (values below 2^35: timestamps' seconds and nanos, versions,
-- quantities), so that only negative and huge values reach the plpgsql loop: a Reserve statement
-- encodes four timestamps, eight such varints, which went through plpgsql one call each.
create or replace function inv_pb_varint(v bigint) returns bytea
language sql immutable parallel safe as $$
    select case
        when v >= 0 and v < 128 then set_byte('\x00'::bytea, 0, v::int)
        when v >= 0 and v < 16384
        then set_byte(set_byte('\x0000'::bytea, 0, (v & 127)::int | 128), 1, (v >> 7)::int)
        when v >= 0 and v < 2097152
        then set_byte(set_byte(set_byte('\x000000'::bytea, 0, (v & 127)::int | 128),
                               1, ((v >> 7) & 127)::int | 128), 2, (v >> 14)::int)
        when v >= 0 and v < 268435456
        then set_byte(set_byte(set_byte(set_byte('\x00000000'::bytea, 0, (v & 127)::int | 128),
                                        1, ((v >> 7) & 127)::int | 128),
                               2, ((v >> 14) & 127)::int | 128), 3, (v >> 21)::int)
        when v >= 0 and v < 34359738368
        then set_byte(set_byte(set_byte(set_byte(set_byte('\x0000000000'::bytea,
                                                          0, (v & 127)::int | 128),
                                                 1, ((v >> 7) & 127)::int | 128),
                                        2, ((v >> 14) & 127)::int | 128),
                               3, ((v >> 21) & 127)::int | 128), 4, (v >> 28)::int)
        else inv_pb_varint_long(v) end
$$;
