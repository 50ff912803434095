-- API-key credentials of the principals allowed to call this service (retail_common.auth).
-- Only sha256(secret) is stored; the plaintext key is shown once when created.
CREATE TABLE auth_credentials (
    key_id        text PRIMARY KEY,
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    principal_id  text NOT NULL CHECK (principal_id <> ''),
    kind          text NOT NULL CHECK (kind IN ('channel', 'operator', 'service')),
    roles         text[] NOT NULL DEFAULT '{}',
    description   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    -- Rotation sets the old key's expires_at to now + overlap, so both keys work for a while.
    expires_at    timestamptz,
    revoked_at    timestamptz,
    replaced_by   text REFERENCES auth_credentials (key_id)
);

CREATE INDEX auth_credentials_principal_idx ON auth_credentials (principal_id);
