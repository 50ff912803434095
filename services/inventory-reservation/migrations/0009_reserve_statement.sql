-- Reserve of one position as one statement (autocommit): the statement inserts the reservation, its
-- lines, its audit record, holds the position and writes both events; anything short of a hold makes it
-- fail as a whole (inv_require), and the service then takes its transactional path.

-- Raises (SQLSTATE P0001, the message given) unless ok: aborts the statement it is evaluated in.
create function inv_require(ok boolean, message text) returns boolean
language plpgsql volatile as $$
begin
    if not ok then
        raise exception '%', message;
    end if;
    return true;
end $$;

-- An instant as protobuf's JSON mapping writes a Timestamp (json_format.MessageToDict): UTC, 0, 3 or 6
-- fractional digits (Postgres keeps microseconds), 'Z'.
create function inv_json_time(t timestamptz) returns text
language sql stable parallel safe as $$
    select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || case when us = 0 then ''
                   when us % 1000 = 0 then '.' || lpad((us / 1000)::text, 3, '0')
                   else '.' || lpad(us::text, 6, '0') end
           || 'Z'
    from (select (extract(microseconds from t))::bigint % 1000000 as us) x
$$;
