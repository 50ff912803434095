-- Append-only audit trail of mutations (who, what, when, request id, before/after).
create table audit_log (
    id          bigint generated always as identity primary key,
    occurred_at timestamptz not null default now(),
    actor_id    text,
    actor_kind  text,
    action      text        not null,
    entity_type text        not null,
    entity_key  text        not null,
    request_id  text,
    before      jsonb,
    after       jsonb,
    trace_id    text
);

-- Listing is newest first by id (keyset), optionally narrowed to an entity or an actor.
create index audit_log_entity_idx on audit_log (entity_type, entity_key, id);
create index audit_log_actor_idx on audit_log (actor_id, id);

create function audit_log_reject_change() returns trigger
language plpgsql as $$
begin
    raise exception 'audit_log is append-only: % is not allowed', tg_op
        using errcode = 'restrict_violation';
end;
$$;

create trigger audit_log_no_update_delete
    before update or delete on audit_log
    for each row execute function audit_log_reject_change();

create trigger audit_log_no_truncate
    before truncate on audit_log
    for each statement execute function audit_log_reject_change();
