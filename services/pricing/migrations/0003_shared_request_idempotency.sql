-- Idempotency keys move to the shared runtime's table (retail_common.db.idempotency, created by the
-- runtime's own migrations, which run before this service's). One scope for the whole service,
-- 'pricing' (handlers.common.IDEMPOTENCY_SCOPE): a request_id stays unique across all pricing methods,
-- the method being part of every fingerprint. The unary methods' request_hash already digests the
-- method (sha256(method NUL request)) and is kept as stored; the streaming imports' digests did not, so
-- their rows become '<method>:<digest>' (handlers.common.stream_fingerprint). Either way a retry of a
-- key recorded before this migration still gets its first response.
insert into request_idempotency (scope, request_id, fingerprint, response, created_at)
select 'pricing',
       request_id,
       case when method in ('ImportPriceEntries', 'ImportProducts') then method || ':' || request_hash
            else request_hash end,
       response,
       created_at
from idempotency_keys
on conflict (scope, request_id) do nothing;

drop table idempotency_keys;
