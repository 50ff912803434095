-- Idempotency keys move to the shared runtime's table (retail_common.db.idempotency, created by the
-- runtime's own migrations, which run before this service's). Scope = the old method column (keys stay
-- per RPC method, not per caller); fingerprints are kept as stored: the servicer still digests the
-- whole request, so a retry of a key recorded before this migration still gets its first response.
insert into request_idempotency (scope, request_id, fingerprint, response, created_at)
select method, request_id, fingerprint, response, created_at
from idempotency
on conflict (scope, request_id) do nothing;

drop table idempotency;
