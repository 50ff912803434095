-- Per-replica registry caches (registry_cache.py) are invalidated by NOTIFY at commit: one notification
-- per changed channel per statement (transition tables; identical payloads of a transaction collapse),
-- '*' on TRUNCATE.
create function channel_registry_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('retail_channel_registry', d.channel_id)
    from (select distinct channel_id from changed) d;
    return null;
end
$$;

create function channel_registry_notify_all() returns trigger language plpgsql as $$
begin
    perform pg_notify('retail_channel_registry', '*');
    return null;
end
$$;

create trigger channels_notify_insert after insert on channels
    referencing new table as changed for each statement execute function channel_registry_notify();
create trigger channels_notify_update after update on channels
    referencing new table as changed for each statement execute function channel_registry_notify();
create trigger channels_notify_delete after delete on channels
    referencing old table as changed for each statement execute function channel_registry_notify();
create trigger channels_notify_truncate after truncate on channels
    for each statement execute function channel_registry_notify_all();

create trigger assortments_notify_insert after insert on assortments
    referencing new table as changed for each statement execute function channel_registry_notify();
create trigger assortments_notify_update after update on assortments
    referencing new table as changed for each statement execute function channel_registry_notify();
create trigger assortments_notify_delete after delete on assortments
    referencing old table as changed for each statement execute function channel_registry_notify();
create trigger assortments_notify_truncate after truncate on assortments
    for each statement execute function channel_registry_notify_all();
