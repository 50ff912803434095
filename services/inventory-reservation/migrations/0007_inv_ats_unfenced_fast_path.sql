-- inv_ats without a call of inv_fence_hold where there are no fences (most positions): inv_fence_hold
-- has a subquery, so Postgres cannot inline it and runs it through the SQL-function executor per row
-- (about 8 us); inv_ats itself stays inlinable, so the CASE skips that call. Same figures: the fence
-- term of no fences is 0. Statements computing fenced_for_other_channels use the same CASE.
create or replace function inv_ats(on_hand bigint, reserved_total bigint, safety_stock bigint, fences jsonb,
                                   channel_reserved jsonb, channel text)
returns bigint language sql immutable parallel safe as $$
    select greatest(0, on_hand - reserved_total - safety_stock
                       - case when fences = '{}'::jsonb then 0
                              else inv_fence_hold(fences, channel_reserved, on_hand, channel) end)
$$;
